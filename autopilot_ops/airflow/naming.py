"""How AutoPilot names its Airflow objects: one scheduler DAG per tag, ``autopilot_<tag>``, carrying the DAG
tags :data:`SCHEDULER_DAG_TAGS` so that other AutoPilot DAGs (``autopilot_sync``...) are never taken for
schedulers."""

from __future__ import annotations

import re

DAG_PREFIX = "autopilot_"
#: Airflow DAG tags every scheduler DAG carries, all of them (``autopilot scheduler list`` filters on these).
SCHEDULER_DAG_TAGS = ("autopilot", "scheduler")
#: Airflow DAG ids allow letters, digits, ``_``, ``-`` and ``.`` (``airflow/sdk/definitions/_internal/node.py:
#: KEY_REGEX``).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def scheduler_dag_id(tag: str) -> str:
    """The DAG id of ``tag``'s scheduler; characters Airflow refuses become ``_``."""
    if not tag:
        raise ValueError("a scheduler tag must not be empty")
    return DAG_PREFIX + _UNSAFE.sub("_", tag)


def tag_of_dag(dag_id: str) -> str:
    """The tag part of a scheduler DAG id (as :func:`scheduler_dag_id` wrote it)."""
    return dag_id.removeprefix(DAG_PREFIX)
