"""Who is calling: the three auth modes of the dev server.

The real server takes the caller's identity from a grid certificate (``SSL_CLIENT_S_DN``) or from an OIDC
token sent as ``Authorization: Bearer`` with the VO in ``Origin`` (``srvcore/panda_request.py``), and grants
the production role from the certificate DN or the token's groups (``api/v1/common.py: has_production_role``).
The dev server has no TLS, so identities come from bearer tokens only:

- ``open``: every caller is ``/DC=local/CN=pilot`` with the production role (local use only);
- ``token``: one shared token; its holder is ``/DC=local/CN=pilot`` with the production role;
- ``identities``: a JSON file ``{"identities": [{"dn": ..., "token": ..., "production": bool}, ...]}``.

A request without a token has no identity: secured methods answer ``SSL secure connection is required``. A
token that is unknown, or sent without ``Origin``, is refused before the method runs (HTTP 403
``ERROR : Token authentication failed. ...``), as ``server/panda.py: pre_validate_request`` does.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DN = "/DC=local/CN=pilot"
AUTH_MODES = ("open", "token", "identities")


class AuthError(Exception):
    """A token that cannot be accepted; the message follows ``Token authentication failed.``."""


class AuthConfigError(ValueError):
    """A bad auth configuration (token or identities file); the message names the input and field."""


@dataclass(frozen=True)
class Identity:
    """A caller: its DN and whether it holds the production (pilot) role."""

    dn: str
    production: bool


class Authenticator:
    """Maps request headers to an ``Identity`` (or ``None``: no credentials), or raises ``AuthError``."""

    mode = "open"

    def __init__(self, tokens: Mapping[str, Identity] | None = None) -> None:
        self._tokens = dict(tokens or {})

    def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        if self.mode == "open":
            return Identity(DEFAULT_DN, production=True)
        authorization = headers.get("Authorization")
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Invalid token. the Authorization header is not 'Bearer <token>'")
        if not headers.get("Origin"):
            raise AuthError("Token decode failure. the Origin header naming the VO is missing")
        token = token.strip()
        for known, identity in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return identity
        raise AuthError("Invalid token. the token is not known to this server")

    def production_token(self) -> str | None:
        """A token whose holder has the production role, for tools that submit as the operator."""
        return next((token for token, identity in self._tokens.items() if identity.production), None)

    def describe(self) -> str:
        if self.mode == "open":
            return "open (every caller has the production role)"
        return f"{self.mode} ({len(self._tokens)} token(s))"


class TokenAuthenticator(Authenticator):
    mode = "token"

    def __init__(self, token: str, dn: str = DEFAULT_DN) -> None:
        if not token or any(ch.isspace() for ch in token):
            raise AuthConfigError("the bearer token must be a non-empty string without whitespace")
        super().__init__({token: Identity(dn, production=True)})


class IdentityAuthenticator(Authenticator):
    mode = "identities"

    def __init__(self, entries: Sequence[tuple[str, Identity]]) -> None:
        super().__init__(dict(entries))


def open_authenticator() -> Authenticator:
    return Authenticator()


def load_identities(path: str | Path) -> IdentityAuthenticator:
    """Read an identities file; every error names the file and the entry's field."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuthConfigError(f"cannot read identities file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise AuthConfigError(f"identities file {path} is not JSON: {exc}") from exc
    entries = document.get("identities") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise AuthConfigError(f"identities file {path}: field 'identities' must be a non-empty list")
    return IdentityAuthenticator(parse_identities(entries, str(path)))


def parse_identities(entries: Sequence[object], source: str = "identities") -> list[tuple[str, Identity]]:
    """Validate ``[{"dn", "token", "production"}, ...]``; tokens must be unique."""
    parsed: list[tuple[str, Identity]] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source}: identities[{index}]"
        if not isinstance(entry, dict):
            raise AuthConfigError(f"{where} must be an object")
        dn, token, production = entry.get("dn"), entry.get("token"), entry.get("production", False)
        if not isinstance(dn, str) or not dn.startswith("/"):
            raise AuthConfigError(f"{where}: field 'dn' must be a DN such as /DC=org/CN=name")
        if not isinstance(token, str) or not token or any(ch.isspace() for ch in token):
            raise AuthConfigError(f"{where}: field 'token' must be a non-empty string without whitespace")
        if not isinstance(production, bool):
            raise AuthConfigError(f"{where}: field 'production' must be true or false")
        if token in seen:
            raise AuthConfigError(f"{where}: field 'token' repeats an earlier entry's token")
        seen.add(token)
        parsed.append((token, Identity(dn, production)))
    return parsed
