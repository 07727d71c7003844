"""Turn a parsed queue document into queue definitions: CRIC-style PanDA queue JSON, or our short format.

CRIC-style: ``{"QUEUE": {"status": ..., "site": ..., "corecount": ..., ...}, ...}``. CRIC attributes with a
``schedconfig`` column go there; every other attribute is kept in ``attributes``. AutoPilot's own settings
(back end, limits, tags) sit in an optional ``"autopilot"`` object inside each queue.

Short format: ``{"defaults": {...}, "backends": [...], "queues": [{"name": ..., "site": ..., ...}]}`` where
queue keys are the ``schedconfig`` column names (``name`` for ``panda_queue``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autopilot_ops.credentials.model import CredentialError, with_checked_credentials
from autopilot_ops.queues.cric import attribute_problems
from autopilot_ops.queues.errors import Problem, QueueFileError
from autopilot_ops.queues.model import (
    COLUMNS,
    REQUIRED,
    REQUIRED_IN_CRIC,
    VALIDATORS,
    WORKER_QUEUE_NAME_MAX,
    FieldError,
    QueueDefinition,
    json_object,
    limits_order_problem,
    text,
)
from autopilot_ops.queues.names import BACKEND_NAME_MAX, check_name

#: CRIC attribute -> schedconfig column, for attributes that map one to one (first match wins).
CRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "nickname": ("nickname",),
    "site": ("site", "atlas_site"),
    "panda_site": ("panda_site", "panda_resource"),
    "cloud": ("cloud",),
    "status": ("status",),
    "corecount": ("corecount",),
    "maxrss": ("maxrss",),
    "maxtime": ("maxtime",),
    "maxwdir": ("maxwdir",),
    "pilot_type": ("type",),
}
#: CRIC queue ``type`` -> the prodSourceLabels its pilots ask for.
LABELS_BY_CRIC_TYPE = {
    "production": ["managed"],
    "analysis": ["user"],
    "unified": ["managed", "user"],
    "test": ["ptest", "rc_test2"],
}
#: Keys allowed in a CRIC queue's ``autopilot`` object: our settings that CRIC does not hold.
AUTOPILOT_KEYS = frozenset(COLUMNS) - {"panda_queue", "site", "attributes"}
SHORT_QUEUE_KEYS = (frozenset(COLUMNS) - {"panda_queue"}) | {"name"}
BACKEND_KEYS = frozenset({"name", "kind", "submit_host", "parameters", "enabled", "owner", "worker_queue"})


@dataclass(frozen=True)
class BackendDefinition:
    """A back end declared in a short-format file, registered with its queues."""

    name: str
    kind: str
    submit_host: str | None = None
    parameters: dict[str, Any] | None = None
    enabled: bool = True
    owner: str | None = None
    #: the Airflow worker queue its queues' cycle tasks run on (a queue's own ``worker_queue`` wins)
    worker_queue: str | None = None


@dataclass(frozen=True)
class QueueDocument:
    queues: list[QueueDefinition]
    backends: list[BackendDefinition]


def is_short_format(document: Any) -> bool:
    return isinstance(document, Mapping) and isinstance(document.get("queues"), list)


def parse_document(document: Any, source: str, default_backend: str | None = None) -> QueueDocument:
    """Validate a parsed file; raise ``QueueFileError`` listing every bad field, the first one first."""
    problems: list[Problem] = []
    if is_short_format(document):
        result = _parse_short(document, source, problems)
    elif isinstance(document, Mapping):
        result = QueueDocument(_parse_cric(document, source, problems), [])
    else:
        raise QueueFileError(
            [Problem(source, None, None, "expected an object of queues (CRIC) or an object with a 'queues' list")]
        )
    if default_backend:
        result = QueueDocument(
            [q if q.backend else _replace_backend(q, default_backend) for q in result.queues], result.backends
        )
    if problems:
        raise QueueFileError(problems)
    return result


def _replace_backend(queue: QueueDefinition, backend: str) -> QueueDefinition:
    return QueueDefinition(**{**queue.as_row(), "backend": backend})


def _build(
    values: dict[str, Any], source: str, queue: str, problems: list[Problem], required: frozenset[str] = REQUIRED
) -> QueueDefinition | None:
    """Check every field of one queue, in the input's order, then its CRIC attributes and limits; record
    problems; return the definition if all are good (the nickname defaults to the queue name)."""
    clean: dict[str, Any] = {}
    first_problem = len(problems)
    for name, value in values.items():
        if value is None:
            continue
        try:
            clean[name] = VALIDATORS[name](value)
        except FieldError as exc:
            problems.append(Problem(source, queue, name, str(exc)))
    for name in sorted(required - clean.keys() - {p.field for p in problems[first_problem:]}):
        problems.append(Problem(source, queue, name, "is required"))
    attributes = values.get("attributes") or {}
    problems.extend(Problem(source, queue, name, message) for name, message in attribute_problems(attributes))
    order = limits_order_problem(clean)
    if order:
        problems.append(Problem(source, queue, "min_queued", order))
    if len(problems) > first_problem:
        return None
    clean.setdefault("nickname", clean["panda_queue"])
    return QueueDefinition(**clean)


def _parse_cric(document: Mapping[str, Any], source: str, problems: list[Problem]) -> list[QueueDefinition]:
    queues = []
    for name, attrs in document.items():
        if not isinstance(attrs, Mapping):
            problems.append(Problem(source, name, None, f"must be an object of attributes, got {type(attrs).__name__}"))
            continue
        if "name" in attrs and attrs["name"] != name:
            problems.append(Problem(source, name, "name", f"{attrs['name']!r} differs from the queue's key"))
            continue
        values: dict[str, Any] = {"panda_queue": name}
        column_of = _cric_column_keys(attrs)
        for key, value in attrs.items():
            if key in column_of:
                values[column_of[key]] = value
        used = {"name", "autopilot", *column_of}
        cric_type = attrs.get("type")
        if cric_type in LABELS_BY_CRIC_TYPE:
            values["prod_source_labels"] = LABELS_BY_CRIC_TYPE[cric_type]
        values["attributes"] = {key: value for key, value in attrs.items() if key not in used}
        own = attrs.get("autopilot", {})
        if not isinstance(own, Mapping):
            problems.append(Problem(source, name, "autopilot", f"must be an object, got {type(own).__name__}"))
            continue
        unknown = sorted(set(own) - AUTOPILOT_KEYS)
        if unknown:
            problems.append(Problem(source, name, f"autopilot.{unknown[0]}", "is not an AutoPilot setting"))
            continue
        values.update(own)
        queue = _build(values, source, name, problems, REQUIRED_IN_CRIC)
        if queue is not None:
            queues.append(queue)
    return queues


def _cric_column_keys(attrs: Mapping[str, Any]) -> dict[str, str]:
    """CRIC attribute -> column, taking for each column the first of its attributes that holds a value."""
    column_of = {}
    for column, keys in CRIC_COLUMNS.items():
        key = next((k for k in keys if attrs.get(k) not in (None, "")), None)
        if key is not None:
            column_of[key] = column
    return column_of


def _parse_short(document: Mapping[str, Any], source: str, problems: list[Problem]) -> QueueDocument:
    unknown_top = sorted(set(document) - {"defaults", "backends", "queues"})
    if unknown_top:
        problems.append(Problem(source, None, unknown_top[0], "unknown top-level key"))
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        problems.append(Problem(source, None, "defaults", "must be an object"))
        defaults = {}
    for key in sorted(set(defaults) - SHORT_QUEUE_KEYS):
        problems.append(Problem(source, None, f"defaults.{key}", "is not a queue field"))
    backends = _parse_backends(document.get("backends") or [], source, problems)
    queues: list[QueueDefinition] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["queues"]):
        if not isinstance(entry, Mapping):
            problems.append(Problem(source, f"#{index + 1}", None, "must be an object"))
            continue
        name = entry.get("name")
        label = name if isinstance(name, str) and name else f"#{index + 1}"
        if label in seen:
            problems.append(Problem(source, label, "name", "duplicate queue"))
            continue
        seen.add(label)
        unknown = sorted(set(entry) - SHORT_QUEUE_KEYS)
        if unknown:
            problems.append(Problem(source, label, unknown[0], "is not a queue field"))
            continue
        values = {**defaults, **entry, "panda_queue": name}
        values.pop("name", None)
        queue = _build(values, source, label, problems)
        if queue is not None:
            queues.append(queue)
    return QueueDocument(queues, backends)


def _parse_backends(entries: Any, source: str, problems: list[Problem]) -> list[BackendDefinition]:
    if not isinstance(entries, list):
        problems.append(Problem(source, None, "backends", "must be a list"))
        return []
    backends = []
    for index, entry in enumerate(entries):
        where = f"backends[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(Problem(source, None, where, "must be an object"))
            continue
        unknown = sorted(set(entry) - BACKEND_KEYS)
        if unknown:
            problems.append(Problem(source, None, f"{where}.{unknown[0]}", "is not a back-end field"))
            continue
        try:
            name = check_name(entry.get("name"), BACKEND_NAME_MAX)
        except FieldError as exc:
            problems.append(Problem(source, None, f"{where}.name", str(exc)))
            continue
        try:
            worker_queue = entry.get("worker_queue")
            if worker_queue is not None:
                worker_queue = check_name(worker_queue, WORKER_QUEUE_NAME_MAX)
        except FieldError as exc:
            problems.append(Problem(source, None, f"{where}.worker_queue", str(exc)))
            continue
        try:
            parameters = with_checked_credentials(json_object(entry.get("parameters") or {}))
        except (FieldError, CredentialError) as exc:
            problems.append(Problem(source, None, f"{where}.parameters", str(exc)))
            continue
        try:
            backends.append(
                BackendDefinition(
                    name=name,
                    kind=text(entry.get("kind")),
                    submit_host=entry.get("submit_host"),
                    parameters=parameters,
                    enabled=bool(entry.get("enabled", True)),
                    owner=entry.get("owner"),
                    worker_queue=worker_queue,
                )
            )
        except FieldError as exc:
            problems.append(Problem(source, None, where, str(exc)))
    return backends
