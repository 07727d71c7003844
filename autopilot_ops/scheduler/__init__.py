"""The pilot scheduler's core: a scheduling cycle (observe, decide, act, record), submission, status sweeps."""
