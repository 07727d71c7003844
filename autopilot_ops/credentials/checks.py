"""The credentials of a queue's job types as the scheduler sees them in a cycle: which file each submission
carries (the queue's setting before its back end's), and how long each has left, for the policy's gate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from autopilot_ops.credentials.lifetime import check
from autopilot_ops.credentials.model import (
    Credential,
    CredentialError,
    backend_credentials,
    parse_credentials,
    resolve,
)
from autopilot_ops.policy.credentials import CredentialLifetime

#: The least a credential must have left when a queue sets no minimum and no ``maxtime`` above it.
DEFAULT_MIN_LIFETIME_S = 3600


def minimum_lifetime(queue: Mapping[str, Any]) -> int:
    """``min_credential_lifetime``, else the queue's ``maxtime``, at least 1 h."""
    if queue.get("min_credential_lifetime") is not None:
        return int(queue["min_credential_lifetime"])
    return max(int(queue.get("maxtime") or 0), DEFAULT_MIN_LIFETIME_S)


def credential_for(
    queue: Mapping[str, Any], backend_parameters: Mapping[str, Any] | None, job_type: str
) -> Credential | None:
    """The credential a ``job_type`` submission of ``queue`` carries; a bad setting raises ``CredentialError``."""
    own = parse_credentials(queue.get("credentials") or {})
    return resolve(own, backend_credentials(backend_parameters, queue.get("backend") or "-"), job_type)


def credential_lifetimes(
    queue: Mapping[str, Any], backend_parameters: Mapping[str, Any] | None, now: dt.datetime
) -> tuple[CredentialLifetime, ...]:
    """One lifetime per distinct credential of the job types the queue serves, each file read now; a bad setting
    is one entry with the error, so that the queue submits nothing and says why."""
    minimum = float(minimum_lifetime(queue))
    job_types: dict[Credential, list[str]] = {}
    try:
        for job_type in queue.get("prod_source_labels") or ():
            credential = credential_for(queue, backend_parameters, job_type)
            if credential is not None:
                job_types.setdefault(credential, []).append(job_type)
    except CredentialError as exc:
        return (CredentialLifetime("setting", "credentials", minimum, error=f"setting unusable: {exc}"),)
    lifetimes = []
    for credential, served in job_types.items():
        seen = check(credential)
        left = None if seen.expires_at is None else (seen.expires_at - now).total_seconds()
        lifetimes.append(
            CredentialLifetime(credential.kind, credential.path, minimum, tuple(served), left, seen.error)
        )
    return tuple(lifetimes)
