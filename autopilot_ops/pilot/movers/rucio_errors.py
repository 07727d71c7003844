"""Rucio client failures as pilot3 error codes, from the exception and the client's traces (``traces_copy_out``).

Follows PanDAWMS/pilot3 ``pilot/copytool/rucio.py`` (``handle_rucio_error``: the trace's ``stateReason`` first)
and ``pilot/copytool/common.py`` (``resolve_common_transfer_errors``), with pilot3's codes
(``pilot/common/errorcodes.py``):

- Rucio cannot be reached: ``RUCIOSERVICEUNAVAILABLE`` (``output_line_scan``'s code for Rucio's
  service_unavailable);
- an RSE Rucio does not know: ``NOSTORAGE`` (``pilot/api/data.py: resolve_protocols``, an unknown ddmendpoint);
- no such input: :class:`MissingFileError` (``MISSINGINPUTFILE``, "No such file or directory" on stage-in);
- an input whose copy fails Rucio's checksum validation: ``GETADMISMATCH``;
- an output already in Rucio: ``FILEEXISTS``;
- anything else: the staging default, ``STAGEINFAILED`` or ``STAGEOUTFAILED``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.movers.base import MissingFileError, TransferError

if TYPE_CHECKING:
    from autopilot_ops.pilot.movers.rucio import RucioDID

_UNREACHABLE = {"ServerConnectionException"}
_UNKNOWN_RSE = {"InvalidRSEExpression", "RSENotFound"}


def _names(exc: BaseException) -> set[str]:
    """The class names of ``exc``'s type and its bases (Rucio's exception classes, without importing them)."""
    return {cls.__name__ for cls in type(exc).__mro__}


def _state(traces: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The client state and reason of the (single) file's trace, as plain strings."""
    if not traces:
        return "", ""
    state = traces[0].get("clientState")
    return str(getattr(state, "value", state) or ""), str(traces[0].get("stateReason") or "")


def _text(exc: BaseException, reason: str) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"{message} ({reason})" if reason and reason not in message else message


def download_failure(exc: BaseException, traces: Sequence[dict[str, Any]], did: RucioDID) -> TransferError:
    """The error to raise for a failed ``download_dids`` of ``did``."""
    names = _names(exc)
    state, reason = _state(traces)
    text = f"rucio download of {did.scope}:{did.name}" + (f" from {did.rse}" if did.rse else "")
    text = f"{text}: {_text(exc, reason)}"
    if names & _UNREACHABLE:
        return TransferError(text, errorcodes.RUCIOSERVICEUNAVAILABLE)
    if names & _UNKNOWN_RSE:
        return TransferError(text, errorcodes.NOSTORAGE)
    if "DataIdentifierNotFound" in names or state == "FILE_NOT_FOUND":
        return MissingFileError(text)
    if state == "FAIL_VALIDATE":
        return TransferError(text, errorcodes.GETADMISMATCH)
    return TransferError(text)


def upload_failure(exc: BaseException, traces: Sequence[dict[str, Any]], did: RucioDID, rse: str) -> TransferError:
    """The error to raise for a failed ``upload`` of ``did`` to ``rse``."""
    names = _names(exc)
    _, reason = _state(traces)
    text = f"rucio upload of {did.scope}:{did.name} to {rse}: {_text(exc, reason)}"
    if names & _UNREACHABLE:
        return TransferError(text, errorcodes.RUCIOSERVICEUNAVAILABLE)
    if names & _UNKNOWN_RSE:
        return TransferError(text, errorcodes.NOSTORAGE)
    if "already exists" in reason.lower() or "DataIdentifierAlreadyExists" in names:
        return TransferError(text, errorcodes.FILEEXISTS)
    return TransferError(text)
