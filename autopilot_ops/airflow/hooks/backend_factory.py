"""Back ends as the Airflow operators build them: from the registry row, and from the Airflow connection the
row names (``conn_id`` in its parameters), so a site keeps its submit host and settings in a connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopilot_ops.airflow.hooks.backend import BackendHook
from autopilot_ops.airflow.hooks.htcondor import CondorHook
from autopilot_ops.airflow.hooks.slurm import SlurmHook
from autopilot_ops.backends.base import Backend
from autopilot_ops.backends.registry import backend_from_row, create_backend

#: The parameter of a registry row that names its Airflow connection.
CONNECTION_PARAMETER = "conn_id"
#: The hook that reads each back-end kind's connection.
HOOK_FOR_KIND: dict[str, type[BackendHook]] = {"slurm": SlurmHook, "condor": CondorHook}


def connection_backend(name: str, row: Mapping[str, Any]) -> Backend:
    """The back end of registry row ``row``; a ``conn_id`` parameter adds the connection's host (as submit
    host) and fields, and the row's own parameters and submit host win over them."""
    parameters = dict(row["parameters"] or {})
    conn_id = parameters.pop(CONNECTION_PARAMETER, None)
    if conn_id is None:
        return backend_from_row(name, row)
    hook_class = HOOK_FOR_KIND.get(row["kind"])
    if hook_class is None:
        kinds = ", ".join(sorted(HOOK_FOR_KIND))
        raise ValueError(f"parameter {CONNECTION_PARAMETER!r}: kind {row['kind']!r} takes no connection (only {kinds})")
    submit_host, fields = hook_class(str(conn_id)).backend_config()
    return create_backend(row["kind"], name, {**fields, **parameters}, row["submit_host"] or submit_host)
