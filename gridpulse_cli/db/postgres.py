"""The PostgreSQL backend (psycopg2): timestamptz times, binary COPY upserts, an advisory writer
lock, read-only sessions, and TimescaleDB when the server has it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gridpulse_cli.db.backend import LoadCounts, UpsertBatch, display_url, period_texts, polling_lock
from gridpulse_cli.db.pg_copy import (
    copy_new_observations,
    copy_to_staging,
    encode_rows,
    none_stored,
    to_pg_micros,
)
from gridpulse_cli.db.schema import TIMESCALE_CHUNK_INTERVAL, Migration, timescale_statements
from gridpulse_cli.windows import TIME_FORMAT

log = logging.getLogger(__name__)

# One pass over the staged rows: new and changed ones are written, old values kept in revisions.
_MERGE_STAGING = """
WITH changed AS (
    SELECT s.series_key, s.period_end_utc, s.value_mwh, s.quality_flag, s.source_id,
           o.value_mwh AS old_value_mwh, o.quality_flag AS old_quality_flag,
           o.series_key IS NULL AS is_new
    FROM gp_staging s
    LEFT JOIN observations o
      ON o.series_key = s.series_key AND o.period_end_utc = s.period_end_utc
    WHERE o.series_key IS NULL
       OR o.value_mwh IS DISTINCT FROM s.value_mwh
       OR o.quality_flag IS DISTINCT FROM s.quality_flag
),
kept AS (
    INSERT INTO revisions (series_key, period_end_utc, old_value_mwh, new_value_mwh,
        old_quality_flag, new_quality_flag, changed_at_utc, run_id)
    SELECT series_key, period_end_utc, old_value_mwh, value_mwh, old_quality_flag,
           quality_flag, :now, :run_id
    FROM changed WHERE NOT is_new
    RETURNING 1
),
written AS (
    INSERT INTO observations (series_key, period_end_utc, value_mwh, quality_flag,
        first_seen_utc, last_changed_utc, run_id, source_id)
    SELECT series_key, period_end_utc, value_mwh, quality_flag, :now, :now, :run_id, source_id
    FROM changed
    ORDER BY series_key, period_end_utc  -- in index order: far fewer page touches
    ON CONFLICT (series_key, period_end_utc) DO UPDATE SET
        value_mwh = excluded.value_mwh, quality_flag = excluded.quality_flag,
        last_changed_utc = excluded.last_changed_utc, run_id = excluded.run_id,
        source_id = excluded.source_id
    WHERE observations.value_mwh IS DISTINCT FROM excluded.value_mwh
       OR observations.quality_flag IS DISTINCT FROM excluded.quality_flag
    RETURNING 1
)
SELECT (SELECT count(*) FROM gp_staging), (SELECT count(*) FROM kept),
       (SELECT count(*) FROM written)
"""
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PostgresBackend:
    """Times are timestamptz; loads go through binary COPY."""

    def __init__(self, url: sa.URL) -> None:
        if url.drivername in ("postgresql", "postgres"):  # SQLAlchemy 2.1 would pick psycopg 3
            url = url.set(drivername="postgresql+psycopg2")
        self.url = url

    def create_engine(self, read_only: bool) -> tuple[Engine, str]:
        connect_args = {"connect_timeout": 10, "application_name": "gridpulse"}
        engine = sa.create_engine(self.url, connect_args=connect_args)
        if read_only:
            sa.event.listen(engine, "connect", _read_only_session)
        return engine, display_url(self.url.render_as_string(hide_password=False))

    def encode_time(self, moment: datetime | None) -> Any:
        return moment

    def decode_time(self, value: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def epoch_seconds(self, column: str) -> str:
        return f"CAST(extract(epoch FROM {column}) AS BIGINT)"

    def migration_statements(self, migration: Migration) -> tuple[str, ...]:
        return migration.postgresql

    def lock_migration(self, conn: Connection) -> None:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7466375)")  # one migrator at a time

    def after_migrate(self, engine: Engine) -> None:
        with engine.begin() as conn:
            enable_timescale(conn)

    def text_rows(self, rows: Any) -> list[tuple[Any, ...]]:
        return [(r[0], r[1].astimezone(UTC).strftime(TIME_FORMAT), *r[2:]) for r in rows]

    def upsert(self, conn: Connection, batch: UpsertBatch) -> LoadCounts:
        """Binary COPY; history never stored before (a backfill's new ground) has nothing to merge
        with or revise, so it goes straight in; anything else through staging and the merge."""
        frame = batch.frame
        # as_unit: pandas may hold s, ms, us or ns resolution; the COPY needs microseconds
        period_us = to_pg_micros(frame["period_end_utc"].dt.tz_convert("UTC").dt.as_unit("us").array.asi8)
        values = frame["value_mwh"].to_numpy(dtype="float64")
        flags = frame["quality_flag"].to_numpy(dtype=object)
        columns = (batch.series_key, period_us, values, flags, batch.sources)
        spans = frame["period_end_utc"].groupby(batch.codes).agg(["min", "max"])
        keys = [batch.keys[code] for code in spans.index]
        if none_stored(conn, keys, period_texts(spans["min"]), period_texts(spans["max"])):
            unix_us = (batch.now - _UNIX_EPOCH) // timedelta(microseconds=1)
            stamp = int(to_pg_micros(np.array([unix_us]))[0])
            copy_new_observations(conn, encode_rows(*columns, (stamp, batch.run_id)))
            return LoadCounts(inserted=len(frame))
        copy_to_staging(conn, encode_rows(*columns))
        return _merge_staging(conn, batch.run_id, batch.now)

    @contextmanager
    def writer_lock(self, engine: Engine) -> Iterator[Callable[[], bool]]:
        """A session-level advisory lock, per database and schema, on a connection of its own."""
        with engine.connect() as conn:
            key = "SELECT hashtext('gridpulse-writer:' || current_database() || ':' || current_schema())"
            lock_id = int(conn.exec_driver_sql(key).scalar_one())

            def try_lock() -> bool:
                got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({lock_id})").scalar())
                conn.commit()  # session-level lock: do not sit idle in a transaction
                return got

            def release() -> None:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({lock_id})")
                conn.commit()

            yield from polling_lock(try_lock, release)


def _merge_staging(conn: Connection, run_id: int | None, now: datetime) -> LoadCounts:
    """Merge gp_staging into observations and revisions, then empty it."""
    # Probe the primary key per staged row: a hash join would scan all of observations once
    # per chunk, so a long backfill would slow down as the table grows.
    conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
    conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
    row = conn.execute(sa.text(_MERGE_STAGING), {"now": now, "run_id": run_id}).one()
    conn.exec_driver_sql("TRUNCATE gp_staging")
    staged, revised, written = (int(v) for v in row)
    return LoadCounts(inserted=written - revised, revised=revised, unchanged=staged - written)


def enable_timescale(conn: Connection) -> bool:
    """Make `observations` a hypertable when TimescaleDB is installed on the server.

    Plain PostgreSQL (no extension available) is left alone. Returns whether it is a hypertable.
    """
    available = conn.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).scalar()
    if not available:
        return False
    already = (
        conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").scalar()
        and conn.exec_driver_sql(
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'observations' "
            "AND hypertable_schema = current_schema()"
        ).scalar()
    )
    if already:
        return True
    for statement in timescale_statements():
        conn.exec_driver_sql(statement)
    log.info("TimescaleDB: observations is now a hypertable (%s chunks)", TIMESCALE_CHUNK_INTERVAL)
    return True


def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
    # Every transaction of the session is READ ONLY: the server refuses any write or DDL.
    dbapi_connection.set_session(readonly=True)
