"""The names a job hands us that become paths: file names (LFNs), scopes and dataset names.

PanDA's own code checks no file name (PanDAWMS/panda-server ``pandaserver/taskbuffer/FileSpec.py`` stores what it
is given; PanDAWMS/panda-database ``schema/postgres/sqls/pg_PANDA_TABLE.sql`` only bounds the columns:
``filestable4.lfn`` 4000 characters, ``scope`` 30, ``dataset`` and the dispatch and destination blocks 255). Every
file PanDA hands out is registered in Rucio, so Rucio's rule is the binding one, and the one held here.
A name is held to what Rucio itself accepts for a data identifier (rucio/rucio
``lib/rucio/common/schema/generic.py``): ``NAME`` is ``^[A-Za-z0-9][A-Za-z0-9\\.\\-\\_]{1,250}$`` and ``SCOPE``
is ``^[a-zA-Z_\\-.0-9]{1,25}$``; a dataset is ``[scope:]name``, the DID form Rucio splits on ``:``. So no
``/``, NUL or control character ever reaches a path, and a name never starts with ``.`` (no ``..``); the scopes
``.`` and ``..``, which Rucio's pattern lets through, are refused as well.

Codes follow PanDAWMS/pilot3 ``pilot/common/errorcodes.py``: a too long name gets ``LFNTOOLONG``, as in pilot3
``pilot/user/atlas/common.py`` (``verify_lfn_length``, 255 characters; Rucio's 251 is the tighter bound held
here); an output or log name with other characters gets ``BADOUTPUTFILENAME``; any other bad name is a
malformed job definition (``CONVERSIONFAILURE``).
"""

from __future__ import annotations

import re

from autopilot_ops.pilot import errorcodes

NAME_LENGTH = 251  # Rucio NAME: one leading character, then {1,250}
SCOPE_LENGTH = 25  # Rucio SCOPE_LENGTH
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,250}")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,25}")


class BadName(ValueError):
    """A name that would become a path is not a plain name; ``code`` is the pilot3 error code to report."""

    def __init__(self, code: int, problem: str) -> None:
        self.code = code
        super().__init__(problem)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def check_lfn(value: str, output: bool = False) -> None:
    """Refuse an LFN that is not a Rucio NAME; ``output`` picks pilot3's output-name code."""
    if len(value) > NAME_LENGTH:
        raise BadName(errorcodes.LFNTOOLONG, f"value {_shown(value)} is {len(value)} characters, at most {NAME_LENGTH}")
    if not _NAME.fullmatch(value):
        code = errorcodes.BADOUTPUTFILENAME if output else errorcodes.CONVERSIONFAILURE
        raise BadName(code, f"value {_shown(value)} is not a plain file name (Rucio NAME: [A-Za-z0-9][A-Za-z0-9._-]+)")


def check_scope(value: str) -> None:
    """Refuse a scope that is not a Rucio SCOPE, or is ``.`` or ``..``."""
    if not _SCOPE.fullmatch(value) or value in (".", ".."):
        raise BadName(
            errorcodes.CONVERSIONFAILURE,
            f"value {_shown(value)} is not a scope (Rucio SCOPE: [A-Za-z0-9_.-]{{1,{SCOPE_LENGTH}}}, not . or ..)",
        )


def check_dataset(value: str) -> None:
    """Refuse a dataset name that is not ``[scope:]name`` with a Rucio SCOPE and NAME."""
    scope, colon, name = value.rpartition(":")
    good_scope = not colon or (_SCOPE.fullmatch(scope) is not None and scope not in (".", ".."))
    if not (good_scope and len(name) <= NAME_LENGTH and _NAME.fullmatch(name)):
        raise BadName(
            errorcodes.CONVERSIONFAILURE, f"value {_shown(value)} is not a dataset name ([scope:]name, Rucio DID)"
        )


def check_transformation(value: str) -> None:
    """Refuse a ``transformation`` (a path, a name or a URL) with a NUL or another control character."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or "%00" in value:
        raise BadName(errorcodes.CONVERSIONFAILURE, f"value {_shown(value)} has a control character")
