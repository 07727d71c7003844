"""Who is calling: an Airflow UI user (its JWT) or a machine client (a bearer token from Airflow).

Airflow 3 mounts plugin apps with no authentication, so every route here depends on :func:`require`.

- Airflow users send the UI's JWT in the ``_token`` cookie or an ``Authorization: Bearer`` header; it is
  checked by the configured auth manager (``BaseAuthManager.get_user_from_token``, as
  ``airflow/api_fastapi/core_api/security.py: get_user`` does). Roles: ``viewer`` and ``user`` may read,
  ``op`` and ``admin`` may act (``SimpleAuthManagerUser.role``, or the names of FAB's ``user.roles``).
- Machine clients (the PanDA server, pilots) send ``Authorization: Bearer <token>``; tokens come from the
  Airflow Variable ``autopilot_api_tokens`` (a JSON object ``{token: identity}`` or
  ``{token: {"identity": ..., "role": ...}}``; a bare identity gets the ``pilot`` role) and/or an Airflow
  connection (login = identity, password = token, extra ``{"role": ...}``), compared in constant time.

Roles, lowest first: ``viewer`` reads; ``pilot`` also posts pilot events; ``op`` and ``admin`` also change
controls and kill pilots. A request with no valid identity gets 401, one whose role is too low gets 403.
A write authenticated by the cookie alone must be JSON, so a cross-site HTML form cannot make it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from fastapi import HTTPException, Request, status

log = logging.getLogger(__name__)

#: ``airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN``
COOKIE_NAME = "_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(IntEnum):
    VIEWER = 0
    PILOT = 1
    OP = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


#: Airflow role names -> monitor roles (Airflow's ``user`` role may edit DAGs, not the scheduler).
AIRFLOW_ROLES = {"viewer": Role.VIEWER, "user": Role.VIEWER, "op": Role.OP, "admin": Role.ADMIN}
MACHINE_ROLES = {role.label: role for role in Role}

READ = Role.VIEWER
REPORT = Role.PILOT
ACT = Role.OP


@dataclass(frozen=True)
class Identity:
    """``name`` is what audit rows record as ``who``: ``user:<name>`` or ``token:<identity>``."""

    name: str
    role: Role
    via: str  # "cookie", "jwt" or "token"


@dataclass(frozen=True)
class TokenEntry:
    digest: bytes
    identity: str
    role: Role


def token_digest(token: str) -> bytes:
    """Tokens are compared as SHA-256 digests, so neither their content nor their length leaks."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenSource(Protocol):
    def entries(self) -> Sequence[TokenEntry]: ...


class _Cached:
    """Keeps a loader's entries for ``ttl`` seconds; a failing loader yields no entries (fail closed)."""

    def __init__(self, loader: Callable[[], list[TokenEntry]], ttl: float, what: str):
        self._loader = loader
        self._ttl = ttl
        self._what = what
        self._lock = threading.Lock()
        self._entries: list[TokenEntry] = []
        self._loaded_at = -float("inf")

    def entries(self) -> Sequence[TokenEntry]:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl:
                try:
                    self._entries = self._loader()
                except Exception as exc:
                    log.error("machine tokens from %s unusable, none accepted: %s", self._what, exc)
                    self._entries = []
                self._loaded_at = time.monotonic()
            return self._entries


