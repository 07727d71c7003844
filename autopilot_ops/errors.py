"""The error every AutoPilot command prints without a traceback, and how an exception reads in a reason."""


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed without a traceback."""


def describe_error(exc: BaseException) -> str:
    """``Type: message``, for reasons and submission details."""
    return f"{type(exc).__name__}: {exc}"
