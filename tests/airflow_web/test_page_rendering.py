"""The pages' templates: autoescaped (a hostile queue, tag, reason or event is shown as text, never run) and
strict (a variable missing from a page's context is an error, not an empty string)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import jinja2
import pytest

from autopilot_ops.airflow.webapp.rendering import render

SCRIPT = "<script>alert(1)</script>"
QUEUE = "Q<img src=x onerror=alert(1)>"  # a queue name cannot hold "/": it is a segment of the page's URL


@pytest.fixture
def hostile(seed, client, bearer):
    seed.queue(QUEUE, [SCRIPT], site=SCRIPT)
    seed.cycle(QUEUE, "c1", dt.datetime.now(dt.timezone.utc), {"queued": 1}, decided=0, reason=[SCRIPT])
    seed.pilot(QUEUE, "1-0", "failed", state_reason=SCRIPT)
    reply = client.post(f"/api/controls/queue/{quote(QUEUE, safe='')}", headers=bearer("op"),
                        json={"paused": True, "reason": SCRIPT})
    assert reply.status_code == 200


@pytest.mark.parametrize("path", ["/", f"/?tag={quote(SCRIPT)}", f"/?site={quote(SCRIPT)}",
                                  f"/queues/{quote(QUEUE, safe='')}"])
def test_hostile_values_appear_escaped(client, hostile, bearer, path):
    page = client.get(path, headers=bearer("op")).text
    assert SCRIPT not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Q&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_queue_page_escapes_a_hostile_pause_reason_where_it_explains_the_stop(client, hostile, bearer):
    page = client.get(f"/queues/{quote(QUEUE, safe='')}", headers=bearer("viewer")).text
    assert ("No pilot is submitted:\nqueue Q&lt;img src=x onerror=alert(1)&gt; paused "
            "(&lt;script&gt;alert(1)&lt;/script&gt;).") in page


def test_a_missing_variable_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        render("overview.html", tags={}, panels={}, states=())
