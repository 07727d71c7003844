"""Loading queue files into schedconfig: both formats, reloads, pruning, and every validation error."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_ops.queues.errors import QueueFileError
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.store.backends import upsert_backend
from autopilot_ops.store.connection import Store
from autopilot_ops.store.queues import read_queues


def cric_queue(**overrides: Any) -> dict[str, Any]:
    queue = {
        "status": "online",
        "site": "SITE_A",
        "panda_resource": "SITE_A",
        "cloud": "DE",
        "corecount": 8,
        "maxrss": 16000,
        "maxtime": 172800,
        "maxwdir": 30000,
        "type": "unified",
        "pilot_manager": "Harvester",
        "resource_type_limits": {"SCORE": 100},
        "queues": [{"ce_endpoint": "ce.example.org:9619", "ce_flavour": "HTCONDOR-CE"}],
        "autopilot": {"backend": "slurm-a", "tags": ["de"], "max_per_cycle": 20},
    }
    queue.update(overrides)
    return queue


def write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.fixture
def db(store: Store) -> Store:
    with store.transaction() as cur:
        upsert_backend(cur, "slurm-a", "slurm")
    return store


def snapshot(store: Store) -> dict[str, dict[str, Any]]:
    with store.transaction() as cur:
        rows = read_queues(cur)
    for row in rows.values():
        row.pop("updated_at")
    return rows


def test_cric_file_maps_columns_and_keeps_unknown_attributes(db: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "cric.json", {"DE_QUEUE": cric_queue(), "DE_OTHER": cric_queue(status="test")})
    result = load_queues(db, path)
    assert [q.panda_queue for q in result.plan.added] == ["DE_QUEUE", "DE_OTHER"]
    row = snapshot(db)["DE_QUEUE"]
    assert row["site"] == "SITE_A" and row["panda_site"] == "SITE_A" and row["cloud"] == "DE"
    assert (row["corecount"], row["maxrss"], row["maxtime"], row["maxwdir"]) == (8, 16000, 172800, 30000)
    assert row["prod_source_labels"] == ["managed", "user"]
    assert row["pilot_type"] == "unified"
    assert row["backend"] == "slurm-a" and row["tags"] == ["de"] and row["max_per_cycle"] == 20
    assert row["attributes"]["pilot_manager"] == "Harvester"
    assert row["attributes"]["resource_type_limits"] == {"SCORE": 100}
    assert row["attributes"]["queues"][0]["ce_flavour"] == "HTCONDOR-CE"
    assert "autopilot" not in row["attributes"] and "site" not in row["attributes"]
    assert row["source"] == path


def test_short_yaml_format_with_defaults_and_backends(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "queues.yaml",
        """
backends:
  - {name: local, kind: local}
defaults: {backend: local, tags: [demo], cycle_period: 60}
queues:
  - {name: Q1, site: S1, queue_ratio: 0.5, min_queued: 2, max_queued: 10}
  - {name: Q2, site: S2, status: test, cycle_period: 120}
