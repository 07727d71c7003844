"""PanDA: a client for the real wire format, and a wire-compatible development server."""
