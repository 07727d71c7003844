"""The error every AutoPilot command prints without a traceback: a reason the user can act on."""


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed without a traceback."""
