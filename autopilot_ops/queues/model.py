"""A queue definition (one ``schedconfig`` row) and the rules each of its fields obeys."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from autopilot_ops.credentials.model import CredentialError, credentials_field
from autopilot_ops.pilot.shelf import CURRENT, VERSION_PATTERN
from autopilot_ops.policy.inputs import PANDA_WORKERS_MODES
from autopilot_ops.queues.errors import FieldError
from autopilot_ops.queues.names import (
    BACKEND_NAME_MAX,
    CLOUD_NAME_MAX,
    QUEUE_NAME_MAX,
    SITE_NAME_MAX,
    TAG_NAME_MAX,
    check_name,
    name_rule,
)

STATUSES = ("online", "offline", "test", "brokeroff")
#: Airflow worker queues (Celery queues, Edge queues) become task ids too: the name rule, at most 50 characters.
WORKER_QUEUE_NAME_MAX = 50


def _integer(value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise FieldError(f"must be an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit():
            raise FieldError(f"must be an integer, got {value!r}")
        value = int(text)
    elif isinstance(value, float):
        if not value.is_integer():
            raise FieldError(f"must be an integer, got {value!r}")
        value = int(value)
    elif not isinstance(value, int):
        raise FieldError(f"must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise FieldError(f"must be >= {minimum}, got {value}")
    return value


def non_negative_int(value: Any) -> int:
    return _integer(value, 0)


def positive_int(value: Any) -> int:
    return _integer(value, 1)


def non_negative_number(value: Any) -> float:
    if isinstance(value, bool):
        raise FieldError(f"must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise FieldError(f"must be a finite number >= 0, got {value!r}")
    return number


def fraction(value: Any) -> float:
    number = non_negative_number(value)
    if number > 1:
        raise FieldError(f"must be a fraction between 0 and 1, got {value!r}")
    return number


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"must be true or false, got {value!r}")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(f"must be a non-empty string, got {value!r}")
    return value.strip()


def status(value: Any) -> str:
    if value not in STATUSES:
        raise FieldError(f"unknown status {value!r} (expected one of: {', '.join(STATUSES)})")
    return value


def panda_workers_mode(value: Any) -> str:
    if value not in PANDA_WORKERS_MODES:
        raise FieldError(f"unknown mode {value!r} (expected one of: {', '.join(PANDA_WORKERS_MODES)})")
    return value


def pilot_version(value: Any) -> str:
    """A pilot bundle version the plugin serves (``autopilot pilot bundle`` of that release), or ``current``."""
    if not isinstance(value, str) or not (value == CURRENT or VERSION_PATTERN.fullmatch(value)):
        raise FieldError(f"{value!r} is not a pilot version (e.g. 0.1.0, or {CURRENT!r})")
    return value


def credentials(value: Any) -> dict[str, Any]:
    """Credentials by job type, in their stored form (:mod:`autopilot_ops.credentials.model`)."""
    try:
        return credentials_field(value)
    except CredentialError as exc:
        raise FieldError(str(exc)) from None


def text_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise FieldError(f"must be a list of strings, got {value!r}")
    return [text(item) for item in value]


def tag_list(value: Any) -> list[str]:
    """Tags become DAG ids and paths: each is held to the name rule."""
    return [check_name(tag, TAG_NAME_MAX) for tag in text_list(value)]


def label_list(value: Any) -> list[str]:
    labels = text_list(value)
    if not labels:
        raise FieldError("must name at least one prodSourceLabel")
    return labels


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise FieldError(f"must be an object, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise FieldError(f"must hold only JSON values: {exc}") from None


@dataclass(frozen=True)
class QueueDefinition:
    """One PanDA queue as AutoPilot stores it; field names are the ``schedconfig`` columns."""

    panda_queue: str
    site: str
    nickname: str | None = None
    panda_site: str | None = None
    cloud: str | None = None
    status: str = "online"
    tags: list[str] = field(default_factory=list)
    corecount: int | None = None
    maxrss: int | None = None
    maxtime: int | None = None
    maxwdir: int | None = None
    prod_source_labels: list[str] = field(default_factory=lambda: ["managed"])
    pilot_type: str | None = None
    queue_limit: int | None = None
    queue_ratio: float | None = None
    min_queued: int = 0
    max_queued: int | None = None
    max_pilots: int | None = None
    max_per_cycle: int | None = None
    jobs_per_pilot: int = 1
    cycle_period: int = 300
    test_pilots: int = 1
    keep_one_pilot: bool = False
    missed_rate_limit: float | None = 0.5
    empty_share_limit: float | None = 0.5
    throttle_min_count: int = 5
    stale_polls: int = 3
    empty_runtime: int = 60
    queued_timeout: int = 172800
    held_timeout: int = 3600
    unknown_timeout: int = 3600
    panda_workers: str = "target"
    #: the pilot bundle its pilots run: a version the plugin serves, or ``current`` (this installation's)
    pilot_version: str = CURRENT
    #: by job type (``*``: any): ``{"kind": "token"|"proxy", "path": ..., "origin": ..., "pass_to_payload": ...}``
    credentials: dict[str, Any] = field(default_factory=dict)
    #: seconds a credential must have left for the queue to submit; ``None``: ``maxtime``, at least 1 h
    min_credential_lifetime: int | None = None
    backend: str | None = None
    backend_parameters: dict[str, Any] = field(default_factory=dict)
    #: the Airflow worker queue its cycle task runs on; ``None``: its back end's, else ``default``
    worker_queue: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COLUMNS = tuple(f.name for f in fields(QueueDefinition))

#: How each field's value is checked and normalised; ``None`` stays ``None`` for optional fields.
VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "panda_queue": name_rule(QUEUE_NAME_MAX),
    "site": name_rule(SITE_NAME_MAX),
    "nickname": name_rule(QUEUE_NAME_MAX),
    "panda_site": name_rule(SITE_NAME_MAX),
    "cloud": name_rule(CLOUD_NAME_MAX),
    "status": status,
    "tags": tag_list,
    "corecount": non_negative_int,
    "maxrss": non_negative_int,
    "maxtime": non_negative_int,
    "maxwdir": non_negative_int,
    "prod_source_labels": label_list,
    "pilot_type": text,
    "queue_limit": non_negative_int,
    "queue_ratio": non_negative_number,
    "min_queued": non_negative_int,
    "max_queued": non_negative_int,
    "max_pilots": non_negative_int,
    "max_per_cycle": non_negative_int,
    "jobs_per_pilot": positive_int,
    "cycle_period": positive_int,
    "test_pilots": non_negative_int,
    "keep_one_pilot": boolean,
    "missed_rate_limit": fraction,
    "empty_share_limit": fraction,
    "throttle_min_count": positive_int,
    "stale_polls": positive_int,
    "empty_runtime": non_negative_int,
    "queued_timeout": positive_int,
    "held_timeout": positive_int,
    "unknown_timeout": positive_int,
    "panda_workers": panda_workers_mode,
    "pilot_version": pilot_version,
    "credentials": credentials,
    "min_credential_lifetime": non_negative_int,
    "backend": name_rule(BACKEND_NAME_MAX),
    "backend_parameters": json_object,
    "worker_queue": name_rule(WORKER_QUEUE_NAME_MAX),
    "attributes": json_object,
}
REQUIRED = frozenset({"panda_queue", "site"})


def limits_order_problem(values: Mapping[str, Any]) -> str | None:
    """Why ``min_queued`` and ``max_queued`` leave the policy no valid target, if they do."""
    low, high = values.get("min_queued"), values.get("max_queued")
    if low is not None and high is not None and low > high:
        return f"min_queued {low} is above max_queued {high}"
    return None

#: CRIC always states a queue's status; a CRIC entry without one is truncated or not a queue.
REQUIRED_IN_CRIC = REQUIRED | {"status"}
