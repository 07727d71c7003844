"""The pilot-factory (Harvester) methods of ``/api/v1``, with the real server's names, parameters and replies.

Follows ``pandaserver/api/v1/harvester_api.py`` (every method secured; ``acquire_commands``,
``acknowledge_commands``, ``add_sweep_command`` and ``add_target_slots`` need the production role; GET only
for ``get_current_worker_id`` and ``get_worker_statistics``) and ``pilot_api.py: update_worker_status``. The
parameters' types are the real ones, so ``calls.py`` refuses what ``request_validation`` refuses (``workers``
sent as a JSON string: ``Type error: 'workers' must be of type list, got str.``). Storage: ``factory_store.py``
and ``command_store.py``.

The owner of an instance is its caller's DN as ``CoreUtils.clean_user_id`` shortens it; its host is
``REMOTE_HOST``, which Apache sets only with ``HostnameLookups On``: the dev server, like a default Apache,
records an empty host.
"""

from __future__ import annotations

from typing import Any

from autopilot_ops.panda.devserver.api import REGISTRY, Context
from autopilot_ops.panda.devserver.calls import Request
from autopilot_ops.panda.protocol import make_envelope

#: ``api/v1/common.py``
MESSAGE_DATABASE = "database error in the PanDA server"
#: ``pilot_api.py: update_worker_status``
WORKER_PILOT_STATES = ("started", "finished")
#: What ``get_remote_host`` reads without ``HostnameLookups On``.
REMOTE_HOST = ""


@REGISTRY.method("harvester", secure=True, http_method="POST")
def update_workers(context: Context, request: Request, harvester_id: str, workers: list) -> dict[str, Any]:
    """``update_workers``: ``data`` is one ``true`` per worker stored."""
    stored = context.factory.update_workers(harvester_id, workers)
    if not stored:
        return make_envelope(False, MESSAGE_DATABASE)
    return make_envelope(True, data=stored)


@REGISTRY.method("harvester", secure=True, http_method="POST")
def update_service_metrics(context: Context, request: Request, harvester_id: str, metrics: list) -> dict[str, Any]:
    """``update_service_metrics``: ``[[creation_time, host, metrics_json], ...]``."""
    stored = context.factory.update_service_metrics(harvester_id, metrics)
    if not stored:
        return make_envelope(False, MESSAGE_DATABASE)
    return make_envelope(True, data=stored)


@REGISTRY.method("harvester", secure=True, http_method="POST")
def add_dialogs(context: Context, request: Request, harvester_id: str, dialogs: list) -> dict[str, Any]:
    """``add_dialogs``: the instance's diagnostic messages."""
    if not context.factory.add_dialogs(harvester_id, dialogs):
        return make_envelope(False, MESSAGE_DATABASE)
    return make_envelope(True)


@REGISTRY.method("harvester", secure=True, http_method="POST")
def heartbeat(context: Context, request: Request, harvester_id: str, data: dict | None = None) -> dict[str, Any]:
    """``heartbeat``: anything but ``"succeeded"`` from ``harvesterIsAlive`` is a database error, so the first
    heartbeat of a new instance fails although it creates the instance's row (``"no instance record"``)."""
    assert request.identity is not None
    result = context.factory.harvester_is_alive(request.identity.dn, REMOTE_HOST, harvester_id, data)
    if result != "succeeded":
        return make_envelope(False, MESSAGE_DATABASE)
    return make_envelope(True)


@REGISTRY.method("harvester", secure=True, http_method="GET")
def get_current_worker_id(context: Context, request: Request, harvester_id: str) -> dict[str, Any]:
    """``get_current_worker_id``: the highest worker id; an instance without workers is a database error."""
    current = context.factory.max_worker_id(harvester_id)
    if current is None:
        return make_envelope(False, MESSAGE_DATABASE)
    return make_envelope(True, data=current)


@REGISTRY.method("harvester", secure=True, http_method="GET")
def get_worker_statistics(context: Context, request: Request) -> dict[str, Any]:
    """``get_worker_statistics``: queue -> instance -> job type -> resource type -> status -> n."""
    return make_envelope(True, data=context.factory.worker_stats())


@REGISTRY.method("harvester", secure=True, http_method="POST")
def report_worker_statistics(
    context: Context, request: Request, harvester_id: str, panda_queue: str, statistics: str
) -> dict[str, Any]:
    """``report_worker_statistics``: ``statistics`` is a JSON string; the reply's message is ``OK``."""
    success, message = context.factory.report_worker_stats(harvester_id, panda_queue, statistics)
    return make_envelope(success, message)


@REGISTRY.method("harvester", secure=True, production=True, http_method="POST")
def acquire_commands(
    context: Context, request: Request, harvester_id: str, n_commands: int, timeout: int = 30
) -> dict[str, Any]:
    """``acquire_commands``: the oldest new commands, which become retrieved."""
    return make_envelope(True, data=context.commands.get_commands(harvester_id, n_commands))


@REGISTRY.method("harvester", secure=True, production=True, http_method="POST")
def acknowledge_commands(context: Context, request: Request, command_ids: list, timeout: int = 30) -> dict[str, Any]:
    """``acknowledge_commands``."""
    if not context.commands.ack_commands(command_ids):
        return make_envelope(False, MESSAGE_DATABASE)
    return make_envelope(True)


@REGISTRY.method("harvester", secure=True, production=True, http_method="POST")
def add_sweep_command(
    context: Context,
    request: Request,
    panda_queue: str,
    status_list: list[str],
    ce_list: list[str],
    submission_host_list: list[str],
) -> dict[str, Any]:
    """``add_sweep_command``: ``KILL_WORKERS`` for the instance serving the queue."""
    message = context.commands.sweep(panda_queue, status_list, ce_list, submission_host_list)
    if message != "OK":
        return make_envelope(False, message)
    return make_envelope(True)


@REGISTRY.method("harvester", secure=True, production=True, http_method="POST")
def add_target_slots(
    context: Context,
    request: Request,
    panda_queue: str,
    slots: int,
    global_share: str | None = None,
    resource_type: str | None = None,
    expiration_date: str | None = None,
) -> dict[str, Any]:
    """``add_target_slots``: the reply's message says what was set."""
    code, message = context.commands.set_num_slots(panda_queue, slots, global_share, resource_type, expiration_date)
    return make_envelope(code == 0, message)


@REGISTRY.method("pilot", secure=True, production=True, http_method="POST")
def update_worker_status(
    context: Context, request: Request, worker_id, harvester_id, status, timeout=60, node_id=None
) -> dict[str, Any]:
    """``pilot_api.py: update_worker_status``: the worker as the pilot sees it (its parameters are untyped)."""
    if status not in WORKER_PILOT_STATES:
        return make_envelope(False, f"Invalid worker state. The worker state has to be in {WORKER_PILOT_STATES}")
    if not context.factory.update_worker_pilot_status(worker_id, harvester_id, status, node_id):
        return make_envelope(False, "Failed to update worker status")
    return make_envelope(True)
