"""Pilot-count policy: pure functions that return the number of pilots and the reason."""
