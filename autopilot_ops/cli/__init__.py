"""The ``autopilot`` command line."""
