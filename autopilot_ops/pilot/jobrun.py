"""One job from its dict to its final update: prepare, stage in, transformation, payload under supervision
(wall time, memory, heartbeats and server commands, signals), stage out, log tarball, final report.

The states sent follow pilot3 (``starting``, ``running``, then ``finished`` or ``failed``), and every
failure carries a pilot3 error code (``pilot/common/errorcodes.py``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from autopilot_ops.panda import protocol
from autopilot_ops.pilot import errorcodes, staging, transformation
from autopilot_ops.pilot.config import PilotConfig
from autopilot_ops.pilot.errorcodes import JobFailure
from autopilot_ops.pilot.heartbeat import PhaseHeartbeat
from autopilot_ops.pilot.job import Job, JobDefinitionError, panda_id_of, parse_job
from autopilot_ops.pilot.payload import Payload, PayloadResult, payload_environment
from autopilot_ops.pilot.reporting import KILL_COMMANDS, Reporter
from autopilot_ops.pilot.staging import StagedFile
from autopilot_ops.pilot.status import StatusLine
from autopilot_ops.pilot.vo.base import VOPlugin
from autopilot_ops.record import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

STDOUT_NAME = "payload.stdout"
STDERR_NAME = "payload.stderr"
JOB_LOG_NAME = "pilot-job.log"


class JobOutcome(Record, frozen=False):
    """How a job ended, and when its milestones happened (``time.monotonic``, for overhead figures)."""

    panda_id: int | None
    state: str
    pilot_error_code: int = 0
    pilot_error_diag: str = ""
    delivered: bool = True
    milestones: dict[str, float] = field(default_factory=dict)
    #: the payload's exit code (``transExitCode``), when it ran
    payload_exit_code: int | None = None
    #: the job's work dir, when it is kept
    workdir: str | None = None


class _Stopped(Exception):
    """The pilot received a signal before the payload started."""

    def __init__(self, signum: int) -> None:
        self.signum = signum


def _utc(timestamp: float) -> str:
    return time.strftime(protocol.DATE_FORMAT, time.gmtime(timestamp))


class JobRun:
    """Runs one job dict; ``stop_signal()`` returns the signal the pilot received, if any; ``wake`` is set by
    the pilot's signal handler so that supervision reacts at once.
    """

    def __init__(
        self,
        config: PilotConfig,
        reporter: Reporter,
        vo: VOPlugin,
        stop_signal: Callable[[], int | None],
        wake: threading.Event,
        status: StatusLine | None = None,
    ) -> None:
        self.config = config
        self.reporter = reporter
        self.vo = vo
        self.stop_signal = stop_signal
        self.wake = wake
        self.status = status

    # --- entry point ---

    def run(self, raw: Mapping[str, Any], acquired_at: float) -> JobOutcome:
        milestones = {"acquired": acquired_at}
        try:
            job = parse_job(raw)
        except JobDefinitionError as exc:
            return self._malformed(raw, exc, milestones)
        self._phase(job, "starting")
        workdir = Path(self.config.workdir) / f"PanDA_Pilot-{job.panda_id}"
        try:
            workdir.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            diag = f"cannot create work dir {workdir}: {exc}"
            log.error("job %d: %s", job.panda_id, diag)
            return self._finish(job, "failed", errorcodes.MKDIR, diag, {}, milestones)
        handler = self._attach_job_log(workdir)
        try:
            return self._run_in(job, workdir, milestones)
        except Exception as exc:  # the pilot reports every job, whatever went wrong
            log.exception("job %d: unexpected pilot error", job.panda_id)
            return self._finish(job, "failed", errorcodes.UNKNOWNEXCEPTION, f"pilot exception: {exc!r}", {}, milestones)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
            if not self.config.keep_workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                log.info("job %d: work dir kept at %s", job.panda_id, workdir)

    def _malformed(self, raw: Any, exc: JobDefinitionError, milestones: dict[str, float]) -> JobOutcome:
        panda_id = exc.panda_id or panda_id_of(raw)
        log.error("%s", exc)
        if panda_id is None:
            return JobOutcome(None, "failed", exc.code, str(exc), True, milestones)
        delivered = self.reporter.final(
            panda_id,
            "failed",
            pilot_error_code=exc.code,
            pilot_error_diag=str(exc)[:500],
            node=self.config.node,
            site_name=self.config.queue,
        )
        return JobOutcome(panda_id, "failed", exc.code, str(exc), delivered, milestones)

    def _attach_job_log(self, workdir: Path) -> logging.Handler:
        handler = logging.FileHandler(workdir / JOB_LOG_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        return handler

    def _phase(self, job: Job, phase: str) -> None:
        log.debug("job %d: %s", job.panda_id, phase)
        if self.status is not None:
            self.status.set(job.panda_id, phase)

    def _heartbeat(self, job: Job, state: str) -> PhaseHeartbeat:
        """Heartbeats in ``state`` while a transfer or log packing keeps the pilot from supervising."""
        return PhaseHeartbeat(
            self.reporter,
            job.panda_id,
            state,
            self.config.heartbeat_interval,
            node=self.config.node,
            site_name=self.config.queue,
        )

    def _check_stop(self) -> None:
        signum = self.stop_signal()
        if signum is not None:
            raise _Stopped(signum)

    def _disk_full(self, workdir: Path) -> tuple[int, str] | None:
        """``NOLOCALSPACE`` and a diag when the work dir's disk has less free space than the limit."""
        try:
            free_mb = shutil.disk_usage(workdir).free // 2**20
        except OSError:
            return None
        if free_mb >= self.config.min_free_space_mb:
            return None
        return (
            errorcodes.NOLOCALSPACE,
            f"too little space left on the work dir's disk: {free_mb} MB free in {workdir},"
            f" limit {self.config.min_free_space_mb} MB",
        )

    @staticmethod
    def _check_space(job: Job, workdir: Path) -> None:
        """Fail the job early when the work dir has less room than the job's ``maxDiskCount`` (MB)."""
        if not job.max_disk_count or job.max_disk_count <= 0:
            return
        free_mb = shutil.disk_usage(workdir).free // 2**20
        if free_mb < job.max_disk_count:
            raise JobFailure(
                errorcodes.NOLOCALSPACE, f"{free_mb} MB free in {workdir}, the job needs {job.max_disk_count} MB"
            )

    # --- the job's phases ---

    def _run_in(self, job: Job, workdir: Path, milestones: dict[str, float]) -> JobOutcome:
        fields: dict[str, Any] = {}
        try:
            (workdir / "job.json").write_text(json.dumps(dict(job.raw), indent=1, sort_keys=True))
            command = self.reporter.update(job.panda_id, "starting", node=self.config.node, site_name=self.config.queue)
            if command in KILL_COMMANDS:
                return self._finish(
                    job,
                    "failed",
                    errorcodes.PANDAKILL,
                    f"job killed by the server before it started ({command})",
                    fields,
                    milestones,
                )
            self._check_stop()
            self._check_space(job, workdir)
            self._phase(job, "stage-in")
            template = self.config.input_url or self.config.storage_url
            with self._heartbeat(job, "starting") as beat:
                staging.stage_in(job, workdir, template, self.config.mover, self.config.mover_options)
                self._check_stop()
                self._phase(job, "transformation")
                trf = transformation.prepare(
                    job.transformation, workdir, self.vo, self.config.allow_url_prefixes, self.config.trf_sha256
                )
            if beat.kill_command is not None:
                raise JobFailure(
                    errorcodes.PANDAKILL, f"job killed by the server during stage-in ({beat.kill_command})"
                )
            self._check_stop()
            result, kill = self._execute(job, workdir, trf, fields, milestones)
        except _Stopped as stop:
            code = errorcodes.signal_error_code(stop.signum)
            return self._finish(
                job,
                "failed",
                code,
                f"pilot received {signal.Signals(stop.signum).name} before the payload started",
                fields,
                milestones,
            )
        except JobFailure as exc:
            log.error("job %d: %s", job.panda_id, exc.diag)
            return self._finish_with_log(job, workdir, "failed", exc.code, exc.diag, fields, milestones)
        if result is None:
            code, diag = kill or (errorcodes.PAYLOADEXECUTIONFAILURE, "payload could not be started")
            return self._finish_with_log(job, workdir, "failed", code, diag, fields, milestones)
        code, diag = kill or self._judge(job, workdir, result)
        return self._stage_out(job, workdir, code, diag, fields, milestones)

    def _execute(
        self, job: Job, workdir: Path, trf: Path, fields: dict[str, Any], milestones: dict[str, float]
    ) -> tuple[PayloadResult | None, tuple[int, str] | None]:
        """Run and supervise the payload; returns its result and the pilot's kill reason, if it killed it."""
        env = self.vo.environment(job, workdir, payload_environment(os.environ))
        command = self.vo.payload_command(job, trf)
        echo = None
        if self.config.interactive:
            echo = (sys.stdout.buffer, sys.stderr.buffer)
            if self.status is not None:
                echo = (self.status.echo(echo[0]), self.status.echo(echo[1]))
        payload = Payload(command, workdir, env, workdir / STDOUT_NAME, workdir / STDERR_NAME, echo)
        self.wake.clear()
        try:
            payload.start(on_exit=self.wake)
        except OSError as exc:
            return None, (errorcodes.PAYLOADEXECUTIONFAILURE, f"cannot execute {trf}: {exc}")
        milestones["payload_started"] = time.monotonic()
        started = time.time()
        fields.update(start_time=_utc(started), core_count=job.core_count)
        self._phase(job, "running")
        log.info("job %d: payload started, pid %d: %s", job.panda_id, payload.pid, " ".join(command))
        command_reply = self.reporter.update(
            job.panda_id,
            "running",
            node=self.config.node,
            site_name=self.config.queue,
            start_time=fields["start_time"],
            core_count=job.core_count,
        )
        try:
            kill = self._supervise(job, payload, command_reply)
        finally:
            payload.stop(self.config.kill_grace)  # a no-op unless supervision itself failed
        result = payload.result
        assert result is not None
        milestones["payload_exited"] = time.monotonic() - (time.time() - result.end_time)
        fields.update(
            end_time=_utc(result.end_time),
            cpu_consumption_time=round(result.cpu_time),
            cpu_consumption_unit="s",
            max_rss=result.max_rss_kb or None,
            trans_exit_code=result.shell_code,
            exe_error_code=result.shell_code,
        )
        log.info(
            "job %d: payload ended with %s after %.1f s (cpu %.1f s, max RSS %d kB)",
            job.panda_id,
            f"exit code {result.exit_code}"
            if result.signal is None
            else f"signal {signal.Signals(result.signal).name}",
            result.end_time - result.start_time,
            result.cpu_time,
            result.max_rss_kb,
        )
        return result, kill

    def _supervise(self, job: Job, payload: Payload, command: str | None) -> tuple[int, str] | None:
        """Wait for the payload, enforcing wall time and memory, heartbeating, obeying commands and signals."""
        config = self.config
        now = time.monotonic()
        deadline = now + job.wall_time_limit if job.wall_time_limit else None
        memory_limit_kb = (job.memory_limit_mb * config.memory_factor * 1024) if job.memory_limit_mb else None
        next_heartbeat = now + config.heartbeat_interval
        next_memory = now + min(config.memory_poll, 0.5)
        next_draw = now + 1.0 if self.status is not None else None
        kill: tuple[int, str] | None = None
        while not payload.finished.is_set():
            if command in KILL_COMMANDS:
                kill = (errorcodes.PANDAKILL, f"job killed by the server ({command})")
                break
            signum = self.stop_signal()
            if signum is not None:
                kill = (
                    errorcodes.signal_error_code(signum),
                    f"pilot received {signal.Signals(signum).name}; payload stopped",
                )
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                kill = (errorcodes.REACHEDMAXTIME, f"payload exceeded its wall time of {job.wall_time_limit} s")
                break
            if now >= next_memory:
                rss_kb = payload.tree_rss_kb()
                if memory_limit_kb is not None and rss_kb > memory_limit_kb:
                    kill = (
                        errorcodes.PAYLOADEXCEEDMAXMEM,
                        f"payload used {rss_kb // 1024} MB of memory, limit {int(memory_limit_kb // 1024)} MB",
                    )
                    break
                kill = self._disk_full(payload.workdir)
                if kill is not None:
                    break
                next_memory = now + config.memory_poll
            if now >= next_heartbeat:
                command = self.reporter.update(
                    job.panda_id, "running", node=config.node, site_name=config.queue, core_count=job.core_count
                )
                next_heartbeat = time.monotonic() + config.heartbeat_interval
                continue
            if next_draw is not None and now >= next_draw and self.status is not None:
                self.status.draw()
                next_draw = now + 1.0
            wait = min(t for t in (deadline, next_memory, next_heartbeat, next_draw) if t is not None) - now
            self.wake.wait(max(wait, 0.0))
            self.wake.clear()
        if kill is not None:
            log.warning("job %d: %s; stopping the payload", job.panda_id, kill[1])
            self._phase(job, "killing")
            payload.stop(config.kill_grace)
        payload.finished.wait()
        return kill

    def _judge(self, job: Job, workdir: Path, result: PayloadResult) -> tuple[int, str]:
        """Error code and diag of a payload that ended on its own; a failure on a full disk is ``NOLOCALSPACE``."""
        if result.shell_code != 0 and (full := self._disk_full(workdir)) is not None:
            return full[0], f"payload failed with exit code {result.shell_code}; {full[1]}"
        if result.signal is not None:
            name = signal.Signals(result.signal).name
            return errorcodes.KILLSIGNAL, f"payload was killed by {name}, not by the pilot"
        return self.vo.map_exit_code(job, result.exit_code or 0)

    def _stage_out(
        self, job: Job, workdir: Path, code: int, diag: str, fields: dict[str, Any], milestones: dict[str, float]
    ) -> JobOutcome:
        staged: list[StagedFile] = []
        self._phase(job, "stage-out")
        template = self.config.output_url or self.config.storage_url
        if code == 0:
            try:
                with self._heartbeat(job, "running") as beat:
                    for spec in job.output_files:
                        staged.append(
                            staging.stage_out_file(
                                spec, workdir / spec.lfn, template, self.config.mover, self.config.mover_options
                            )
                        )
            except JobFailure as exc:
                log.error("job %d: %s", job.panda_id, exc.diag)
                code, diag, staged = exc.code, exc.diag, []
            else:
                if beat.kill_command is not None:
                    code = errorcodes.PANDAKILL
                    diag = f"job killed by the server during stage-out ({beat.kill_command})"
        return self._finish_with_log(
            job, workdir, "finished" if code == 0 else "failed", code, diag, fields, milestones, staged
        )

    def _finish_with_log(
        self,
        job: Job,
        workdir: Path,
        state: str,
        code: int,
        diag: str,
        fields: dict[str, Any],
        milestones: dict[str, float],
        staged: list[StagedFile] | None = None,
    ) -> JobOutcome:
        """Tar and stage out the log (whatever the job's state), then send the final update."""
        staged = list(staged or [])
        if code == errorcodes.NOLOCALSPACE:
            self._free_space(job, workdir)
        if job.log_file is not None:
            template = self.config.output_url or self.config.storage_url
            try:
                with self._heartbeat(job, "running" if "payload_started" in milestones else "starting"):
                    tarball = staging.make_log_tarball(job, workdir, exclude=())
                    staged.append(
                        staging.stage_out_file(
                            job.log_file, tarball, template, self.config.mover, self.config.mover_options
                        )
                    )
            except JobFailure as exc:
                log.error("job %d: log: %s", job.panda_id, exc.diag)
                if state == "finished":
                    state, code, diag = "failed", exc.code, exc.diag
        if staged:
            fields["job_output_report"] = staging.output_report(staged)
        return self._finish(job, state, code, diag, fields, milestones)

    @staticmethod
    def _free_space(job: Job, workdir: Path) -> None:
        """Remove the job's inputs and outputs from a full work dir (the log leaves them out), so that the log
        tarball can still be made; as pilot3 does when it stops a payload for its disk use."""
        for spec in (*job.input_files, *job.output_files):
            path = workdir / spec.lfn
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("job %d: cannot remove %s to free space: %s", job.panda_id, path, exc)

    def _finish(
        self, job: Job, state: str, code: int, diag: str, fields: dict[str, Any], milestones: dict[str, float]
    ) -> JobOutcome:
        self._phase(job, f"final update ({state})")
        exit_code = fields.get("trans_exit_code")
        fields.setdefault("end_time", _utc(time.time()))
        delivered = self.reporter.final(
            job.panda_id,
            state,
            pilot_error_code=code,
            pilot_error_diag=diag[:500] if diag else None,
            node=self.config.node,
            site_name=self.config.queue,
            attempt_nr=job.attempt_nr,
            core_count=fields.pop("core_count", job.core_count),
            **fields,
        )
        milestones["final_acknowledged"] = time.monotonic()
        log.info(
            "job %d: %s%s%s",
            job.panda_id,
            state,
            f" ({code}: {diag})" if code else "",
            "" if delivered else " [final update kept for resending]",
        )
        self._phase(job, state)
        workdir = Path(self.config.workdir) / f"PanDA_Pilot-{job.panda_id}"
        return JobOutcome(job.panda_id, state, code, diag, delivered, milestones, exit_code,
                          str(workdir) if self.config.keep_workdir else None)
