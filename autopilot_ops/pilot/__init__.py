"""The generic PanDA pilot."""
