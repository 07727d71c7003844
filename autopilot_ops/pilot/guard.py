"""The guard that kills the payloads' process groups when the pilot dies, even by SIGKILL.

One ``/bin/sh`` per pilot, in a session of its own (a signal to the pilot's group spares it), reads ``watch
GROUP`` and ``release GROUP`` lines from a pipe whose only writer is the pilot. At the pipe's end (the pilot is
gone, by exit or by SIGKILL) it kills every group still watched. ``PR_SET_PDEATHSIG`` would reach only a
payload's first process, and the ``preexec_fn`` it needs is unsafe in a pilot with threads. One guard serves
all the pilot's payloads, so a job costs no process start for it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading

_SCRIPT = """groups=" "
while read -r verb group; do
    case "$verb" in
        watch) groups="$groups$group " ;;
        release) case "$groups" in *" $group "*) groups="${groups%% $group *} ${groups#* $group }" ;; esac ;;
    esac
done
for group in $groups; do kill -s KILL -- "-$group" 2>/dev/null; done
"""


class Guard:
    """Started at the first :meth:`watch` (and again if it died); safe to share between threads."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: int | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def watch(self, group: int) -> None:
        """Kill process group ``group`` should the pilot die; raises ``OSError`` when no guard can run."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            assert self._pipe is not None
            os.write(self._pipe, f"watch {group}\n".encode())

    def release(self, group: int) -> None:
        """Forget ``group``: it is gone, and its number may be reused."""
        with self._lock, contextlib.suppress(OSError):
            if self._pipe is not None:
                os.write(self._pipe, f"release {group}\n".encode())

    def _start(self) -> None:
        read_end, write_end = os.pipe()  # not inheritable: only the guard gets the read end, as its stdin
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", _SCRIPT, "autopilot-payload-guard"],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        if self._pipe is not None:
            os.close(self._pipe)
        self._process, self._pipe = process, write_end


#: The pilot's one guard.
GUARD = Guard()
