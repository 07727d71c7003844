"""Waiting for the quick start's services: alive, and answering on their health URL."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from autopilot_ops.quickstart.processes import Service
from autopilot_ops.quickstart.settings import QuickstartError


def check_alive(services: Sequence[Service]) -> None:
    """Fail, with the end of its log, if one of ``services`` has exited."""
    for service in services:
        if service.pid() is None:
            raise QuickstartError(
                f"{service.name} exited; the end of its log ({service.log_file}):\n{service.log_tail()}"
            )


def wait_for_url(url: str, services: Sequence[Service], timeout: float, interval: float = 0.5) -> None:
    """Poll ``url`` until it answers 200; fail if one of ``services`` exits, or after ``timeout`` seconds
    with the end of the first service's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(services)
        try:
            with urllib.request.urlopen(url, timeout=3) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(interval)
    first = services[0]
    raise QuickstartError(
        f"{first.name} did not answer on {url} within {timeout:.0f} s; "
        f"the end of its log ({first.log_file}):\n{first.log_tail()}"
    )
