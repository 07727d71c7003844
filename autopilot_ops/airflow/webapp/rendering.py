"""The monitor's Jinja2 environment: the pages under ``templates/``, autoescaped, a missing variable an error."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any
from urllib.parse import urlencode

import jinja2


def when(value: dt.datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS UTC``, or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def query(**params: Any) -> str:
    """``?k=v&...`` of the params that are not ``None`` or empty, for links that change a page's filters."""
    return "?" + urlencode({key: value for key, value in params.items() if value not in (None, "")})


@functools.cache
def environment() -> jinja2.Environment:
    """One per process: a template is compiled on first use and kept, unchecked (it ships with the package)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("autopilot_ops.airflow.webapp", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    env.globals.update(when=when, query=query)
    return env


def render(name: str, **context: Any) -> str:
    """The template ``name`` (e.g. ``queue.html``) rendered with ``context``."""
    return environment().get_template(name).render(**context)
