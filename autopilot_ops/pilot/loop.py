"""The pilot's main loop: resend kept updates, acquire a job, run it, and take another while within the
queue's time floor; then exit with a pilot3 exit code (``pilot/util/auxiliary.py``): 0, 82 when PanDA had
no job, 79 when the server could not be reached, 128+signal after SIGTERM, SIGINT or SIGUSR1.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping

from autopilot_ops import __version__
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.config import PilotConfig
from autopilot_ops.pilot.events import EventReporter
from autopilot_ops.pilot.outbox import FinalUpdate, Outbox
from autopilot_ops.pilot.reporting import Reporter
from autopilot_ops.pilot.status import StatusLine
from autopilot_ops.pilot.vo.base import VOPlugin, load_vo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from autopilot_ops.pilot.jobrun import JobOutcome, JobRun

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def make_client(config: PilotConfig, server_url: str | None = None, protocol: str | None = None) -> PandaClient:
    """A client for ``server_url`` (default: the configured one) with the pilot's auth and retries."""
    return PandaClient(
        server_url or config.server_url,
        protocol_name=protocol or config.protocol,
        auth=config.auth,
        retry=config.retry,
        timeout=config.request_timeout,
    )


class Pilot:
    """One pilot process. ``client`` None is a dry run (no server); ``job_dicts`` replaces acquisition."""

    def __init__(
        self,
        config: PilotConfig,
        client: PandaClient | None,
        job_dicts: list[Mapping[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.job_dicts = list(job_dicts) if job_dicts is not None else None
        self.outbox = Outbox(config.outbox)
        self.reporter = Reporter(
            client,
            self.outbox,
            fallback=Outbox(config.fallback_outbox),
            patience=config.final_patience,
            slot_end=config.slot_end,
            handover=Outbox(config.kept_dir) if config.kept_dir is not None else None,
        )
        self.events = EventReporter(config.pilot_id, config.queue, config.monitor_url, config.monitor_token)
        self.status = StatusLine(sys.stderr) if config.interactive else None
        if self.status is not None:
            _log_above(self.status)
        self.wake = threading.Event()
        #: set by the first signal and never cleared: cuts short the client's waits between retries
        self.stopping = threading.Event()
        if client is not None:
            client.sleep = self.stopping.wait
        self.received_signal: int | None = None
        self.outcomes: list[JobOutcome] = []
        self._started = time.monotonic()

    # --- signals ---

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.received_signal is None:
            self.received_signal = signum
        self.stopping.set()
        self.wake.set()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in HANDLED_SIGNALS}

    # --- the loop ---

    def run(self) -> int:
        """Run jobs until done; returns the pilot's exit code."""
        previous = self._install_signals()
        self.events.emit("started", server=self.config.server_url or "-", node=self.config.node, version=__version__)
        try:
            code = self._loop()
        except Exception:
            log.exception("pilot failed")
            code = errorcodes.exit_code_for_error(errorcodes.UNKNOWNEXCEPTION)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.events.emit("exiting", exit_code=code, jobs=len(self.outcomes))
        self.events.close()
        log.info("pilot exiting with code %d after %d job(s)", code, len(self.outcomes))
        if self.status is not None:
            self.status.close(self.outcomes)
        return code

    def _loop(self) -> int:
        self._make_kept_dir()
        self._resend_kept()
        vo = load_vo(self.config.vo, self.config.vo_options)
        runner: JobRun | None = None
        while self.received_signal is None and self._may_take_another():
            if self.status is not None:
                self.status.set(None, "acquiring")
            try:
                jobs = self._acquire()
            except PandaError as exc:
                log.error("cannot get a job: %s", exc)
                if self.received_signal is not None:
                    break
                return errorcodes.EXIT_COMMUNICATIONFAILURE
            acquired_at = time.monotonic()
            if not jobs and self.received_signal is not None:
                break
            if not jobs:
                log.info("no jobs in PanDA for %s", self.config.queue)
                return errorcodes.EXIT_NOJOBS if not self.outcomes else errorcodes.EXIT_OK
            for raw in jobs:
                self.events.emit("job", job_id=raw.get("PandaID") if isinstance(raw, Mapping) else None)
                runner = runner or self._runner(vo)
                outcome = runner.run(raw, acquired_at)
                self.outcomes.append(outcome)
                self._log_overhead(outcome)
                self.events.emit(
                    "job_done", job_id=outcome.panda_id, state=outcome.state, pilot_error_code=outcome.pilot_error_code
                )
            if self.received_signal is not None:
                break
            if self.reporter.undelivered:
                return errorcodes.EXIT_COMMUNICATIONFAILURE
        if self.received_signal is not None:
            return errorcodes.signal_exit_code(self.received_signal)
        return errorcodes.EXIT_OK

    def _runner(self, vo: VOPlugin) -> JobRun:
        """What runs the jobs, made at the first one: a pilot that finds no job never imports the job machinery
        (staging, tarfile, the payload's supervision), so it exits sooner and smaller."""
        from autopilot_ops.pilot.jobrun import JobRun

        return JobRun(self.config, self.reporter, vo, lambda: self.received_signal, self.wake, self.status)

    def _may_take_another(self) -> bool:
        done = len(self.outcomes)
        if done == 0:
            return True
        if self.config.once:
            return False
        within_floor = time.monotonic() - self._started < self.config.time_floor
        if self.config.max_jobs is not None:
            return done < self.config.max_jobs and (self.config.time_floor <= 0 or within_floor)
        return within_floor

    def _acquire(self) -> list[Any]:
        if self.job_dicts is not None:
            jobs, self.job_dicts = self.job_dicts[:1], self.job_dicts[1:]
            return jobs
        assert self.client is not None, "a pilot without a server needs job dicts"
        config = self.config
        return self.client.acquire_jobs(
            config.queue,
            prod_source_label=config.prod_source_label,
            node=config.node,
            computing_element=config.computing_element,
            memory=config.memory_mb,
            disk_space=config.disk_space_mb,
            resource_type=config.resource_type,
            harvester_id=config.harvester_id if config.worker_id is not None else None,
            worker_id=config.worker_id if config.harvester_id else None,
        )

    def _make_kept_dir(self) -> None:
        """Create the hand-over directory now: a batch system told to bring it back holds a job without it."""
        if self.reporter.handover is None:
            return
        try:
            self.reporter.handover.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create the kept dir %s: %s", self.reporter.handover.directory, exc)

    def _resend_kept(self) -> None:
        """Send the final updates that earlier pilots on this node could not deliver (home and work dir)."""
        boxes = [box for box in (self.outbox, self.reporter.fallback) if box is not None and box.pending()]
        if self.client is None or not boxes:
            return
        clients = {(self.client.url, self.client.protocol): self.client}

        def client_for(update: FinalUpdate) -> PandaClient:
            key = (update.server_url, update.protocol)
            if key not in clients:
                clients[key] = make_client(self.config, *key)
            return clients[key]

        for box in boxes:
            summary = box.resend(client_for)
            log.info(
                "kept final updates in %s: %d delivered, %d rejected, %d still pending",
                box.directory,
                summary.sent,
                summary.rejected,
                summary.pending,
            )
        for client in clients.values():
            if client is not self.client:
                client.close()

    @staticmethod
    def _log_overhead(outcome: JobOutcome) -> None:
        marks = outcome.milestones
        if {"acquired", "payload_started", "payload_exited", "final_acknowledged"} <= marks.keys():
            log.info(
                "job %s overhead: acquire_to_payload_start=%.4f payload_exit_to_final_ack=%.4f",
                outcome.panda_id,
                marks["payload_started"] - marks["acquired"],
                marks["final_acknowledged"] - marks["payload_exited"],
            )


def _log_above(status: StatusLine) -> None:
    """The log lines of an interactive pilot go above its status line, instead of through stderr's handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler.stream is sys.stderr:
            root.removeHandler(handler)
    root.addHandler(status.log_handler())
