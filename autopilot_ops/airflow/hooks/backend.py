"""The shared part of the back-end hooks: a connection turned into an AutoPilot back end."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk import BaseHook

from autopilot_ops.airflow.hooks.connection_fields import connection_field
from autopilot_ops.backends import registry
from autopilot_ops.backends.base import Backend


class BackendHook(BaseHook):
    """Subclasses name the back-end ``backend_kind`` (an ``autopilot.backends`` entry point), the extra
    ``fields`` passed on as its parameters, and whether the connection's host is the submit host."""

    backend_kind: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    host_is_submit_host: ClassVar[bool] = False

    def __init__(self, conn_id: str) -> None:
        super().__init__()
        self.backend_conn_id = conn_id

    def backend_config(self) -> tuple[str | None, dict[str, Any]]:
        """``(submit_host, parameters)`` from the connection; unset fields are left out."""
        conn = self.get_connection(self.backend_conn_id)
        extra = conn.extra_dejson or {}
        parameters = {
            name: value
            for name in self.fields
            if (value := connection_field(extra, self.conn_type, name)) is not None
        }
        submit_host = (conn.host or None) if self.host_is_submit_host else None
        return submit_host, parameters

    def get_conn(self) -> Backend:
        """The back end, named after the connection id."""
        submit_host, parameters = self.backend_config()
        return registry.create_backend(self.backend_kind, self.backend_conn_id, parameters, submit_host)
