"""One payload process: started in its own session, its output tailed to files, its resource use recorded.

The process is reaped with ``os.wait4`` so that its CPU time comes from the kernel's rusage (which covers
the descendants it waited for). Its maximum RSS is the largest sample of the whole live process tree: the
rusage ``ru_maxrss`` of a child forked from the pilot counts the pilot's own pages up to ``exec``.

The payload dies with the pilot: the pilot's guard (``guard.py``) watches the payload's process group from its
start until it is reaped, and kills it should the pilot die first, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from autopilot_ops.pilot.guard import GUARD
from autopilot_ops.pilot.procfs import tree_rss_kb
from autopilot_ops.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

#: The pilot's variables a payload gets (``fnmatch`` patterns); everything else, the PanDA token file
#: (``PANDA_AUTH_TOKEN_FILE``), the proxy and the monitor token included, stays with the pilot. A VO plugin
#: adds what its payloads need in ``VOPlugin.environment``.
PAYLOAD_ENVIRONMENT = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "HOSTNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "X509_CERT_DIR",
)


#: The variables naming the pilot's PanDA credentials: never in the payload's environment unless the pilot passes
#: them on (``--pass-credentials``, or ``AUTOPILOT_PASS_CREDENTIALS=1``, which a back end sets for a queue whose
#: credential says ``pass_to_payload``).
CREDENTIAL_VARIABLES = ("X509_USER_PROXY", "PANDA_AUTH_TOKEN_FILE", "PANDA_AUTH_ORIGIN")
PASS_CREDENTIALS_VARIABLE = "AUTOPILOT_PASS_CREDENTIALS"


def payload_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``base`` that :data:`PAYLOAD_ENVIRONMENT` lets through, and the credentials' when ``base``
    says to pass them (:data:`PASS_CREDENTIALS_VARIABLE`)."""
    passing = CREDENTIAL_VARIABLES if base.get(PASS_CREDENTIALS_VARIABLE) == "1" else ()
    return {
        name: value
        for name, value in base.items()
        if name in passing or any(fnmatch.fnmatchcase(name, pattern) for pattern in PAYLOAD_ENVIRONMENT)
    }


class PayloadResult(Record):
    """How the payload ended: ``exit_code`` for a normal exit, ``signal`` when a signal ended it."""

    exit_code: int | None
    signal: int | None
    cpu_time: float
    #: largest sampled RSS of the process tree; 0 when it ended before the first sample
    max_rss_kb: int
    start_time: float
    end_time: float

    @property
    def shell_code(self) -> int:
        """The code a shell would show: the exit code, or 128+signal."""
        return self.exit_code if self.exit_code is not None else 128 + (self.signal or 0)


class Payload:
    """Runs ``command`` in ``workdir``; stdout and stderr go to files, and also to ``echo`` when given."""

    def __init__(
        self,
        command: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        stdout_path: Path,
        stderr_path: Path,
        echo: tuple[BinaryIO, BinaryIO] | None = None,
    ) -> None:
        self.command = list(command)
        self.workdir = workdir
        self.env = dict(env)
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.echo = echo
        self.finished = threading.Event()
        self.result: PayloadResult | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._start = 0.0
        self._sampled_rss_kb = 0
        self._copiers: list[threading.Thread] = []

    @property
    def pid(self) -> int:
        assert self._process is not None, "payload not started"
        return self._process.pid

    def start(self, on_exit: threading.Event | None = None) -> None:
        """Start the process (raises ``OSError`` if it cannot be executed); set ``on_exit`` when it ends."""
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            pipe = self.echo is not None
            self._start = time.time()
            self._process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe else out,
                stderr=subprocess.PIPE if pipe else err,
                start_new_session=True,
            )
        self._start_guard()
        if self.echo is not None:
            streams = (
                (self._process.stdout, self.stdout_path, self.echo[0]),
                (self._process.stderr, self.stderr_path, self.echo[1]),
            )
            for source, path, terminal in streams:
                copier = threading.Thread(target=_tee, args=(source, path, terminal), daemon=True)
                copier.start()
                self._copiers.append(copier)
        threading.Thread(target=self._reap, args=(on_exit,), daemon=True, name="payload-reaper").start()

    def _start_guard(self) -> None:
        """Have the guard kill the payload's group should the pilot die first."""
        try:
            GUARD.watch(self.pid)
        except OSError:
            self._signal_group(signal.SIGKILL)  # a payload no guard watches must not run
            self._process.wait()
            raise

    def _reap(self, on_exit: threading.Event | None) -> None:
        assert self._process is not None
        _, status, usage = os.wait4(self._process.pid, 0)
        end = time.time()
        self._process.returncode = os.waitstatus_to_exitcode(status)
        self._signal_group(signal.SIGKILL)  # no orphan of the payload outlives it
        GUARD.release(self.pid)
        for copier in self._copiers:
            copier.join()
        self.result = PayloadResult(
            exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            cpu_time=usage.ru_utime + usage.ru_stime,
            max_rss_kb=self._sampled_rss_kb,
            start_time=self._start,
            end_time=end,
        )
        self.finished.set()
        if on_exit is not None:
            on_exit.set()

    def tree_rss_kb(self) -> int:
        """Current RSS of the payload and all its descendants, in kB (also kept as a running maximum)."""
        total_kb = tree_rss_kb(self.pid)
        self._sampled_rss_kb = max(self._sampled_rss_kb, total_kb)
        return total_kb

    def stop(self, grace: float) -> None:
        """SIGTERM the payload's process group, then SIGKILL it if it is still there after ``grace`` s."""
        if self.finished.is_set():
            return
        self._signal_group(signal.SIGTERM)
        if not self.finished.wait(grace):
            self._signal_group(signal.SIGKILL)
            self.finished.wait()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def _tee(source: BinaryIO, path: Path, terminal: BinaryIO) -> None:
    """Copy ``source`` to the file at ``path`` and to ``terminal`` until end of file."""
    with source, open(path, "ab") as sink:
        while chunk := source.read1(65536):  # type: ignore[attr-defined]
            sink.write(chunk)
            sink.flush()
            try:
                terminal.write(chunk)
                terminal.flush()
            except (OSError, ValueError):
                pass
    end = getattr(terminal, "end_of_stream", None)  # a copier that holds a partial line (``status.StatusLine``)
    if end is not None:
        end()
