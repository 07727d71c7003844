"""``autopilot up`` names a taken port and the setting that moves it, and starts nothing it would leave behind."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from .conftest import Quickstart


@pytest.mark.parametrize("setting", ["AUTOPILOT_EMBEDDED_PG_PORT", "AUTOPILOT_PANDA_PORT"])
def test_taken_port_is_named_with_its_setting(new_quickstart: Callable[..., Quickstart], setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        quickstart = new_quickstart(**{setting: str(port)})
        result = quickstart.run("up", timeout=120)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and setting in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "panda-devserver" not in quickstart.service_pids()
