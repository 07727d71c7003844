"""Reading a connection's custom form fields from its ``extra``."""

from __future__ import annotations

from typing import Any


def connection_field(extra: dict[str, Any], conn_type: str, name: str) -> Any:
    """``extra[name]`` as Airflow 3's UI saves it, or the ``extra__<type>__<name>`` key of older UIs; ``None``
    (not an empty string) when unset."""
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__{conn_type}__{name}")
    return None if value == "" else value
