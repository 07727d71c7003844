"""Versioned migrations: a database of schema version 1 with data in it upgrades and keeps everything."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from autopilot_ops.cli.main import main
from autopilot_ops.store.connection import Store
from autopilot_ops.store.schema import TABLES, SchemaError, latest_version, migrations, schema_status, sql_dir, upgrade

# One row in every table of version 1, as an AutoPilot of that version wrote them.
VERSION_1_ROWS = [
    "INSERT INTO backends (name, kind, parameters) VALUES ('b1', 'local', '{\"k\": 1}')",
    "INSERT INTO schedconfig (panda_queue, site, tags, backend, attributes) "
    "VALUES ('Q1', 'S1', '{t1}', 'b1', '{\"queues\": [{\"ce_endpoint\": \"ce:9619\"}]}')",
    "INSERT INTO schedulers (id, tag, host) VALUES ('t1@h', 't1', 'h')",
    "INSERT INTO cycles (cycle_id, queue, decided, reason, submitted) VALUES ('c1', 'Q1', 2, '{why}', 2)",
    "INSERT INTO submissions (queue, cycle_id, backend, requested, state) VALUES ('Q1', 'c1', 'b1', 2, 'done')",
    "INSERT INTO pilots (queue, backend, batch_id, cycle_id, state) VALUES ('Q1', 'b1', '7', 'c1', 'running')",
    "INSERT INTO pilot_events (who, what, queue, details) VALUES ('me', 'submitted', 'Q1', '{\"n\": 2}')",
    "INSERT INTO controls (scope, target, paused, set_by) VALUES ('queue', 'Q1', true, 'op')",
]

#: Columns of version 1 a later version drops, because nothing ever wrote them (0002).
DROPPED = {"pilots": {"panda_ids", "log_url"}, "schedulers": {"state"}}


def _rows(store: Store) -> dict[str, list[dict]]:
    """Every row of every version-1 table, by table, with only the columns version 1 had."""
    with store.transaction() as cur:
        out = {}
        for table in TABLES:
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = %s ORDER BY ordinal_position",
                (table,),
            )
            columns = [row["column_name"] for row in cur.fetchall()]
            cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1")
            out[table] = [dict(row) for row in cur.fetchall()]
        return out


def test_version_1_database_with_data_upgrades_and_loses_nothing(pg_dsn: str) -> None:
    with Store(pg_dsn) as store:
        assert upgrade(store, target=1) == [1]
        with store.transaction() as cur:
            for sql in VERSION_1_ROWS:
                cur.execute(sql)
        before = _rows(store)
        assert all(len(rows) == 1 for rows in before.values())
        assert upgrade(store) == list(range(2, latest_version() + 1))
        after = _rows(store)
        for table, rows in before.items():
            assert set(rows[0]) - set(after[table][0]) == DROPPED.get(table, set()), table
            kept = [{column: row[column] for column in after[table][0] if column in rows[0]} for row in after[table]]
            assert kept == [{c: v for c, v in row.items() if c not in DROPPED.get(table, ())} for row in rows], table
        status = schema_status(store)
        assert status.version == latest_version() and status.pending == 0
        assert upgrade(store) == []


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A copy of this checkout's ``sql/`` that a test may add migrations to."""
    copy = tmp_path / "sql"
    shutil.copytree(sql_dir(), copy)
    return copy


def _add(sql_root: Path, name: str, text: str) -> None:
    (sql_root / "migrations" / name).write_text(text, encoding="utf-8")


def test_a_failed_migration_applies_nothing_of_itself_and_keeps_the_version_before(
    pg_dsn: str, sql_copy: Path
) -> None:
    good = latest_version() + 1
    _add(sql_copy, f"{good:04d}_add_note.sql", "ALTER TABLE pilots ADD COLUMN note text NOT NULL DEFAULT 'kept';")
    _add(
        sql_copy,
        f"{good + 1:04d}_half_bad.sql",
        "ALTER TABLE pilots ADD COLUMN half text;\nALTER TABLE no_such_table ADD COLUMN x int;",
    )
    with Store(pg_dsn) as store:
        upgrade(store, target=1)
        with store.transaction() as cur:
            for sql in VERSION_1_ROWS:
                cur.execute(sql)
        with pytest.raises(SchemaError, match=f"{good + 1:04d}_half_bad.sql"):
            upgrade(store, directory=sql_copy)
        with store.transaction() as cur:
            cur.execute("SELECT max(version) AS v FROM schema_version")
            assert cur.fetchone()["v"] == good
            cur.execute("SELECT note FROM pilots")
            assert [row["note"] for row in cur.fetchall()] == ["kept"]
            cur.execute(
                "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'pilots' AND column_name = 'half'"
            )
            assert cur.fetchone()["n"] == 0


def test_gaps_and_bad_names_are_refused(sql_copy: Path) -> None:
    _add(sql_copy, f"{latest_version() + 2:04d}_skips_one.sql", "SELECT 1;")
    with pytest.raises(SchemaError, match="was expected"):
        migrations(sql_copy)
    (sql_copy / "migrations" / f"{latest_version() + 2:04d}_skips_one.sql").unlink()
    _add(sql_copy, "9_Bad Name.sql", "SELECT 1;")
    with pytest.raises(SchemaError, match="NNNN_lower_case_words"):
        migrations(sql_copy)


def test_concurrent_upgrades_apply_each_version_once(pg_dsn: str, sql_copy: Path) -> None:
    _add(sql_copy, f"{latest_version() + 1:04d}_add_counter.sql", "ALTER TABLE pilots ADD COLUMN counter int;")
    results: list[list[int] | BaseException] = []

    def run() -> None:
        try:
            with Store(pg_dsn) as store:
                results.append(upgrade(store, directory=sql_copy))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(result, list) for result in results), results
    applied = sorted(version for result in results for version in result)
    assert applied == list(range(1, latest_version() + 2))


def test_cli_upgrade_step_by_step(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--to", "1", "--dsn", pg_dsn]) == 0
    status = main(["db", "status", "--dsn", pg_dsn])
    out = capsys.readouterr().out
    assert f"schema version: 1 (newest {latest_version()})" in out
    assert status == (1 if latest_version() > 1 else 0)
    assert main(["db", "upgrade", "--to", str(latest_version() + 1), "--dsn", pg_dsn]) == 2
    assert "versions run from 1" in capsys.readouterr().out
    assert main(["db", "upgrade", "--dsn", pg_dsn]) == 0
    assert f"schema version {latest_version()}" in capsys.readouterr().out
    assert main(["db", "status", "--dsn", pg_dsn]) == 0
