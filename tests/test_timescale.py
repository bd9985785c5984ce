"""TimescaleDB path: the extension is not installable on these machines, so the statements the
guarded code path issues are checked here, and plain PostgreSQL is shown to be left alone."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gridpulse_cli.db import Store
from gridpulse_cli.db.postgres import enable_timescale
from gridpulse_cli.db.schema import TIMESCALE_CHUNK_INTERVAL, timescale_statements


class _Result:
    def __init__(self, value: Any) -> None:
        self.value = value

    def scalar(self) -> Any:
        return self.value


class RecordingConnection:
    """Answers the availability queries as a TimescaleDB server would, records everything else."""

    def __init__(self, available: bool, hypertable: bool = False) -> None:
        self.available, self.hypertable = available, hypertable
        self.statements: list[str] = []

    def exec_driver_sql(self, statement: str) -> _Result:
        self.statements.append(statement)
        if "pg_available_extensions" in statement:
            return _Result(1 if self.available else None)
        if "pg_extension" in statement or "timescaledb_information" in statement:
            return _Result(1 if self.hypertable else None)
        return _Result(None)


def test_statements_make_observations_a_hypertable_on_period_end_utc() -> None:
    create_extension, create_hypertable = timescale_statements()
    assert create_extension == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    assert "create_hypertable('observations', 'period_end_utc'" in create_hypertable
    assert f"INTERVAL '{TIMESCALE_CHUNK_INTERVAL}'" in create_hypertable
    assert "if_not_exists => TRUE" in create_hypertable and "migrate_data => TRUE" in create_hypertable


def test_extension_available_issues_the_statements() -> None:
    conn = RecordingConnection(available=True)
    assert enable_timescale(conn) is True  # type: ignore[arg-type]
    assert conn.statements[-2:] == list(timescale_statements())


def test_existing_hypertable_is_left_alone() -> None:
    conn = RecordingConnection(available=True, hypertable=True)
    assert enable_timescale(conn) is True  # type: ignore[arg-type]
    assert not any("create_hypertable" in s for s in conn.statements)


def test_plain_postgresql_is_left_alone() -> None:
    conn = RecordingConnection(available=False)
    assert enable_timescale(conn) is False  # type: ignore[arg-type]
    assert len(conn.statements) == 1


def test_real_postgresql_without_the_extension_works(pg_url: str) -> None:
    store = Store.open(pg_url)
    with store.engine.connect() as conn:
        assert enable_timescale(conn) is False
        assert sa.inspect(conn).has_table("observations")
    store.close()
