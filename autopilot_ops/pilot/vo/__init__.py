"""VO plugins: how a VO sets up and runs its payloads (``autopilot.vo``)."""
