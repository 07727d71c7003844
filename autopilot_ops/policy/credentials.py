"""The credential gate: a queue whose pilots would carry a credential with less than its minimum lifetime left
(or one that cannot be read) submits nothing, and the reason says which credential and how long it has."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Every reason line of this gate starts so; the monitor flags a queue whose last decision has one.
REASON_PREFIX = "credential "


@dataclass(frozen=True, slots=True)
class CredentialLifetime:
    """What the scheduler saw of one credential of the queue: ``expires_in`` seconds (negative: expired), or the
    ``error`` that kept it from telling; ``minimum`` is the queue's minimum lifetime, ``job_types`` those it serves."""

    kind: str
    path: str
    minimum: float
    job_types: tuple[str, ...] = ()
    expires_in: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        owner = f"credential {self.kind} {self.path}"
        if (self.expires_in is None) == (self.error is None):
            raise ValueError(f"{owner}: exactly one of expires_in and error is needed")
        for name in ("minimum", "expires_in"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ValueError(f"{owner}: {name} must be a finite number of seconds, got {value!r}")
        if self.minimum < 0:
            raise ValueError(f"{owner}: minimum must be >= 0 seconds, got {self.minimum!r}")
        object.__setattr__(self, "job_types", tuple(self.job_types))

    def describe(self) -> str:
        """``token /x: 3 h left (minimum 1 h)``, for the cycle's inputs."""
        if self.error is not None:
            return f"{self.kind} {self.path}: {self.error}"
        assert self.expires_in is not None
        left = f"{describe_duration(self.expires_in)} left" if self.expires_in > 0 else "expired"
        return f"{self.kind} {self.path}: {left} (minimum {describe_duration(self.minimum)})"


def credential_gate(credentials: tuple[CredentialLifetime, ...]) -> str | None:
    """Why the queue may not submit for its credentials (one reason line, ending ``-> 0``), or None."""
    for credential in credentials:
        what = f"{REASON_PREFIX}{credential.kind} {credential.path}"
        if credential.error is not None:
            return f"{REASON_PREFIX}{credential.error} -> 0"
        assert credential.expires_in is not None
        if credential.expires_in <= 0:
            return f"{what} expired {describe_duration(-credential.expires_in)} ago -> 0"
        if credential.expires_in < credential.minimum:
            left, minimum = describe_duration(credential.expires_in), describe_duration(credential.minimum)
            return f"{what} expires in {left} < {minimum} -> 0"
    return None


def describe_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h``, ``2 h 30 min``, ``3 d 4 h`` (rounded down)."""
    whole = int(max(seconds, 0))
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")
