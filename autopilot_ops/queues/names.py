"""The rule for names that become paths, Slurm job names, HTCondor attributes, DAG ids and URLs.

PanDA queue, site and cloud names are plain identifiers: letters, digits, ``_``, ``-`` and ``.``, starting with a
letter or a digit (CRIC's names, e.g. ``CERN-PROD_UCORE``, ``ANALY_BNL_VP``). The length bounds are PanDA's own
columns (PanDAWMS/panda-database, schema/postgres/sqls/pg_PANDA_TABLE.sql): ``schedconfig_json.panda_queue``
varchar(50), ``panda_site.panda_site_name`` and ``site.site_name`` varchar(52), ``jobsactive4.cloud`` varchar(50).
AutoPilot's own tag and back-end names follow the same rule, at most 50 characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from autopilot_ops.queues.errors import FieldError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
QUEUE_NAME_MAX = 50
SITE_NAME_MAX = 52
CLOUD_NAME_MAX = 50
TAG_NAME_MAX = 50
BACKEND_NAME_MAX = 50


def check_name(value: Any, max_length: int) -> str:
    """``value`` if it is a PanDA name of at most ``max_length`` characters; else ``FieldError`` saying why."""
    if not isinstance(value, str):
        raise FieldError(f"must be a PanDA name (a string), got {type(value).__name__} {value!r}")
    if len(value) > max_length or not _NAME.fullmatch(value):
        shown = f"{value!r}" if len(value) <= max_length else f"{len(value)} characters: {value[:60]!r}..."
        raise FieldError(
            "must be a PanDA name: letters, digits, '_', '-' and '.', starting with a letter or a digit, "
            f"at most {max_length} characters; got {shown}"
        )
    return value


def name_rule(max_length: int) -> Callable[[Any], str]:
    """A field validator holding a value to the name rule with ``max_length``."""
    return lambda value: check_name(value, max_length)
