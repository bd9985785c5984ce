"""What a backend (SQLite, PostgreSQL) provides the Store, and the helpers both backends share."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gridpulse_cli.db.schema import Migration


@dataclass
class LoadCounts:
    """What one upsert did."""

    inserted: int = 0
    revised: int = 0
    unchanged: int = 0

    def __iadd__(self, other: LoadCounts) -> LoadCounts:
        self.inserted += other.inserted
        self.revised += other.revised
        self.unchanged += other.unchanged
        return self

    @property
    def total(self) -> int:
        return self.inserted + self.revised + self.unchanged


@dataclass(frozen=True)
class UpsertBatch:
    """A frame ready for a backend's bulk upsert: series keys resolved, sources as ids (-1: none)."""

    frame: pd.DataFrame
    series_key: np.ndarray[Any, Any]  # per row
    codes: np.ndarray[Any, Any]  # per row: index into `keys`
    keys: list[int]  # series_key of each distinct series, in `codes` order
    sources: np.ndarray[Any, Any]  # per row
    run_id: int | None
    now: datetime


class Backend(Protocol):
    """The dialect-specific half of a Store, chosen once when it opens."""

    def create_engine(self, read_only: bool) -> tuple[Engine, str]:
        """The engine (connection setup events installed) and the database as shown to people."""
        ...

    def encode_time(self, moment: datetime | None) -> Any:
        """A time as a query parameter for this database."""
        ...

    def decode_time(self, value: Any) -> datetime | None:
        """A stored time as an aware UTC datetime."""
        ...

    def epoch_seconds(self, column: str) -> str:
        """SQL for a stored time column as integer seconds since 1970 (bulk reads: numbers, not
        one datetime or string object per row)."""
        ...

    def migration_statements(self, migration: Migration) -> tuple[str, ...]: ...

    def lock_migration(self, conn: Connection) -> None:
        """Keep other migrators out until this transaction ends."""
        ...

    def after_migrate(self, engine: Engine) -> None: ...

    def upsert(self, conn: Connection, batch: UpsertBatch) -> LoadCounts: ...

    def text_rows(self, rows: Any) -> list[tuple[Any, ...]]:
        """Rows whose second column is a stored time, with that time as TIME_FORMAT text."""
        ...

    def writer_lock(self, engine: Engine) -> AbstractContextManager[Callable[[], bool]]:
        """Yield a non-blocking try-lock; on exit, release the lock if it was taken."""
        ...


def display_url(url: str) -> str:
    """The database URL with any password hidden, as a user writes it (no `+psycopg2`)."""
    try:
        parsed = sa.make_url(url)
        return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


# libpq repeats the host and port the URL already names: 'connection to server at "127.0.0.1",
# port 1 failed: Connection refused'; keep what failed, in one short line.
_PG_HOST_PREFIX = re.compile(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ')


def describe_db_error(exc: BaseException) -> str:
    """One short line from a driver error: the first line of its message."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    if not text:
        return type(orig).__name__
    return _PG_HOST_PREFIX.sub("", text[0]).replace("FATAL:  ", "").strip()


def period_texts(periods: pd.Series) -> list[str]:
    """'2024-01-01T05:00:00Z' for each timestamp, formatting each distinct hour once."""
    codes, uniques = pd.factorize(periods)
    naive = pd.DatetimeIndex(uniques).tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[s]")
    texts = np.char.add(np.datetime_as_string(naive, unit="s"), "Z").astype(object)
    return list(texts[codes].tolist())


def polling_lock(try_lock: Callable[[], bool], release: Callable[[], None]) -> Iterator[Callable[[], bool]]:
    """The body of a backend's writer_lock: yield a try-lock that remembers success, release on exit."""
    held = False

    def attempt() -> bool:
        nonlocal held
        held = held or try_lock()
        return held

    try:
        yield attempt
    finally:
        if held:
            release()
