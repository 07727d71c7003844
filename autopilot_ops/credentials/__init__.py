"""The credentials pilots carry: what queues and back ends name (paths only), which one a submission carries, and
how long each has left (the back ends ship them: ``backends/credentials.py``)."""