def parse_token_map(value: Any, source: str) -> list[TokenEntry]:
    """Entries from ``{token: identity}`` or ``{token: {"identity", "role"}}``; errors name the entry."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{source} must be a JSON object of token -> identity, not {type(value).__name__}")
    entries = []
    for index, (token, spec) in enumerate(value.items()):
        where = f"{source} entry #{index + 1}"
        if not isinstance(token, str) or len(token) < 16:
            raise ValueError(f"{where}: token must be a string of at least 16 characters")
        if isinstance(spec, str):
            identity, role_name = spec, Role.PILOT.label
        elif isinstance(spec, Mapping):
            identity, role_name = spec.get("identity"), spec.get("role", Role.PILOT.label)
        else:
            raise ValueError(f"{where}: value must be an identity string or an object with 'identity'")
        if not isinstance(identity, str) or not identity:
            raise ValueError(f"{where}: field 'identity' must be a non-empty string")
        if role_name not in MACHINE_ROLES:
            raise ValueError(f"{where}: field 'role' is {role_name!r}, not one of {', '.join(MACHINE_ROLES)}")
        entries.append(TokenEntry(token_digest(token), identity, MACHINE_ROLES[role_name]))
    return entries


class VariableTokens(_Cached):
    """Tokens from the Airflow Variable ``name`` (any secrets backend, e.g. ``AIRFLOW_VAR_<NAME>``)."""

    def __init__(self, name: str, ttl: float = 30.0):
        super().__init__(self._load, ttl, f"Variable {name!r}")
        self.name = name

    def _load(self) -> list[TokenEntry]:
        from airflow.sdk import Variable

        value = Variable.get(self.name, default=None, deserialize_json=True)
        return [] if value is None else parse_token_map(value, f"Variable {self.name!r}")


class ConnectionTokens(_Cached):
    """One token from the Airflow connection ``conn_id``: login = identity, password = token."""

    def __init__(self, conn_id: str, ttl: float = 30.0):
        super().__init__(self._load, ttl, f"connection {conn_id!r}")
        self.conn_id = conn_id

    def _load(self) -> list[TokenEntry]:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.conn_id)
        role = (conn.extra_dejson or {}).get("role", Role.PILOT.label)
        return parse_token_map(
            {conn.password: {"identity": conn.login, "role": role}} if conn.password else {},
            f"connection {self.conn_id!r}",
        )


class UserResolver(Protocol):
    async def identity_from_jwt(self, token: str, via: str) -> Identity | None: ...


def airflow_role(user: Any) -> Role | None:
    """The highest monitor role among the Airflow user's roles, or None if it has none we know."""
    names: list[str] = []
    if isinstance(getattr(user, "role", None), str):
        names.append(user.role)
    names += [str(getattr(role, "name", role)) for role in getattr(user, "roles", None) or ()]
    roles = [AIRFLOW_ROLES[name.lower()] for name in names if name.lower() in AIRFLOW_ROLES]
    return max(roles) if roles else None


class AirflowUsers:
    """Checks JWTs with the auth manager of the Airflow API server this app is mounted in."""

    async def identity_from_jwt(self, token: str, via: str) -> Identity | None:
        from airflow.api_fastapi.app import get_auth_manager
        from jwt import InvalidTokenError

        try:
            user = await get_auth_manager().get_user_from_token(token)
        except InvalidTokenError:
            return None
        except RuntimeError as exc:  # no auth manager: not running inside the Airflow API server
            log.warning("cannot check an Airflow JWT here: %s", exc)
            return None
        role = airflow_role(user)
        if role is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"Airflow user {user.get_name()!r} has no AutoPilot role")
        return Identity(f"user:{user.get_name()}", role, via)


class Authenticator:
    """Finds the caller's identity: a machine token first, then an Airflow JWT (header, then cookie)."""

    def __init__(self, token_sources: Sequence[TokenSource], users: UserResolver | None = None):
        self.token_sources = list(token_sources)
        self.users = users

    def machine_identity(self, token: str) -> Identity | None:
        digest = token_digest(token)
        found = None
        for source in self.token_sources:
            for entry in source.entries():
                if hmac.compare_digest(digest, entry.digest) and found is None:
                    found = Identity(f"token:{entry.identity}", entry.role, "token")
        return found

    async def identify(self, request: Request) -> Identity | None:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if header and (scheme.lower() != "bearer" or not credentials.strip()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "Authorization header must be 'Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if credentials.strip():
            token = credentials.strip()
            identity = self.machine_identity(token)
            if identity is None and self.users is not None:
                identity = await self.users.identity_from_jwt(token, "jwt")
            if identity is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "invalid or expired bearer token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return identity
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie and self.users is not None:
            return await self.users.identity_from_jwt(cookie, "cookie")
        return None


def authenticator_from_settings(tokens_variable: str | None, tokens_conn_id: str | None, ttl: float) -> Authenticator:
    sources: list[TokenSource] = []
    if tokens_variable:
        sources.append(VariableTokens(tokens_variable, ttl))
    if tokens_conn_id:
        sources.append(ConnectionTokens(tokens_conn_id, ttl))
    return Authenticator(sources, AirflowUsers())


def require(minimum: Role) -> Callable[[Request], Awaitable[Identity]]:
    """A FastAPI dependency: the caller's identity, if its role is at least ``minimum`` (else 401/403)."""

    async def dependency(request: Request) -> Identity:
        authenticator: Authenticator = request.app.state.authenticator
        identity = await authenticator.identify(request)
        if identity is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "authentication required: log in to Airflow, or send a bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if identity.role < minimum:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"{identity.name} has role {identity.role.label}; this needs {minimum.label}"
            )
        if identity.via == "cookie" and request.method not in SAFE_METHODS:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    "a write authenticated by the session cookie must be sent as application/json",
                )
        return identity

    return dependency
