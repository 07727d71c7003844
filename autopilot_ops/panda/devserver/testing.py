"""A PanDA dev server for tests: real HTTP on 127.0.0.1, an ephemeral port, in this process, on a thread.

Usage::

    from autopilot_ops.panda.devserver.testing import DevServer

    with DevServer(tmp_path, files_dir=tmp_path / "files") as srv:
        ids = srv.submit_jobs("LOCAL_QUEUE", 2, f"{srv.url}/hello.sh", "--sleep 0", priority=1000)
        ...  # run a pilot against srv.url (site_name "LOCAL_QUEUE")
        job = srv.job(ids[0])
        assert job["status"] == "finished"
        assert [h["status"] for h in job["history"]][-2:] == ["holding", "finished"]

``DevServer(workdir, *, files_dir=None, auth="open", token=None, identities=None, legacy=False,
heartbeat_timeout=None, db=None, access_log=None, pilot_streaming_period=None)``
    ``workdir``: a directory for the SQLite database (``workdir/panda-devserver.db``) unless ``db`` names a
    file or a ``postgresql://`` DSN. ``files_dir``: a directory served as static files at the root path
    (``GET {url}/hello.sh`` serves ``files_dir/hello.sh``). ``auth``: ``"open"`` (every caller has the
    production role), ``"token"`` (``Authorization: Bearer <token>`` plus any ``Origin`` header; ``token``
    defaults to ``"devserver-test-token"``), or ``"identities"`` (``identities`` is a list of
    ``{"dn": str, "token": str, "production": bool}``). ``legacy``: also serve ``/server/panda/getJob``,
    ``updateJob``, ``getStatus`` and ``getJobStatisticsPerSite``. ``heartbeat_timeout``: seconds without an
    update after which a sent/starting/running/holding/transferring job fails (``dispatcher_error_code`` 100,
    or 102 for a job still ``sent``); ``None`` turns the watcher off (``check_heartbeats`` still works).
    ``access_log``: a text stream (e.g. ``sys.stderr``) for one line per request; ``None`` logs none.
    ``pilot_streaming_period``: seconds between pilot-streaming steps (off by default in tests, where
    ``run_pilot_streaming`` runs one; ``autopilot panda-devserver`` runs it every 300 s as PanDA's daemon).

Attributes: ``url`` (``http://127.0.0.1:<port>``, no trailing slash), ``port``, ``token`` (a production
token in the token/identities modes, else ``None``), ``server`` (the ``PandaDevServer``), ``store`` (its
``JobStore``).

``submit_jobs(queue, count, transformation, job_pars, *, priority=1000, in_files=(), out_files=(),
prod_source_label="managed", log_file=True, core_count=1, max_walltime=None, label="autopilot", extra=None,
token=None) -> list[int]``
    Submits through the real ``POST /api/v1/job/submit`` endpoint, in the ``pandaclient`` wire format, and
    returns the PandaIDs in order. Jobs start ``activated``. ``in_files`` items are LFNs or dicts with ``lfn``
    and optional ``guid``, ``fsize``, ``checksum`` (``ad:<adler32>`` or ``md5:<hex>``), ``scope``,
    ``dataset``; ``out_files`` are LFNs. A log file ``<jobName>.log.tgz`` is added unless ``log_file`` is
    false, so a ``finished`` report needs a ``job_output_report`` covering it (else the job ends ``failed``
    with ``ddm_error_code`` 200). ``extra`` sets other JobSpec attributes (e.g. ``{"container_name": ...}``).
    ``token`` submits as another identity (identities mode).

``job(panda_id) -> dict`` (``KeyError`` if unknown)
    ``status``, ``site``, ``priority``, ``attempt_nr``, ``command`` (``"tobekilled"`` after ``kill``),
    ``node``, ``start_time``/``end_time`` (``"YYYY-MM-DD HH:MM:SS"`` or ``None``), the codes and diagnostics
    ``trans_exit_code``, ``pilot_error_code``/``_diag``, ``exe_error_code``/``_diag``, ``ddm_error_code``/
    ``_diag``, ``dispatcher_error_code``/``_diag`` (lost heartbeat), ``task_buffer_error_code``/``_diag``
    (kill), ``job_output_report`` (the string the pilot sent, or ``None``), ``pilot_params`` (everything else
    the pilot reported, under PanDA's names: ``cpuConsumptionTime``, ``actualCoreCount``, ``batchID``,
    ``pilotLog``...), ``files`` (PanDA FileSpec dicts: ``lfn``, ``type``, ``GUID``, ``fsize``, ``checksum``,
    ``status``), ``spec``, and ``history``: ``[{"status", "time", "reason"}, ...]`` oldest first.

``jobs(site=None) -> list[dict]``: a summary per job (``panda_id``, ``status``, ``site``, ``priority``, codes).
``kill(panda_ids, code=None) -> list[bool]``: kill as a production identity (``job/kill`` semantics: a
running job gets ``command`` ``tobekilled``, any other active job ends ``cancelled`` at once).
``check_heartbeats(timeout=None) -> list[int]``: one lost-heartbeat sweep now (``timeout`` defaults to the
configured one), returns the ids it failed. ``stats() -> dict``: ``active_job_stats_by_site``'s data.

The pilot-factory side (``/api/v1/harvester/*``, see ``harvester_api.py``):

``set_queue(name, **schedconfig) -> None``
    Declares (or replaces) a queue's configuration (PanDA's ``schedconfig_json``), ``{"queues": [],
    **schedconfig}``: ``harvester="<id>"`` names the factory serving it (``add_sweep_command`` and pilot
    streaming write to it), ``queues=[{"ce_endpoint": "ce1:9619"}]`` its CEs (a sweep keeps only these),
    ``capability="ucore", workflow="pull_ups"`` makes it a unified pilot-streaming queue; ``corecount``,
    ``meanrss``, ``maxrss``, ``status``, ``params={"ups_core_target": n}``, ``uconfig={"resource_type_limits":
    {...}}`` feed pilot streaming's rule.
``harvester_instances() -> list[dict]``
    One per instance that sent a heartbeat: ``harvester_id``, ``owner`` (the DN shortened as PanDA does),
    ``hostname`` (``""``), ``description`` (``"automatic"``), ``starttime``, ``sw_version``, ``commit_stamp``,
    ``lastupdate``. The first heartbeat creates the row without its ``data`` (and answers a database error).
``workers(harvester_id=None) -> list[dict]``; ``worker(harvester_id, worker_id) -> dict`` (``KeyError``)
    One per (``harvesterID``, ``workerID``), under ``WorkerSpec``'s names as the factory sent them:
    ``status``, ``batchID``, ``queueName``, ``computingSite``, ``computingElement``, ``submissionHost``,
    ``harvesterHost``, ``nCore``, ``nJobs``, ``jobType``, ``resourceType``, ``minRamCount``, ``submitTime``/
    ``startTime``/``endTime`` (``"YYYY-MM-DD HH:MM:SS[.ffffff]"`` or ``None``), ``errorCode``,
    ``diagMessage``, ``nativeExitCode``, ``nativeStatus``, ``stdOut``/``stdErr``/``batchLog``, ``jdl``,
    ``nodeID``, ``lastUpdate``; the pilot's view from ``pilot/update_worker_status``: ``pilotStatus``
    (``"started"``/``"finished"``), ``pilotStartTime``/``pilotEndTime``; and ``pandaIDs``, the related jobs
    (from ``pandaid_list``, or from ``acquire_jobs`` with ``harvester_id`` and ``worker_id``).
``worker_statistics() -> dict``: ``get_worker_statistics``' data,
    ``{queue: {harvester_id: {job_type: {resource_type: {status: n}}}}}``.
``commands(harvester_id=None) -> list[dict]``
    Every command, oldest first: ``command_id``, ``harvester_id``, ``command``, ``params``,
    ``ack_requested``, ``status`` (``new`` -> ``retrieved`` by ``acquire_commands`` -> ``acknowledged``),
    ``creation_date``, ``status_date``.
``add_command(harvester_id, command, params=None, *, ack_requested=False) -> int``
    Writes a command as the server does (replacing the instance's earlier one of the same name); its id.
``sweep(queue, status_list=(), ce_list=(), host_list=()) -> str``
    ``add_sweep_command``: ``"OK"`` once ``KILL_WORKERS`` is written for the queue's factory, else the reason.
``run_pilot_streaming() -> dict``
    One pilot-streaming step now (``pilot_streaming.py``): writes ``SET_N_WORKERS_JOBTYPE:<queue>`` for each
    unified pilot-streaming queue with statistics of the last hour; returns ``{queue: {harvester_id:
    params}}``, e.g. ``{"Q": {"h": {"managed": {"SCORE": 3}}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from autopilot_ops.panda.devserver.auth import (
    Authenticator,
    IdentityAuthenticator,
    TokenAuthenticator,
    open_authenticator,
    parse_identities,
)
from autopilot_ops.panda.devserver.jobspec import build_job_spec
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.server import PandaDevServer, ServerConfig
from autopilot_ops.panda.devserver.submitter import submit_specs

DEFAULT_TEST_TOKEN = "devserver-test-token"


class DevServer:
    """Context manager around a ``PandaDevServer`` on port 0; see the module docstring."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        files_dir: str | Path | None = None,
        auth: str = "open",
        token: str | None = None,
        identities: Sequence[Mapping[str, Any]] | None = None,
        legacy: bool = False,
        heartbeat_timeout: float | None = None,
        db: str | Path | None = None,
        access_log: TextIO | None = None,
        pilot_streaming_period: float | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.heartbeat_timeout = heartbeat_timeout
        authenticator = _authenticator(auth, token, identities)
        self.token = authenticator.production_token()
        self._config = ServerConfig(
            db=db if db is not None else self.workdir / "panda-devserver.db",
            port=0,
            files_dir=Path(files_dir) if files_dir is not None else None,
            authenticator=authenticator,
            legacy=legacy,
            heartbeat_timeout=heartbeat_timeout,
            access_log=access_log,
            pilot_streaming_period=pilot_streaming_period,
        )
        self.server: PandaDevServer | None = None

    def __enter__(self) -> DevServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = PandaDevServer(self._config)
        self.server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def _running(self) -> PandaDevServer:
        if self.server is None:
            raise RuntimeError("the DevServer is not running; use it inside its 'with' block")
        return self.server

    @property
    def url(self) -> str:
        return self._running.url

    @property
    def port(self) -> int:
        return self._running.port

    @property
    def store(self) -> JobStore:
        return self._running.store

    def submit_jobs(
        self,
        queue: str,
        count: int,
        transformation: str,
        job_pars: str,
        *,
        priority: int = 1000,
        in_files: Sequence[str | Mapping[str, Any]] = (),
        out_files: Sequence[str] = (),
        prod_source_label: str = "managed",
        log_file: bool = True,
        core_count: int = 1,
        max_walltime: int | None = None,
        label: str = "autopilot",
        extra: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> list[int]:
        specs = [
            build_job_spec(
                queue,
                transformation,
                job_pars,
                priority=priority,
                prod_source_label=prod_source_label,
                in_files=in_files,
                out_files=out_files,
                log_file=log_file,
                core_count=core_count,
                max_walltime=max_walltime,
                label=label,
                extra=extra,
            )
            for _ in range(count)
        ]
        replies = submit_specs(self.url, specs, token=token or self.token)
        return [int(reply[0]) for reply in replies]

    def job(self, panda_id: int) -> dict[str, Any]:
        found = self.store.job(panda_id)
        if found is None:
            raise KeyError(f"no job {panda_id} on the dev server")
        return found

    def jobs(self, site: str | None = None) -> list[dict[str, Any]]:
        return self.store.jobs(site)

    def kill(self, panda_ids: Sequence[int], code: int | None = None) -> list[bool]:
        return self.store.kill(list(panda_ids), "/DC=local/CN=devserver-test", production=True, code=code)

    def check_heartbeats(self, timeout: float | None = None) -> list[int]:
        limit = timeout if timeout is not None else self.heartbeat_timeout
        if limit is None:
            raise ValueError("check_heartbeats needs a timeout: none was configured")
        return self.store.fail_lost_heartbeats(limit)

    def stats(self) -> dict[str, dict[str, int]]:
        return self.store.stats_by_site()

    # -- the pilot-factory side ---------------------------------------------------------------------------
    def set_queue(self, name: str, **schedconfig: Any) -> None:
        self._running.context.queues.set(name, {"queues": [], **schedconfig})

    def harvester_instances(self) -> list[dict[str, Any]]:
        return self._running.context.factory.instances()

    def workers(self, harvester_id: str | None = None) -> list[dict[str, Any]]:
        return self._running.context.factory.workers(harvester_id)

    def worker(self, harvester_id: str, worker_id: int) -> dict[str, Any]:
        found = [item for item in self.workers(harvester_id) if item["workerID"] == worker_id]
        if not found:
            raise KeyError(f"no worker {worker_id} of {harvester_id} on the dev server")
        return found[0]

    def worker_statistics(self) -> dict[str, Any]:
        return self._running.context.factory.worker_stats()

    def commands(self, harvester_id: str | None = None) -> list[dict[str, Any]]:
        return self._running.context.commands.commands(harvester_id)

    def add_command(self, harvester_id: str, command: str, params: Any = None, *, ack_requested: bool = False) -> int:
        command_id = self._running.context.commands.command_to_harvester(
            harvester_id, command, params, ack_requested=ack_requested
        )
        assert command_id is not None  # no lock interval: a new command always replaces the last
        return command_id

    def sweep(
        self, queue: str, status_list: Sequence[str] = (), ce_list: Sequence[str] = (), host_list: Sequence[str] = ()
    ) -> str:
        return self._running.context.commands.sweep(queue, status_list, ce_list, host_list)

    def run_pilot_streaming(self) -> dict[str, Any]:
        return self._running.pilot_streaming.run()


def _authenticator(auth: str, token: str | None, identities: Sequence[Mapping[str, Any]] | None) -> Authenticator:
    if auth == "open":
        return open_authenticator()
    if auth == "token":
        return TokenAuthenticator(token or DEFAULT_TEST_TOKEN)
    if auth == "identities":
        if not identities:
            raise ValueError("auth='identities' needs identities=[{'dn', 'token', 'production'}, ...]")
        return IdentityAuthenticator(parse_identities(list(identities), "DevServer identities"))
    raise ValueError(f"auth must be 'open', 'token' or 'identities', got {auth!r}")
