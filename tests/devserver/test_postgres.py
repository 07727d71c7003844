"""The dev server on a real PostgreSQL database: a job's life, and no double dispatch under concurrency."""

from __future__ import annotations

import threading
from collections import Counter

from autopilot_ops.panda.devserver.testing import DevServer


def test_job_life_and_concurrent_dispatch_on_postgres(tmp_path, pg_dsn, connect):
    with DevServer(tmp_path, db=pg_dsn) as srv:
        assert srv.server is not None and srv.server.database.postgres
        client = connect(srv.url)
        (first,) = srv.submit_jobs("PG", 1, "http://x/a.sh", "", priority=10)
        job = client.acquire("PG").json()["data"]["jobs"][0]
        assert job["PandaID"] == first
        client.update(first, "running")
        client.update(first, "finished", job_output_report=client.output_report(job))
        record = srv.job(first)
        assert record["status"] == "finished"
        assert [h["status"] for h in record["history"]] == ["activated", "sent", "running", "holding", "finished"]

        ids = srv.submit_jobs("PG", 30, "http://x/a.sh", "")
        clients = [connect(srv.url) for _ in range(40)]
        barrier = threading.Barrier(len(clients))
        got: list[int] = []
        lock = threading.Lock()

        def one_acquire(raw):
            barrier.wait()
            envelope = raw.acquire("PG").json()
            if envelope["success"]:
                with lock:
                    got.extend(j["PandaID"] for j in envelope["data"]["jobs"])

        threads = [threading.Thread(target=one_acquire, args=(raw,)) for raw in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not [pid for pid, n in Counter(got).items() if n > 1]
        assert sorted(got) == sorted(ids)
        assert client.get("/api/v1/statistics/active_job_stats_by_site").json()["data"] == {
            "PG": {"sent": 30, "assigned": 0, "activated": 0, "running": 0}
        }
