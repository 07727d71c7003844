"""Where AutoPilot finds its database and its files, from arguments, the environment, or defaults."""

from __future__ import annotations

import os
from pathlib import Path

#: The database that ``autopilot up`` starts when no DSN is configured (see ``store.embedded``).
EMBEDDED_PG_PORT = int(os.environ.get("AUTOPILOT_EMBEDDED_PG_PORT", "55432"))
EMBEDDED_DSN = f"postgresql://postgres@127.0.0.1:{EMBEDDED_PG_PORT}/autopilot"


def resolve_dsn(explicit: str | None = None) -> str:
    """Return the DSN to use: ``--dsn``, then ``AUTOPILOT_DSN``, then the embedded default."""
    return explicit or os.environ.get("AUTOPILOT_DSN") or EMBEDDED_DSN


def state_dir() -> Path:
    """Directory for the run command's services (data, logs, PID files); ``AUTOPILOT_HOME`` overrides."""
    return Path(os.environ.get("AUTOPILOT_HOME", Path.cwd() / ".autopilot")).resolve()
