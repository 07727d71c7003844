"""Which scheduler serves a queue: its first tag, or its site when it has no tag."""

#: The rule as SQL over ``schedconfig`` columns.
SCHEDULER_TAG_SQL = "coalesce(tags[1], site)"
