"""How AutoPilot names its Airflow objects: one scheduler DAG per tag, ``autopilot_<tag>``."""

from __future__ import annotations

import re

DAG_PREFIX = "autopilot_"
#: Airflow DAG ids allow letters, digits, ``_``, ``-`` and ``.`` (``airflow.utils.helpers.KEY_REGEX``).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def scheduler_dag_id(tag: str) -> str:
    """The DAG id of ``tag``'s scheduler; characters Airflow refuses become ``_``."""
    if not tag:
        raise ValueError("a scheduler tag must not be empty")
    return DAG_PREFIX + _UNSAFE.sub("_", tag)
