"""Types of the CRIC attributes that AutoPilot keeps in ``attributes`` and that PanDA tools read.

The shapes follow how PanDA's own pilot factory reads them (HSF/harvester):
``queues`` is a list of CE objects whose ``ce_*`` values are strings
(pandaharvester/harvestercredmanager/iam_token_cred_manager.py, pandaharvester/harvestermisc/apfmon.py);
``resource_type_limits`` maps a resource type to a number of workers (pandaharvester/harvesterbody/job_fetcher.py);
``pilot_manager``, ``harvester``, ``capability`` and ``workflow`` are strings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

STRING_ATTRIBUTES = ("pilot_manager", "harvester", "capability", "workflow")
CE_STRING_KEYS = (
    "ce_endpoint",
    "ce_flavour",
    "ce_queue_name",
    "ce_state",
    "ce_status",
    "ce_version",
    "ce_jobmanager",
)


def attribute_problems(attrs: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(field, message)`` for each CRIC attribute of the wrong type, in the input's order."""
    for key, value in attrs.items():
        if value is None:
            continue
        if key in STRING_ATTRIBUTES and not isinstance(value, str):
            yield key, f"must be a string, got {type(value).__name__} {value!r}"
        elif key == "queues":
            yield from _ce_list_problems(value)
        elif key == "resource_type_limits":
            yield from _limits_problems(value)


def _ce_list_problems(value: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(value, list):
        yield "queues", f"must be a list of CE objects (ce_endpoint, ce_flavour, ...), got {type(value).__name__}"
        return
    for index, entry in enumerate(value):
        where = f"queues[{index}]"
        if not isinstance(entry, Mapping):
            yield where, f"must be an object (ce_endpoint, ce_flavour, ...), got {type(entry).__name__} {entry!r}"
            continue
        for key in CE_STRING_KEYS:
            if entry.get(key) is not None and not isinstance(entry[key], str):
                yield f"{where}.{key}", f"must be a string, got {type(entry[key]).__name__} {entry[key]!r}"


def _limits_problems(value: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(value, Mapping):
        yield "resource_type_limits", f"must be an object of resource type -> number, got {type(value).__name__}"
        return
    for resource_type, limit in value.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            yield f"resource_type_limits.{resource_type}", f"must be an integer >= 0, got {limit!r}"

