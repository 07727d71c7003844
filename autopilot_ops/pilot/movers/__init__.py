"""Data movers: plugins that copy files between storage and the job's work dir (``autopilot.datamovers``)."""
