"""Where the monitor app finds its database, its log files and its machine tokens.

Read from the ``[autopilot]`` section of ``airflow.cfg`` (or ``AIRFLOW__AUTOPILOT__<KEY>``), with
``AUTOPILOT_DSN`` and ``AUTOPILOT_LOG_ROOT`` taking precedence; see ``airflow.cfg.example``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from autopilot_ops.config import state_dir
from autopilot_ops.pilot.shelf import default_bundle_dir

DEFAULT_TOKENS_VARIABLE = "autopilot_api_tokens"


@dataclass(frozen=True)
class WebSettings:
    """``dsn`` or ``postgres_conn_id`` locate the store; ``log_root`` bounds the log endpoint; machine tokens
    come from the Variable ``tokens_variable`` and/or the connection ``tokens_conn_id``; the pilot bundles
    served to batch nodes are in ``pilot_bundle_dir``; ``panda_monitor_url`` is the PanDA monitor's page of a
    job, with ``{panda_id}`` in it (or ``None``: job ids are not linked)."""

    dsn: str | None = None
    postgres_conn_id: str | None = None
    log_root: Path | None = None
    tokens_variable: str | None = DEFAULT_TOKENS_VARIABLE
    tokens_conn_id: str | None = None
    token_cache_seconds: float = 30.0
    store_pool_size: int = 4
    pilot_bundle_dir: Path | None = None
    panda_monitor_url: str | None = None

    def __post_init__(self) -> None:
        if self.panda_monitor_url is not None and "{panda_id}" not in self.panda_monitor_url:
            raise ValueError(f"[autopilot] panda_monitor_url {self.panda_monitor_url!r} has no {{panda_id}}")

    def panda_job_url(self, panda_id: str | int) -> str | None:
        """The PanDA monitor's page of job ``panda_id``, or ``None`` without ``panda_monitor_url``."""
        if self.panda_monitor_url is None:
            return None
        return self.panda_monitor_url.replace("{panda_id}", quote(str(panda_id), safe=""))

    @classmethod
    def from_airflow_conf(cls) -> WebSettings:
        from airflow.configuration import conf

        def option(key: str, fallback: str | None = None) -> str | None:
            return conf.get("autopilot", key, fallback=fallback) or None

        # the same default as the scheduler's (autopilot_ops.airflow.config.SchedulerConfig)
        log_root = os.environ.get("AUTOPILOT_LOG_ROOT") or option("log_root") or str(state_dir() / "logs")
        return cls(
            dsn=os.environ.get("AUTOPILOT_DSN") or option("dsn"),
            postgres_conn_id=option("postgres_conn_id"),
            log_root=Path(log_root),
            tokens_variable=option("api_tokens_variable", DEFAULT_TOKENS_VARIABLE),
            tokens_conn_id=option("api_tokens_conn_id"),
            token_cache_seconds=float(option("api_token_cache_seconds", "30") or 30),
            pilot_bundle_dir=Path(option("pilot_bundle_dir") or str(default_bundle_dir())),
            panda_monitor_url=option("panda_monitor_url"),
        )

