"""Never two writers at once: a PostgreSQL advisory lock, or a file lock beside a SQLite file.

A second `ingest`/`backfill`/`load` waits up to a bounded time for the first, then gives up with
LockedError (its own exit code), so cron never stacks runs and no rows are written twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from gridpulse_cli.errors import LockedError
from gridpulse_cli.store import TIME_FORMAT, Store
from gridpulse_cli.text import short_time

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def _describe_holder(store: Store) -> str:
    """Who holds the lock, from the run ledger's newest running run."""
    try:
        with store.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT run_id, command, pid, host, started_at_utc FROM runs WHERE status = 'running' "
                    "ORDER BY run_id DESC LIMIT 1"
                )
            ).first()
    except sa.exc.SQLAlchemyError:
        return "another gridpulse process"
    if row is None:
        return "another gridpulse process"
    if isinstance(row[4], datetime):
        started = row[4].astimezone(UTC)
    else:
        started = datetime.strptime(str(row[4]), TIME_FORMAT).replace(tzinfo=UTC)
    host = str(row[3] or "?").split(".")[0]  # the short name: the error line stays within two lines
    return f"run {row[0]} ({row[1]}, pid {row[2]} on {host}, since {short_time(started)} UTC)"


def _wait(try_lock: Callable[[], bool], timeout: float, store: Store) -> None:
    started = time.monotonic()
    holder = None
    while not try_lock():
        if holder is None:
            holder = _describe_holder(store)
            log.debug("waiting up to %g s for %s to finish", timeout, holder)
        if time.monotonic() - started >= timeout:
            raise LockedError(
                f"database locked by {_describe_holder(store)}; waited {timeout:g} s "
                "(raise GRIDPULSE_LOCK_TIMEOUT to wait longer)"
            )
        time.sleep(POLL_SECONDS)
    if holder is not None:  # said after the wait, so a give-up stays a single error line
        log.info("waited %.0f s for the database lock held by %s", time.monotonic() - started, holder)


@contextmanager
def writer_lock(store: Store, timeout: float) -> Iterator[None]:
    """Hold the database's writer lock for the duration of the block."""
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            key = "SELECT hashtext('gridpulse-writer:' || current_database() || ':' || current_schema())"
            lock_id = int(conn.exec_driver_sql(key).scalar_one())

            def try_pg() -> bool:
                got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({lock_id})").scalar())
                conn.commit()  # session-level lock: do not sit idle in a transaction
                return got

            _wait(try_pg, timeout, store)
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({lock_id})")
                conn.commit()
        return
    database = store.engine.url.database
    if not database or database == ":memory:":
        yield
        return
    path = Path(f"{database}.lock")
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:

        def try_file() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        _wait(try_file, timeout, store)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
