"""The pilot scheduler's core: pilot lifecycle in PostgreSQL, and one scheduling cycle."""
