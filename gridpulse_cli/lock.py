"""Never two writers at once: a PostgreSQL advisory lock, or a file lock beside a SQLite file
(each backend's half is in db/); here, the bounded wait for it.

A second `ingest`/`backfill`/`load` waits up to a bounded time for the first, then gives up with
LockedError (its own exit code), so cron never stacks runs and no rows are written twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gridpulse_cli.db import Store
from gridpulse_cli.errors import LockedError
from gridpulse_cli.ledger import describe_running

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def _wait(try_lock: Callable[[], bool], timeout: float, store: Store) -> None:
    started = time.monotonic()
    holder = None
    while not try_lock():
        if holder is None:
            holder = describe_running(store)
            log.debug("waiting up to %g s for %s to finish", timeout, holder)
        if time.monotonic() - started >= timeout:
            raise LockedError(
                f"database locked by {describe_running(store)}; waited {timeout:g} s "
                "(raise GRIDPULSE_LOCK_TIMEOUT to wait longer)"
            )
        time.sleep(POLL_SECONDS)
    if holder is not None:  # said after the wait, so a give-up stays a single error line
        log.info("waited %.0f s for the database lock held by %s", time.monotonic() - started, holder)


@contextmanager
def writer_lock(store: Store, timeout: float) -> Iterator[None]:
    """Hold the database's writer lock for the duration of the block."""
    with store.writer_lock() as try_lock:
        _wait(try_lock, timeout, store)
        yield
