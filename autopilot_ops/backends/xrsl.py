r"""Pilot job descriptions in xRSL, NorduGrid's job language, as an ARC CE's REST interface takes them.

One description per pilot; several go in one request as ``+(&...)(&...)``. Attributes used (ARC's "xRSL
reference", NORDUGRID-MANUAL-4): ``executable``, ``inputfiles`` (an empty source: the client uploads the file),
``stdout``/``stderr`` (kept only if also listed in ``outputfiles``: without that A-REX deletes them when the
job ends), ``jobname``, ``queue``, ``count``, ``walltime`` (given as ``"N seconds"``), ``memory`` (MB per core),
``runtimeenvironment`` and ``gmlog``.

No ``arguments`` and no ``environment``: A-REX 6.17's fork job script pastes them into a shell script
unescaped (seen here: ``$``, backquotes, ``'`` and ``\`` in an argument, and ``"``, ``;`` or backquotes in an
environment value, are mangled or fail the job), so the pilot's command and environment travel in a script of
our own, uploaded as the executable (``arc.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Where a pilot's output goes in its session directory (and comes back from).
STDOUT = "pilot.out"
STDERR = "pilot.err"


class XrslError(ValueError):
    """A value xRSL cannot carry (a NUL byte)."""


def quote(value: str, what: str) -> str:
    """An xRSL string literal: in double quotes, a ``"`` doubled (xRSL's escape)."""
    if "\x00" in value:
        raise XrslError(f"{what} holds a NUL byte, which xRSL cannot carry")
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class PilotJob:
    """What one pilot's description says."""

    name: str
    executable: str
    input_files: Sequence[str] = ()
    queue: str | None = None
    cores: int = 1
    walltime_s: int | None = None
    memory_mb: int | None = None
    runtime_environments: Sequence[str] = ()

    def xrsl(self) -> str:
        parts = [("executable", quote(self.executable, "the executable"))]
        if self.input_files:
            parts.append(("inputfiles", " ".join(f"({quote(f, 'an input file')} \"\")" for f in self.input_files)))
        parts += [("stdout", quote(STDOUT, "stdout")), ("stderr", quote(STDERR, "stderr")),
                  ("outputfiles", f'({quote(STDOUT, "stdout")} "")({quote(STDERR, "stderr")} "")'),
                  ("gmlog", '"gmlog"'), ("jobname", quote(self.name, "the job name"))]
        if self.queue:
            parts.append(("queue", quote(self.queue, "the CE queue")))
        if self.cores > 1:
            parts.append(("count", str(int(self.cores))))
        if self.walltime_s:
            parts.append(("walltime", quote(f"{int(self.walltime_s)} seconds", "walltime")))
        if self.memory_mb:
            parts.append(("memory", str(max(1, int(self.memory_mb) // max(1, self.cores)))))
        for environment in self.runtime_environments:
            parts.append(("runtimeenvironment", quote(environment, "a runtime environment")))
        return "&" + "".join(f"({name}={value})" for name, value in parts)


def bulk(jobs: Sequence[PilotJob]) -> str:
    """One request's descriptions: a single job as is, several as an xRSL multi-request ``+(&...)(&...)``."""
    if len(jobs) == 1:
        return jobs[0].xrsl()
    return "+" + "".join(f"({job.xrsl()})" for job in jobs)
