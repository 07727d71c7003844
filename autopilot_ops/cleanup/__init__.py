"""Cleanup (the old cleanSpace): pilot logs by age and disk watermark, and old rows in the store."""
