"""The dev server keeps one storage engine, SQLite: a PostgreSQL DSN is refused, naming the input and why."""

from __future__ import annotations

import pytest

from autopilot_ops.cli.main import main
from autopilot_ops.panda.devserver.database import Database, DatabaseError


def test_a_postgresql_dsn_is_refused_with_the_reason(pg_dsn: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        Database(pg_dsn)
    message = str(caught.value)
    assert "SQLite only" in message and pg_dsn.split("@")[-1] in message and "--db" in message


def test_the_cli_says_so_without_a_traceback(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["panda-devserver", "--port", "0", "--db", pg_dsn]) != 0
    err = capsys.readouterr().err
    assert "SQLite only" in err and "Traceback" not in err
