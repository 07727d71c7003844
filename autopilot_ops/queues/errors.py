"""Errors in queue definitions, each naming the input, the queue and the field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One bad field: where it is and what is wrong with it."""

    source: str
    queue: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [self.source]
        if self.queue is not None:
            where.append(f"queue {self.queue!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{': '.join(where)}: {self.message}"


class QueueFileError(Exception):
    """A queue file that cannot be loaded. ``problems[0]`` is the first bad field."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        super().__init__("\n".join(map(str, self.problems)))


class FieldError(ValueError):
    """A value that breaks its field's rule; the caller adds the file, queue and field."""
