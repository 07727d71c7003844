"""``AutopilotCleanupOperator`` run through ``execute``: real log files and the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from autopilot_ops.airflow.operators.cleanup import AutopilotCleanupOperator
from autopilot_ops.store.connection import Store

OLD = time.time() - 30 * 86400


def old_log(root: Path, queue: str, name: str) -> Path:
    path = root / "2020-01-01" / queue / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("pilot output\n")
    os.utime(path, (OLD, OLD))
    return path


def add_finished_pilot(store: Store, hours_ago: float) -> None:
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO pilots (queue, backend, batch_id, state, state_changed_at) "
            "VALUES ('Q', 'local', gen_random_uuid()::text, 'finished', %s)",
            (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours_ago),),
        )


def test_execute_cleans_logs_and_rows_and_returns_the_report(tmp_path: Path, store: Store) -> None:
    files = [old_log(tmp_path, "CERN-PROD", "1.out"), old_log(tmp_path, "BNL", "2.err")]
    add_finished_pilot(store, 30)
    add_finished_pilot(store, 1)
    op = AutopilotCleanupOperator(
        task_id="cleanup", log_root=str(tmp_path), dsn=store.dsn, watch_filesystem=False, batch_size=1
    )

    result = op.execute(context={})

    assert not any(p.exists() for p in files)
    assert result["logs"]["queues"]["CERN-PROD"]["removed_files"] == {"age": 1}
    assert result["logs"]["queues"]["BNL"]["removed_bytes"] == {"age": len("pilot output\n")}
    assert result["rows"]["pilots"] == 1
    assert json.loads(json.dumps(result)) == result, "the report is plain JSON for XCom"
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pilots")
        assert cur.fetchone()["n"] == 1


def test_templated_fields_are_rendered_then_used(tmp_path: Path, store: Store) -> None:
    kept = old_log(tmp_path, "Q", "1.out")
    add_finished_pilot(store, 30)
    op = AutopilotCleanupOperator(
        task_id="cleanup",
        log_root="{{ base }}",
        dsn=store.dsn,
        log_max_age_days="{{ 10 * 10 }}",
        finished_hours="{{ 24 * 2 }}",
        watch_filesystem=False,
    )
    op.render_template_fields({"base": str(tmp_path)})

    result = op.execute(context={})

    assert op.log_root == str(tmp_path)
    assert kept.exists(), "30 days old is under the rendered 100 days"
    assert result["logs"]["queues"]["Q"]["kept_files"] == 1
    assert result["rows"]["pilots"] == 0, "30 h old is under the rendered 48 h"


def test_logs_only_when_no_store_is_given(tmp_path: Path) -> None:
    old_log(tmp_path, "Q", "1.out")
    result = AutopilotCleanupOperator(task_id="c", log_root=str(tmp_path), watch_filesystem=False).execute({})
    assert set(result) == {"logs"}
    assert result["logs"]["removed_files"] == 1


def test_a_bad_field_is_named_before_anything_is_removed(tmp_path: Path) -> None:
    log = old_log(tmp_path, "Q", "1.out")
    op = AutopilotCleanupOperator(task_id="c", log_root=str(tmp_path), failed_hours="three days")
    with pytest.raises(ValueError, match=r"task c: field 'failed_hours' is not a number: 'three days'"):
        op.execute({})
    assert log.exists()
    bad_watermarks = AutopilotCleanupOperator(
        task_id="c", log_root=str(tmp_path), high_watermark_pct=50, low_watermark_pct="{{ 60 }}"
    )
    bad_watermarks.render_template_fields({})
    with pytest.raises(ValueError, match="low_watermark_pct"):
        bad_watermarks.execute({})
    assert log.exists()


def test_nothing_to_clean_is_an_error() -> None:
    with pytest.raises(ValueError, match="set log_root, postgres_conn_id or dsn"):
        AutopilotCleanupOperator(task_id="c").execute({})
