"""Which scheduler serves a queue: its first tag, or its site when it has no tag."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: SQL for the same rule, over ``schedconfig`` columns.
SCHEDULER_TAG_SQL = "coalesce(tags[1], site)"


def scheduler_tag(queue: Mapping[str, Any]) -> str:
    tags: Sequence[str] = queue.get("tags") or ()
    return tags[0] if tags else queue["site"]
