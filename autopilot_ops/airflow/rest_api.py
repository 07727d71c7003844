"""A client of Airflow's REST API v2, for the ``autopilot`` commands: a JWT from ``POST /auth/token``, then
JSON calls; every failure is a :class:`~autopilot_ops.errors.CommandError` naming the call."""

from __future__ import annotations

from typing import Any

import requests

from autopilot_ops.errors import CommandError

TIMEOUT = 30.0


class AirflowAPI:
    """A logged-in session to one Airflow API server."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def login(cls, url: str, username: str, password: str) -> AirflowAPI:
        reply = _request(requests.Session(), "POST", f"{url.rstrip('/')}/auth/token",
                         json={"username": username, "password": password})
        if reply.status_code in (401, 403):
            raise CommandError(f"Airflow at {url} refused the login of user {username!r} (HTTP {reply.status_code})")
        token = _json(reply, "POST /auth/token").get("access_token")
        if not isinstance(token, str) or not token:
            raise CommandError(f"Airflow at {url} answered POST /auth/token without field 'access_token'")
        return cls(url, token)

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        reply = _request(self.session, method, self.url + path, **kwargs)
        if reply.status_code == 404:
            raise CommandError(f"{what}: not found in Airflow at {self.url}")
        if reply.status_code in (401, 403):
            raise CommandError(f"{what}: Airflow refused it (HTTP {reply.status_code}: {_detail(reply)})")
        return _json(reply, f"{method} {path}")


def _request(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    try:
        return session.request(method, url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        raise CommandError(f"cannot reach Airflow at {url}: {exc}") from None


def _detail(reply: requests.Response) -> str:
    try:
        return str(reply.json().get("detail", reply.text))
    except ValueError:
        return reply.text.strip()[:200]


def _json(reply: requests.Response, what: str) -> dict[str, Any]:
    if reply.status_code >= 400:
        raise CommandError(f"Airflow answered {what} with HTTP {reply.status_code}: {_detail(reply)}")
    try:
        body = reply.json()
    except ValueError:
        raise CommandError(f"Airflow answered {what} with a body that is not JSON: {reply.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise CommandError(f"Airflow answered {what} with a {type(body).__name__}, not a JSON object")
    return body
