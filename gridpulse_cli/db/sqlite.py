"""The SQLite backend: a file (WAL), text times, executemany upserts, a lock file beside it."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote as quote_path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gridpulse_cli.db.backend import LoadCounts, UpsertBatch, display_url, period_texts, polling_lock
from gridpulse_cli.db.schema import Migration
from gridpulse_cli.errors import DatabaseError
from gridpulse_cli.windows import TIME_FORMAT

_UPSERT = (
    "INSERT INTO observations (series_key, period_end_utc, value_mwh, quality_flag, source_id, "
    "first_seen_utc, last_changed_utc, run_id) "
    "VALUES {rows} "
    "ON CONFLICT (series_key, period_end_utc) DO UPDATE SET "
    "value_mwh = excluded.value_mwh, quality_flag = excluded.quality_flag, "
    "last_changed_utc = excluded.last_changed_utc, run_id = excluded.run_id, "
    "source_id = excluded.source_id "
    "WHERE observations.value_mwh IS NOT excluded.value_mwh "
    "OR observations.quality_flag IS NOT excluded.quality_flag"
)
ROWS_PER_STATEMENT = 100  # VALUES rows per INSERT: a third of one-row executemany's per-row cost


def _execute_upsert(conn: Connection, rows: np.ndarray[Any, Any], row: str) -> None:
    """_UPSERT for `rows` (an object array, one row per `row`'s placeholders), many rows a statement."""
    full = len(rows) // ROWS_PER_STATEMENT * ROWS_PER_STATEMENT
    if full:
        statement = _UPSERT.format(rows=", ".join([row] * ROWS_PER_STATEMENT))
        params = rows[:full].reshape(full // ROWS_PER_STATEMENT, -1).tolist()
        conn.exec_driver_sql(statement, [tuple(p) for p in params])
    if full < len(rows):
        conn.exec_driver_sql(_UPSERT.format(rows=row), [tuple(p) for p in rows[full:].tolist()])


class SQLiteBackend:
    """Times are stored as TIME_FORMAT text; the revision trigger keeps old values."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url

    def create_engine(self, read_only: bool) -> tuple[Engine, str]:
        shown, engine_url = display_url(self.url.render_as_string(hide_password=False)), self.url
        database = self.url.database
        if database not in (None, "", ":memory:"):
            if not read_only:
                _prepare_path(Path(database))
            elif "uri" not in self.url.query:  # (a URL that is already a SQLite URI is used as written)
                path = Path(database).absolute()
                shown, engine_url = str(path), _read_only_url(path)
        engine = sa.create_engine(engine_url)
        sa.event.listen(engine, "connect", _connect_read_only if read_only else _connect)
        sa.event.listen(engine, "begin", _begin)
        return engine, shown

    def encode_time(self, moment: datetime | None) -> Any:
        return None if moment is None else moment.astimezone(UTC).strftime(TIME_FORMAT)

    def decode_time(self, value: Any) -> datetime | None:
        return None if value is None else datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=UTC)

    def epoch_seconds(self, column: str) -> str:
        # unixepoch() (SQLite 3.38+) reads a year of a BA a third faster than strftime('%s');
        # both understand TIME_FORMAT's trailing Z.
        if sqlite3.sqlite_version_info >= (3, 38):
            return f"unixepoch({column})"
        return f"CAST(strftime('%s', {column}) AS INTEGER)"

    def migration_statements(self, migration: Migration) -> tuple[str, ...]:
        return migration.sqlite

    def lock_migration(self, conn: Connection) -> None:
        """BEGIN IMMEDIATE (Store.transaction) already excludes other writers."""

    def after_migrate(self, engine: Engine) -> None:
        """Nothing beyond the migrations."""

    def text_rows(self, rows: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in rows]

    def upsert(self, conn: Connection, batch: UpsertBatch) -> LoadCounts:
        """executemany straight into observations; the revision trigger keeps old values."""
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        changes_before = dbapi.total_changes
        last_revision = conn.exec_driver_sql("SELECT coalesce(max(revision_id), 0) FROM revisions").scalar()
        frame = batch.frame
        periods = period_texts(frame["period_end_utc"])
        values = frame["value_mwh"].to_numpy(dtype="float64")
        rows = np.empty((len(frame), 5), dtype=object)  # filled from lists: Python ints and floats
        rows[:, 0] = batch.series_key.tolist()
        rows[:, 1] = periods
        rows[:, 2] = values.tolist()
        rows[np.isnan(values), 2] = None
        rows[:, 3] = frame["quality_flag"].tolist()
        rows[:, 4] = batch.sources.tolist()
        rows[batch.sources < 0, 4] = None
        run_id = "NULL" if batch.run_id is None else batch.run_id
        stamp = self.encode_time(batch.now)
        _execute_upsert(conn, rows, f"(?, ?, ?, ?, ?, '{stamp}', '{stamp}', {run_id})")
        revised = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM revisions WHERE revision_id > ?", (last_revision,)
            ).scalar_one()
        )
        written = dbapi.total_changes - changes_before - revised  # the trigger's inserts count too
        return LoadCounts(inserted=written - revised, revised=revised, unchanged=len(periods) - written)

    @contextmanager
    def writer_lock(self, engine: Engine) -> Iterator[Callable[[], bool]]:
        """flock on `<database>.lock`; an in-memory database has no other writer."""
        database = engine.url.database
        if not database or database == ":memory:":
            yield lambda: True
            return
        handle = os.open(Path(f"{database}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:

            def try_file() -> bool:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            yield from polling_lock(try_file, lambda: fcntl.flock(handle, fcntl.LOCK_UN))
        finally:
            os.close(handle)


def _read_only_url(path: Path) -> sa.URL:
    """A URL opening an existing SQLite file read-only (SQLite refuses every write); never creates one."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise no_database(str(path)) from None
    except OSError as exc:
        raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise DatabaseError(f"database path {path} is a directory, not a file")
    return sa.URL.create("sqlite", database=f"file:{quote_path(str(path))}?mode=ro", query={"uri": "true"})


def no_database(where: str) -> DatabaseError:
    return DatabaseError(
        f"no gridpulse database at {where} (run gridpulse ingest, or check --db / GRIDPULSE_DATABASE_URL)"
    )


def _prepare_path(path: Path) -> None:
    """Create the database folder; explain an unwritable location in one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create database folder {path.parent}: {exc.strerror}") from None
    if path.is_dir():
        raise DatabaseError(f"database path {path} is a directory, not a file")


def _connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so DDL and DML alike are transactional
    # (the sqlite3 module otherwise autocommits DDL such as migrations).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: bulk upserts touch many B-tree pages
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


def _connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    # No journal-mode pragma: that would write to the file (and a reader never needs it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
