"""What a VO plugin decides: the payload's environment, its command line, where named transformations
live, and how payload exit codes map to pilot error codes. Plugins are found through ``autopilot.vo``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from autopilot_ops.pilot import errorcodes, jobpars
from autopilot_ops.pilot.job import Job
from autopilot_ops.pilot.plugins import load_plugin

ENTRY_POINT_GROUP = "autopilot.vo"
#: This package's own VO plugins (its ``setup.py`` entry points), found without reading installed metadata.
BUILTIN = {"generic": "autopilot_ops.pilot.vo.generic:GenericVO"}


class TransformationNotFound(LookupError):
    """A transformation given as a path or name could not be resolved."""


class VOPlugin:
    """A VO-neutral default for every hook; a VO overrides only what it needs.

    ``options`` come from the queue configuration; ``trf_path`` (``os.pathsep``-separated directories) is
    searched for transformations given by name, before ``PATH``.
    """

    name = "base"

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options = dict(options or {})

    def resolve_transformation(self, transformation: str) -> Path:
        """The executable for a transformation given as an absolute path or a bare name."""
        if os.sep in transformation:
            path = Path(transformation)
            if not path.is_absolute():
                raise TransformationNotFound(f"transformation path {transformation!r} is not absolute")
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise TransformationNotFound(f"transformation {path} is not an executable file")
            return path
        search = os.pathsep.join(filter(None, (self.options.get("trf_path", ""), os.environ.get("PATH", ""))))
        found = shutil.which(transformation, path=search)
        if found is None:
            raise TransformationNotFound(f"transformation {transformation!r} not found in trf_path or PATH")
        return Path(found)

    def environment(self, job: Job, workdir: Path, base: Mapping[str, str]) -> dict[str, str]:
        """The payload's environment: ``base`` (the pilot's, allow-listed by ``payload.PAYLOAD_ENVIRONMENT``), plus
        the job's identity."""
        env = dict(base)
        env.update(
            PANDAID=str(job.panda_id),
            PANDA_JOB_NAME=job.job_name or "",
            PANDA_ATTEMPT_NR=str(job.attempt_nr),
            PANDA_CORE_COUNT=str(job.core_count),
            PANDA_WORKDIR=str(workdir),
        )
        if job.task_id is not None:
            env["PANDA_TASKID"] = str(job.task_id)
        return env

    def payload_command(self, job: Job, transformation: Path) -> list[str]:
        """``<trf> <jobPars>``, the parameters split as a POSIX shell would, without running a shell."""
        return [str(transformation), *jobpars.split(job.job_pars)]

    def map_exit_code(self, job: Job, exit_code: int) -> tuple[int, str]:
        """``(pilot_error_code, diag)`` for a payload that exited with ``exit_code`` (``(0, "")`` when fine)."""
        if exit_code == 0:
            return 0, ""
        return errorcodes.PAYLOADEXECUTIONFAILURE, f"payload exited with code {exit_code}"


class UnknownVOError(LookupError):
    """No installed VO plugin has this name."""


@cache
def vo_class(name: str) -> type[VOPlugin]:
    """The plugin class registered under ``name`` in ``autopilot.vo``."""
    return load_plugin(ENTRY_POINT_GROUP, BUILTIN, name, UnknownVOError, "VO plugin")


def load_vo(name: str, options: Mapping[str, str] | None = None) -> VOPlugin:
    """An instance of the VO plugin ``name``."""
    return vo_class(name)(options)
