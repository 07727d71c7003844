"""The credentials pilots carry: what a queue names (paths only), how long each has left, and how it reaches a pilot."""
