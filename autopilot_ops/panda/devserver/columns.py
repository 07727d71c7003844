"""Values as PostgreSQL would store them in the columns of PanDA's pilot-factory tables.

The real server binds what a factory sent straight into its SQL, so a value PostgreSQL refuses (text longer
than its ``varchar``, a dict, a time it cannot parse) makes the whole call fail with a database error. These
converters raise ``ColumnError`` in those cases; the lengths are those of the ``panda-database`` schema. A
``datetime/YYYY-MM-DD HH:MM:SS.ffffff`` string is a time, as ``WorkerSpec.__setattr__`` reads it.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

#: ``WorkerSpec``'s own time format, six digits of microseconds: ``strptime``'s ``%f`` reads it as well.
_HARVESTER_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")


class ColumnError(ValueError):
    """A value the real server's database would refuse."""


def text(value: Any, length: int) -> str | None:
    """A ``varchar(length)``: numbers and booleans are stored as their text (PostgreSQL's assignment cast)."""
    if type(value) is str and len(value) <= length:  # the common case, first
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise ColumnError(f"cannot store a {type(value).__name__} as text")
    if len(value) > length:
        raise ColumnError(f"value too long for type character varying({length})")
    return value


def integer(value: Any) -> int | None:
    """An ``integer``/``bigint``: an int, a float (rounded) or the text of an integer."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ColumnError("cannot store a boolean as an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ColumnError(f"invalid input syntax for type integer: {value!r}") from None
    raise ColumnError(f"cannot store a {type(value).__name__} as an integer")


def timestamp(value: Any) -> str | None:
    """A ``timestamp``, kept as ``YYYY-MM-DD HH:MM:SS[.ffffff]``."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if not isinstance(value, str):
        raise ColumnError(f"cannot store a {type(value).__name__} as a timestamp")
    try:
        if value.startswith("datetime/"):
            text_value = value.split("/")[-1]
            if _HARVESTER_TIME.fullmatch(text_value):  # what Harvester sends: fromisoformat reads it faster
                parsed = datetime.datetime.fromisoformat(text_value)
            else:
                parsed = datetime.datetime.strptime(text_value, "%Y-%m-%d %H:%M:%S.%f")
        else:
            parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ColumnError(f"invalid input syntax for type timestamp: {value!r}") from None
    return parsed.replace(tzinfo=None).isoformat(sep=" ")


def utc_iso(epoch: float) -> str:
    """An epoch as a naive UTC ``datetime.isoformat()`` (``getCommands``' ``creation_date``)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(tzinfo=None).isoformat()
