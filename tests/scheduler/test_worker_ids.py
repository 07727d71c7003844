"""Each pilot knows its own id (its PanDA worker id) before the back end has told its batch id: a submission
reserves consecutive ids, gives the first in the environment, and pilot ``i`` is recorded as ``first + i``."""

from __future__ import annotations

import threading
from pathlib import Path

from autopilot_ops.scheduler.submission import PilotSubmitter
from autopilot_ops.store.connection import Store
from autopilot_ops.store.pilots import reserve_pilot_ids

from .conftest import wait_for

ECHO_ID = ("sh", "-c", 'echo "$((AUTOPILOT_FIRST_PILOT_ID + AUTOPILOT_PILOT_INDEX))"')


def test_each_pilot_is_recorded_under_the_id_it_was_given(store, local_backend, make_spec) -> None:
    outcome = PilotSubmitter(store, local_backend, "test").submit(3, make_spec(command=ECHO_ID))
    assert outcome.submitted == 3
    with store.transaction() as cur:
        cur.execute("SELECT id, stdout_path FROM pilots ORDER BY id")
        rows = cur.fetchall()
        cur.execute("SELECT first_pilot_id FROM submissions")
        first = cur.fetchone()["first_pilot_id"]
    assert [r["id"] for r in rows] == [first, first + 1, first + 2]
    outputs = [Path(r["stdout_path"]) for r in rows]
    wait_for(lambda: all(path.exists() and path.read_text().strip() for path in outputs))
    assert [int(path.read_text()) for path in outputs] == [r["id"] for r in rows]


def test_concurrent_reservations_never_overlap(store, pg_dsn) -> None:
    blocks: list[range] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        with Store(pg_dsn) as own:
            for n in (1, 5, 50, 2) * 5:
                with own.transaction() as cur:
                    first = reserve_pilot_ids(cur, n)
                with lock:
                    blocks.append(range(first, first + n))

    threads = [threading.Thread(target=reserve_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for block in blocks for i in block]
    assert len(blocks) == 80 and len(ids) == len(set(ids)), "two reservations shared an id"
    with store.transaction() as cur:
        cur.execute("INSERT INTO pilots (queue, backend, batch_id) VALUES ('Q', 'local', 'x') RETURNING id")
        assert cur.fetchone()["id"] > max(ids), "the sequence moved past every reservation"
