"""An HTCondor connection turned into AutoPilot's ``condor`` back end."""

from __future__ import annotations

from typing import Any

from autopilot_ops.airflow.hooks.backend import BackendHook


class CondorHook(BackendHook):
    """Connection ``htcondor``: extra fields ``schedd`` (the schedd's name; empty: the pool's schedd),
    ``pool`` (the pool's collector ``host[:port]``, as HTCondor's ``-pool``) and ``collector`` (the same,
    used when ``pool`` is empty). They become the ``schedd`` and ``pool`` parameters of
    ``autopilot_ops.backends.condor.CondorBackend``."""

    conn_name_attr = "htcondor_conn_id"
    default_conn_name = "htcondor_default"
    conn_type = "htcondor"
    hook_name = "HTCondor (AutoPilot)"
    backend_kind = "condor"
    fields = ("schedd", "collector", "pool")

    def __init__(self, htcondor_conn_id: str = default_conn_name) -> None:
        super().__init__(htcondor_conn_id)
        self.htcondor_conn_id = htcondor_conn_id

    def backend_config(self) -> tuple[str | None, dict[str, Any]]:
        submit_host, fields = super().backend_config()
        parameters = {"schedd": fields.get("schedd"), "pool": fields.get("pool") or fields.get("collector")}
        return submit_host, {name: value for name, value in parameters.items() if value is not None}
