"""Submission back ends: one module each, one interface (``base.Backend``), found through ``registry``."""
