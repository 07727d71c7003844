"""AutoPilot: a generic PanDA pilot and pilot scheduler, packaged as an Apache Airflow provider."""

__version__ = "0.1.0"

_HOOKS = "autopilot_ops.airflow.hooks"


def _text(label: str, description: str, *, secret: bool = False, choices: list[str] | None = None,
          default: str | None = None) -> dict:
    """A ``conn-fields`` entry (``ProvidersManager._add_widgets`` reads label, description and a JSON schema;
    ``format: password`` marks it sensitive)."""
    schema: dict = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    if choices:
        schema["enum"] = choices
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


def get_provider_info() -> dict:
    """Describe this package to Airflow's provider manager (entry point ``apache_airflow_provider``).

    Connection forms are declared here (``conn-fields``, ``ui-field-behaviour``), as Airflow 3.2+ reads them
    without importing the hooks (``airflow/providers_manager.py: _load_ui_metadata``).
    """
    return {
        "package-name": "autopilot-ops",
        "name": "AutoPilot",
        "description": "Generic PanDA pilot and pilot scheduler: operators, hooks and connection types.",
        "versions": [__version__],
        "hooks": [
            {
                "integration-name": "AutoPilot",
                "python-modules": [f"{_HOOKS}.panda", f"{_HOOKS}.slurm", f"{_HOOKS}.htcondor", f"{_HOOKS}.store"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": f"{_HOOKS}.panda.PandaHook",
                "hook-name": "PanDA server",
                "connection-type": "panda",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema"],
                    "relabeling": {"host": "Server URL", "password": "Token"},
                    "placeholders": {"host": "https://pandaserver.example.org:25443"},
                },
                "conn-fields": {
                    "protocol": _text("Protocol", "v1: the /api/v1 API of PanDA server 1.0+; legacy: the "
                                      "pre-1.0 /server/panda dispatcher (pilot calls only)",
                                      choices=["v1", "legacy"], default="v1"),
                    "origin": _text("Origin", "VO sent as the Origin header with the token"),
                    "cert_file": _text("Certificate file", "X.509 proxy, or a certificate with the key below"),
                    "key_file": _text("Key file", "Private key of the certificate (empty for a proxy)"),
                    "ca_bundle": _text("CA bundle", "CA file or directory to verify the server (empty: system)"),
                    "harvester_id": _text("Harvester id", "this deployment's id as a pilot factory of PanDA (the "
                                          "queues' CRIC 'harvester' field; empty: autopilot-<host>)"),
                    "factory": _text("Pilot factory", "on: register with PanDA, report pilots as workers and "
                                     "take PanDA's commands (harvester API; needs v1 and a production role)",
                                     choices=["on", "off"], default="on"),
                },
            },
            {
                "hook-class-name": f"{_HOOKS}.slurm.SlurmHook",
                "hook-name": "Slurm (AutoPilot)",
                "connection-type": "slurm",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "password", "port", "schema"],
                    "relabeling": {"host": "Submit host"},
                    "placeholders": {"host": "empty: this machine; else reached with ssh"},
                },
                "conn-fields": {
                    "partition": _text("Partition", "sbatch --partition"),
                    "account": _text("Account", "sbatch --account"),
                },
            },
            {
                "hook-class-name": f"{_HOOKS}.htcondor.CondorHook",
                "hook-name": "HTCondor (AutoPilot)",
                "connection-type": "htcondor",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "login", "password", "port", "schema"],
                    "relabeling": {},
                    "placeholders": {},
                },
                "conn-fields": {
                    "schedd": _text("Schedd name", "Name of the schedd to submit to (empty: the pool's schedd)"),
                    "pool": _text("Pool", "The pool's collector host[:port], as condor_q -pool (empty: CONDOR_HOST)"),
                    "collector": _text("Collector", "Collector host[:port], used when Pool is empty"),
                },
            },
        ],
    }
