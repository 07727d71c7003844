"""When the pilot's batch slot ends, so that a final update is not retried past it.

Taken from, in order: ``AUTOPILOT_SLOT_END`` (epoch seconds; a back end or a site sets it), Slurm's
``SLURM_JOB_END_TIME`` (epoch seconds, set in every Slurm job's environment). ``None`` when neither is set.
"""

from __future__ import annotations

from collections.abc import Mapping

SLOT_END_VARIABLES = ("AUTOPILOT_SLOT_END", "SLURM_JOB_END_TIME")


def slot_end(environ: Mapping[str, str]) -> float | None:
    """The slot's end (epoch seconds) from ``environ``; a bad value raises ``ValueError`` naming the variable."""
    for name in SLOT_END_VARIABLES:
        text = environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"environment variable {name}: {text!r} is not epoch seconds") from None
        if value <= 0:
            raise ValueError(f"environment variable {name}: {text!r} is not a positive epoch time")
        return value
    return None
