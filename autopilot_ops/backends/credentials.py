"""The variables through which a pilot finds the credential it was shipped with: the defaults of its
authentication options (``--proxy``, ``--token-file``, ``--origin`` in ``pilot/commands.py``)."""

from __future__ import annotations

from autopilot_ops.credentials.model import PROXY, Credential
from autopilot_ops.pilot.payload import PASS_CREDENTIALS_VARIABLE

PROXY_VARIABLE = "X509_USER_PROXY"
TOKEN_FILE_VARIABLE = "PANDA_AUTH_TOKEN_FILE"
ORIGIN_VARIABLE = "PANDA_AUTH_ORIGIN"


def pilot_environment(credential: Credential | None, path: str | None = None) -> dict[str, str]:
    """The pilot's variables for ``credential``, its file at ``path`` where the pilot runs (default: its own path;
    a relative path is the pilot's working directory's)."""
    if credential is None:
        return {}
    where = path or credential.path
    if credential.kind == PROXY:
        env = {PROXY_VARIABLE: where}
    else:
        env = {TOKEN_FILE_VARIABLE: where, ORIGIN_VARIABLE: credential.origin or ""}
    if credential.pass_to_payload:
        env[PASS_CREDENTIALS_VARIABLE] = "1"
    return env
