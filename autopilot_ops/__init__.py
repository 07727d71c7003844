"""AutoPilot: a generic PanDA pilot and pilot scheduler, packaged as an Apache Airflow provider."""

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe this package to Airflow's provider manager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "autopilot-ops",
        "name": "AutoPilot",
        "description": "Generic PanDA pilot and pilot scheduler: operators, hooks and connection types.",
        "versions": [__version__],
    }
