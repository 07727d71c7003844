"""The access log: one line per request, written straight to a text stream.

Like ``http.server.BaseHTTPRequestHandler.log_message``, it bypasses the ``logging`` machinery, whose cost per
record was a tenth of a dispatch; lines look like the CLI's log lines (``<time> INFO <message>``).
"""

from __future__ import annotations

import threading
import time
from typing import TextIO


class AccessLog:
    """Writes whole lines under a lock, so lines of concurrent requests never interleave."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._second = -1
        self._stamp = ""

    def write(
        self, client: str, method: str, target: str, status: int, size: int, millis: float, who: str, outcome: str
    ) -> None:
        now = time.time()
        second = int(now)
        with self._lock:
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            line = (
                f'{self._stamp},{int((now - second) * 1000):03d} INFO {client} "{method} {target}" {status}'
                f" {size}B {millis:.1f}ms {who} {outcome}\n"
            )
            self._stream.write(line)
            self._stream.flush()
