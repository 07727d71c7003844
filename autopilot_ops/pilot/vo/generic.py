"""The generic VO: nothing VO-specific; transformations are scripts or programs run as they are."""

from __future__ import annotations

from autopilot_ops.pilot.vo.base import VOPlugin


class GenericVO(VOPlugin):
    """Runs ``<trf> <jobPars>`` with the job's identity in the environment; exit code 0 means success."""

    name = "generic"
