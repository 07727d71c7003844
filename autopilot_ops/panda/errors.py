"""Errors of the PanDA client: each names the endpoint, and for a broken reply the field."""

from __future__ import annotations


class PandaError(Exception):
    """A PanDA call did not give a usable answer."""

    def __init__(self, endpoint: str, detail: str) -> None:
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(f"PanDA {endpoint}: {detail}")


class PandaCommunicationError(PandaError):
    """The server could not be reached, or kept failing (5xx, time-outs) through every retry."""


class PandaHTTPError(PandaError):
    """The server refused the request with an HTTP 4xx status; retrying would not help."""

    def __init__(self, endpoint: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(endpoint, f"HTTP {status}: {body.strip()[:300] or '(empty body)'}")


class PandaReplyError(PandaError):
    """The reply is not what the wire format promises; ``field`` names the part that is wrong."""

    def __init__(self, endpoint: str, field: str, problem: str) -> None:
        self.field = field
        super().__init__(endpoint, f"broken reply, field '{field}' {problem}")


class PandaRefused(PandaError):
    """The server answered properly but said no (``success`` false or a non-zero ``StatusCode``)."""

    def __init__(self, endpoint: str, message: str, status_code: int | None = None) -> None:
        self.message = message
        self.status_code = status_code
        code = f" (StatusCode {status_code})" if status_code is not None else ""
        super().__init__(endpoint, f"refused{code}: {message or 'no message'}")