""",
    )
    load_queues(store, path)
    rows = snapshot(store)
    assert rows["Q1"]["backend"] == "local" and rows["Q1"]["tags"] == ["demo"]
    assert (rows["Q1"]["queue_ratio"], rows["Q1"]["min_queued"], rows["Q1"]["max_queued"]) == (0.5, 2, 10)
    assert rows["Q2"]["status"] == "test" and rows["Q2"]["cycle_period"] == 120
    assert rows["Q1"]["prod_source_labels"] == ["managed"]


def test_reload_unchanged_writes_nothing_and_change_is_detected(db: Store, tmp_path: Path) -> None:
    queues = {"A": cric_queue(), "B": cric_queue()}
    path = write(tmp_path, "q.json", queues)
    load_queues(db, path)
    before = snapshot(db)
    with db.transaction() as cur:
        cur.execute("SELECT updated_at FROM schedconfig WHERE panda_queue = 'A'")
        stamp = cur.fetchone()["updated_at"]
    again = load_queues(db, path)
    assert again.plan.unchanged == 2 and not again.plan.added and not again.plan.changed
    with db.transaction() as cur:
        cur.execute("SELECT updated_at FROM schedconfig WHERE panda_queue = 'A'")
        assert cur.fetchone()["updated_at"] == stamp
    queues["B"] = cric_queue(maxrss=32000, newattr="x")
    changed = load_queues(db, write(tmp_path, "q.json", queues))
    [(queue, change)] = changed.plan.changed
    assert queue.panda_queue == "B"
    assert change.fields["maxrss"] == (16000, 32000)
    assert set(change.fields) == {"maxrss", "attributes"}
    after = snapshot(db)
    assert after["A"] == before["A"]
    assert after["B"]["maxrss"] == 32000 and after["B"]["attributes"]["newattr"] == "x"


def test_prune_removes_absent_queues_only_when_asked(db: Store, tmp_path: Path) -> None:
    load_queues(db, write(tmp_path, "all.json", {"A": cric_queue(), "B": cric_queue(), "C": cric_queue()}))
    subset = write(tmp_path, "subset.json", {"A": cric_queue()})
    assert load_queues(db, subset).plan.removed == []
    assert set(snapshot(db)) == {"A", "B", "C"}
    assert load_queues(db, subset, prune=True, force=True).plan.removed == ["B", "C"]
    assert set(snapshot(db)) == {"A"}


def test_dry_run_reports_the_plan_and_writes_nothing(db: Store, tmp_path: Path) -> None:
    load_queues(db, write(tmp_path, "a.json", {"A": cric_queue(), "B": cric_queue()}))
    before = snapshot(db)
    new = write(tmp_path, "b.json", {"A": cric_queue(maxtime=10), "C": cric_queue()})
    result = load_queues(db, new, dry_run=True, prune=True, force=True)
    assert [q.panda_queue for q in result.plan.added] == ["C"]
    assert [c.queue for _, c in result.plan.changed] == ["A"]
    assert result.plan.removed == ["B"]
    assert result.plan.lines() == ["+ C", "~ A: maxtime: 172800 -> 10", "- B"]
    assert snapshot(db) == before


BAD_INPUTS = [
    ("status", {"X": cric_queue(status="sleeping")}, "X", "status", "unknown status 'sleeping'"),
    ("negative", {"X": cric_queue(maxrss=-1)}, "X", "maxrss", "must be >= 0"),
    ("non-numeric", {"X": cric_queue(maxtime="two days")}, "X", "maxtime", "must be an integer"),
    ("boolean", {"X": cric_queue(corecount=True)}, "X", "corecount", "must be an integer"),
    (
        "negative limit",
        {"X": cric_queue(autopilot={"backend": "slurm-a", "max_per_cycle": -3})},
        "X",
        "max_per_cycle",
        "must be >= 0",
    ),
    (
        "ratio",
        {"X": cric_queue(autopilot={"backend": "slurm-a", "queue_ratio": "lots"})},
        "X",
        "queue_ratio",
        "must be a number",
    ),
    ("backend", {"X": cric_queue(autopilot={"backend": "nowhere"})}, "X", "backend", "unknown back end 'nowhere'"),
    ("missing site", {"X": {"status": "online"}}, "X", "site", "is required"),
    ("not an object", {"X": ["online"]}, "X", None, "must be an object of attributes"),
    ("name mismatch", {"X": cric_queue(name="Y")}, "X", "name", "differs from the queue's key"),
    ("autopilot typo", {"X": cric_queue(autopilot={"max_per_cylce": 3})}, "X", "autopilot.max_per_cylce", "not an"),
    ("hostile queue name", {"bad name; drop table": cric_queue()}, "bad name; drop table", "panda_queue", "PanDA name"),
    ("path in queue name", {"../../etc": cric_queue()}, "../../etc", "panda_queue", "PanDA name"),
    ("long queue name", {"Q" * 51: cric_queue()}, "Q" * 51, "panda_queue", "at most 50 characters"),
    ("hostile site", {"X": cric_queue(site="S/../../x")}, "X", "site", "PanDA name"),
    ("hostile panda_site", {"X": cric_queue(panda_resource="a b")}, "X", "panda_site", "PanDA name"),
    ("hostile cloud", {"X": cric_queue(cloud="DE\n")}, "X", "cloud", "PanDA name"),
    ("long site", {"X": cric_queue(site="S" * 53)}, "X", "site", "at most 52 characters"),
    (
        "hostile tag",
        {"X": cric_queue(autopilot={"backend": "slurm-a", "tags": ["ok", "x;rm -rf"]})},
        "X",
        "tags",
        "PanDA name",
    ),
    ("hostile backend", {"X": cric_queue(autopilot={"backend": "a/b"})}, "X", "backend", "PanDA name"),
    ("CE list as a string", {"X": cric_queue(queues="ce.example.org:9619")}, "X", "queues", "must be a list"),
    ("CE entry not an object", {"X": cric_queue(queues=["ce.example.org"])}, "X", "queues[0]", "must be an object"),
    (
        "CE endpoint not a string",
        {"X": cric_queue(queues=[{"ce_endpoint": 9619, "ce_flavour": "HTCONDOR-CE"}])},
        "X",
        "queues[0].ce_endpoint",
        "must be a string",
    ),
    ("resource limits", {"X": cric_queue(resource_type_limits=100)}, "X", "resource_type_limits", "must be an object"),
    (
        "resource limit value",
        {"X": cric_queue(resource_type_limits={"SCORE": "many"})},
        "X",
        "resource_type_limits.SCORE",
        "must be an integer",
    ),
    ("pilot_manager", {"X": cric_queue(pilot_manager=["Harvester"])}, "X", "pilot_manager", "must be a string"),
    ("type", {"X": cric_queue(type=3)}, "X", "pilot_type", "must be a non-empty string"),
    (
        "min above max",
        {"X": cric_queue(autopilot={"backend": "slurm-a", "min_queued": 5, "max_queued": 2})},
        "X",
        "min_queued",
        "min_queued 5 is above max_queued 2",
    ),
]


@pytest.mark.parametrize(("case", "content", "queue", "field", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_each_validation_error_names_file_queue_and_field(
    db: Store, tmp_path: Path, case: str, content: Any, queue: str, field: str | None, message: str
) -> None:
    path = write(tmp_path, "bad.json", {"GOOD": cric_queue(), **content})
    with pytest.raises(QueueFileError) as caught:
        load_queues(db, path)
    first = caught.value.problems[0]
    assert (first.source, first.queue, first.field) == (path, queue, field)
    assert message in first.message
    assert str(first).startswith(f"{path}: queue {queue!r}")
    assert snapshot(db) == {}


def test_short_format_names_are_held_to_the_rule(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.yaml",
        "backends: [{name: 'b 1', kind: local}]\nqueues:\n  - {name: 'bad name; drop table', site: S}\n",
    )
    with pytest.raises(QueueFileError) as caught:
        load_queues(store, path)
    wheres = [(p.queue, p.field) for p in caught.value.problems]
    assert wheres == [(None, "backends[0].name"), ("bad name; drop table", "panda_queue")]
    assert snapshot(store) == {}


def many_queues(count: int, prefix: str = "Q") -> dict[str, Any]:
    return {f"{prefix}{index:03d}": cric_queue() for index in range(count)}


def test_prune_refuses_to_remove_more_than_the_share_unless_forced(db: Store, tmp_path: Path) -> None:
    load_queues(db, write(tmp_path, "all.json", many_queues(20)))
    two_fewer = write(tmp_path, "18.json", dict(list(many_queues(20).items())[:18]))
    three_fewer = write(tmp_path, "17.json", dict(list(many_queues(20).items())[:17]))
    with pytest.raises(QueueFileError, match=r"17.json: --prune would remove 3 of 20 queues \(15%\).*10%.*--force"):
        load_queues(db, three_fewer, prune=True)
    assert len(snapshot(db)) == 20
    dry = load_queues(db, three_fewer, prune=True, dry_run=True)
    assert dry.plan.removed == ["Q017", "Q018", "Q019"]
    assert dry.refusal is not None and "would remove 3 of 20 queues" in dry.refusal
    assert load_queues(db, three_fewer, prune=True, max_prune_share=0.2).plan.removed == ["Q017", "Q018", "Q019"]
    load_queues(db, write(tmp_path, "all.json", many_queues(20)))
    assert load_queues(db, two_fewer, prune=True).plan.removed == ["Q018", "Q019"]
    assert load_queues(db, write(tmp_path, "10.json", many_queues(10)), prune=True, force=True).plan.removed
    assert len(snapshot(db)) == 10


def test_prune_never_removes_everything(db: Store, tmp_path: Path) -> None:
    load_queues(db, write(tmp_path, "all.json", many_queues(3)))
    empty = write(tmp_path, "empty.json", {})
    for force in (False, True):
        with pytest.raises(QueueFileError, match=r"empty.json: the file holds no queues; --prune refuses"):
            load_queues(db, empty, prune=True, force=force)
    other = write(tmp_path, "other.json", many_queues(2, prefix="R"))
    with pytest.raises(QueueFileError, match=r"would remove all 3 queues"):
        load_queues(db, other, prune=True)
    assert len(snapshot(db)) == 3
    assert load_queues(db, other, prune=True, force=True).plan.removed == ["Q000", "Q001", "Q002"]


def test_duplicate_queue_in_cric_json_and_short_format(store: Store, tmp_path: Path) -> None:
    cric = write(
        tmp_path, "dup.json", '{"A": {"site": "S", "status": "online"}, "A": {"site": "T", "status": "online"}}'
    )
    with pytest.raises(QueueFileError, match=r"dup.json: queue 'A': duplicate queue"):
        load_queues(store, cric)
    short = write(tmp_path, "dup.yaml", "queues:\n  - {name: A, site: S}\n  - {name: A, site: T}\n")
    with pytest.raises(QueueFileError) as caught:
        load_queues(store, short)
    assert (caught.value.problems[0].queue, caught.value.problems[0].field) == ("A", "name")
    assert snapshot(store) == {}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.json", '{"A": {"site": "S",}', "not valid JSON: line 1 column 20"),
        ("broken.yaml", "queues: [\n  {name: A\n", "not valid YAML"),
        ("list.json", "[1, 2]", "expected an object of queues"),
        ("binary.json", b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_unreadable_files_are_named(store: Store, tmp_path: Path, name: str, content: Any, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(QueueFileError) as caught:
        load_queues(store, str(path))
    assert caught.value.problems[0].source == str(path)
    assert message in caught.value.problems[0].message


def test_failed_load_leaves_database_unchanged(db: Store, tmp_path: Path) -> None:
    load_queues(db, write(tmp_path, "good.json", {"A": cric_queue(), "B": cric_queue()}))
    before = snapshot(db)
    bad = write(tmp_path, "bad.json", {"A": cric_queue(maxrss=1), "C": cric_queue(), "D": cric_queue(status="x")})
    with pytest.raises(QueueFileError):
        load_queues(db, bad, prune=True)
    assert snapshot(db) == before
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pilot_events WHERE what = 'queues-loaded'")
        assert cur.fetchone()["n"] == 1


def test_unknown_backend_in_a_short_file_fails_whole_load(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path, "q.yaml", "backends: [{name: b1, kind: local}]\nqueues:\n  - {name: A, site: S, backend: b2}\n"
    )
    with pytest.raises(QueueFileError, match="unknown back end 'b2'"):
        load_queues(store, path)
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM backends")
        assert cur.fetchone()["n"] == 0


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_load_from_url(db: Store, http_dir: tuple[str, Path]) -> None:
    base, root = http_dir
    (root / "cric.json").write_text(json.dumps({"A": cric_queue()}))
    result = load_queues(db, f"{base}/cric.json")
    assert [q.panda_queue for q in result.plan.added] == ["A"]
    assert snapshot(db)["A"]["source"] == f"{base}/cric.json"
    with pytest.raises(QueueFileError, match="HTTP 404"):
        load_queues(db, f"{base}/missing.json")


def test_unsupported_url_scheme_is_refused(store: Store) -> None:
    with pytest.raises(QueueFileError, match="unsupported URL scheme 'ftp'"):
        load_queues(store, "ftp://127.0.0.1/queues.json")
