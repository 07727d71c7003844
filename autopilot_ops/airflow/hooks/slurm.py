"""A Slurm connection turned into AutoPilot's ``slurm`` back end."""

from __future__ import annotations

from autopilot_ops.airflow.hooks.backend import BackendHook


class SlurmHook(BackendHook):
    """Connection ``slurm``: host = the submit host reached with ``ssh`` (empty: this machine); extra fields
    ``partition`` and ``account`` (parameters of ``autopilot_ops.backends.slurm.SlurmBackend``)."""

    conn_name_attr = "slurm_conn_id"
    default_conn_name = "slurm_default"
    conn_type = "slurm"
    hook_name = "Slurm (AutoPilot)"
    backend_kind = "slurm"
    fields = ("partition", "account")
    host_is_submit_host = True

    def __init__(self, slurm_conn_id: str = default_conn_name) -> None:
        super().__init__(slurm_conn_id)
        self.slurm_conn_id = slurm_conn_id
