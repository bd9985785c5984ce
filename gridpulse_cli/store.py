"""The database: schema migrations, dialect-aware bulk upsert with revision history, reads.

SQLite (the default, a file) and PostgreSQL (`postgresql://…`, psycopg2) share one schema
(schema.py). Loads go through a staging table: rows whose value and flag are unchanged are
never rewritten, changed ones leave their previous value in `revisions`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote as quote_path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gridpulse_cli.catalog import area_type
from gridpulse_cli.errors import DatabaseError, SchemaTooNewError
from gridpulse_cli.schema import MIGRATIONS, SCHEMA_VERSION, TIMESCALE_CHUNK_INTERVAL, timescale_statements
from gridpulse_cli.stopping import STOP
from gridpulse_cli.store_pg import (
    copy_new_observations,
    copy_to_staging,
    encode_rows,
    none_stored,
    to_pg_micros,
)
from gridpulse_cli.windows import Window

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


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


class Store:
    """One gridpulse database. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._series_keys: dict[str, int] = {}

    # ---- opening and migrating -------------------------------------------------------------

    @classmethod
    def open(cls, url: str, migrate: bool = True, read_only: bool = False) -> Store:
        """Connect (creating a SQLite file's folder) and bring the schema up to date.

        `read_only` (every reading command) creates, migrates and writes nothing: SQLite opens
        the file read-only, PostgreSQL sessions are read-only. No database there, or one without
        this gridpulse's schema version, is a one-line DatabaseError.
        """
        parsed = sa.make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):  # SQLAlchemy 2.1 would pick psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg2")
            url = parsed.render_as_string(hide_password=False)
        shown, engine_url = display_url(url), sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            if not read_only:
                _prepare_sqlite_path(Path(parsed.database))
            elif "uri" not in parsed.query:  # (a URL that is already a SQLite URI is used as written)
                path = Path(parsed.database).absolute()
                shown, engine_url = str(path), _read_only_sqlite_url(path)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "gridpulse"}
        engine = sa.create_engine(engine_url, **kwargs)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_connect_read_only if read_only else _sqlite_connect)
            sa.event.listen(engine, "begin", _sqlite_begin)
        elif read_only:
            sa.event.listen(engine, "connect", _postgresql_read_only)
        store = cls(engine)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
                version = store.schema_version(conn) if read_only else SCHEMA_VERSION
            if migrate and not read_only:
                store.migrate()
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise DatabaseError(f"cannot use database {shown}: {describe_db_error(exc)}") from None
        if version != SCHEMA_VERSION:
            engine.dispose()
            raise _schema_mismatch(version, shown)
        return store

    def close(self) -> None:
        self.engine.dispose()

    def schema_version(self, conn: Connection) -> int:
        """Return the applied schema version (0 for an empty database)."""
        if not sa.inspect(conn).has_table("gridpulse_schema"):
            return 0
        return int(conn.exec_driver_sql("SELECT max(version) FROM gridpulse_schema").scalar() or 0)

    def migrate(self) -> list[int]:
        """Apply pending migrations in one transaction each; return the versions applied."""
        applied = []
        with self.engine.begin() as conn:
            current = self.schema_version(conn)
        if current > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"database schema version {current} is newer than this gridpulse supports "
                f"({SCHEMA_VERSION}); upgrade gridpulse"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            with self.transaction() as conn:
                if self.dialect == "postgresql":  # one migrator at a time
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7466375)")
                if self.schema_version(conn) >= migration.version:
                    continue  # another process got there first
                if migration.version == 1:
                    conn.exec_driver_sql(
                        "CREATE TABLE IF NOT EXISTS gridpulse_schema "
                        "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at_utc TEXT NOT NULL)"
                    )
                for statement in migration.statements(self.dialect):
                    conn.exec_driver_sql(statement)
                conn.execute(
                    sa.text("INSERT INTO gridpulse_schema VALUES (:v, :d, :t)"),
                    {"v": migration.version, "d": migration.description, "t": _now_text()},
                )
            log.debug("database schema migrated to version %d (%s)", migration.version, migration.description)
            applied.append(migration.version)
        if self.dialect == "postgresql":
            with self.engine.begin() as conn:
                enable_timescale(conn)
        return applied

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic unit of work; rolled back on any exception.

        On SQLite it takes the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
        reads and then writes fails at once with "database is locked" if another writer committed
        in between, instead of waiting for it.
        """
        try:
            # A signal must not land between BEGIN and COMMIT (a half-closed SQLite connection
            # keeps the write lock): it is deferred until the transaction has ended.
            with STOP.shielded(), self.engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            self._series_keys.clear()  # keys created in the rolled-back transaction are gone
            raise DatabaseError(f"database error: {describe_db_error(exc)}") from None
        except BaseException:
            self._series_keys.clear()
            raise

    # ---- time values -------------------------------------------------------------------------

    def ts(self, moment: datetime | None) -> Any:
        """A time as this database stores it (text on SQLite, timestamptz on PostgreSQL)."""
        return self._ts(moment)

    def _ts(self, moment: datetime | None) -> Any:
        if moment is None:
            return None
        return moment.astimezone(UTC).strftime(TIME_FORMAT) if self.dialect == "sqlite" else moment

    # ---- the run ledger -----------------------------------------------------------------------

    def start_run(
        self,
        command: str,
        window: Window | None,
        bas: Sequence[str],
        datasets: Sequence[str],
        now: datetime,
    ) -> int:
        """Record a run as `running`; return its id."""
        with self.transaction() as conn:
            params = {
                "command": command,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": self._ts(now),
                "ws": self._ts(window.start) if window else None,
                "we": self._ts(window.end) if window else None,
                "bas": ",".join(bas),
                "datasets": ",".join(datasets),
            }
            result = conn.execute(
                sa.text(
                    "INSERT INTO runs (command, status, started_at_utc, window_start_utc, window_end_utc, bas, "
                    "datasets, pid, host) VALUES (:command, 'running', :started, :ws, :we, :bas, :datasets, "
                    ":pid, :host) RETURNING run_id"
                ),
                params,
            )
            return int(result.scalar_one())

    def close_abandoned_runs(self, now: datetime) -> int:
        """Mark runs still 'running' as interrupted: call while holding the writer lock, when no
        other writer can be alive (they were killed without recording an outcome, e.g. SIGKILL)."""
        with self.transaction() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "UPDATE runs SET status = 'interrupted', finished_at_utc = :now, "
                        "error = 'ended without recording an outcome (killed, or lost the database)' "
                        "WHERE status = 'running'"
                    ),
                    {"now": self._ts(now)},
                ).rowcount
            )

    def add_run_progress(
        self, conn: Connection, run_id: int | None, fetched: int, counts: LoadCounts
    ) -> None:
        """Add committed work to a running run's counts, inside that work's transaction."""
        if run_id is None:
            return
        conn.execute(
            sa.text(
                "UPDATE runs SET rows_fetched = rows_fetched + :fetched, "
                "rows_inserted = rows_inserted + :inserted, rows_revised = rows_revised + :revised, "
                "rows_unchanged = rows_unchanged + :unchanged WHERE run_id = :run_id"
            ),
            {
                "fetched": fetched,
                "inserted": counts.inserted,
                "revised": counts.revised,
                "unchanged": counts.unchanged,
                "run_id": run_id,
            },
        )

    def finish_run(
        self,
        run_id: int,
        status: str,
        now: datetime,
        *,
        fetched: int = 0,
        counts: LoadCounts | None = None,
        requests: int = 0,
        retries: int = 0,
        error: str | None = None,
        elapsed_s: float | None = None,
    ) -> None:
        """Record how a run ended (`elapsed_s`: its own monotonic-clock duration)."""
        counts = counts or LoadCounts()
        with self.transaction() as conn:
            conn.execute(
                sa.text(
                    "UPDATE runs SET status = :status, finished_at_utc = :finished, rows_fetched = :fetched, "
                    "rows_inserted = :inserted, rows_revised = :revised, rows_unchanged = :unchanged, "
                    "requests = :requests, retries = :retries, error = :error, elapsed_s = :elapsed "
                    "WHERE run_id = :run_id"
                ),
                {
                    "status": status,
                    "finished": self._ts(now),
                    "fetched": fetched,
                    "inserted": counts.inserted,
                    "revised": counts.revised,
                    "unchanged": counts.unchanged,
                    "requests": requests,
                    "retries": retries,
                    "error": error,
                    "elapsed": elapsed_s,
                    "run_id": run_id,
                },
            )

    # ---- source archive -----------------------------------------------------------------------

    def archive(
        self,
        conn: Connection,
        run_id: int | None,
        kind: str,
        route: str,
        params: dict[str, Any],
        body_gzip: bytes,
        row_count: int,
        sha256: str,
        fetched_at: datetime,
    ) -> int:
        """Record one raw document (already gzipped by the caller); return its source_id."""
        result = conn.execute(
            sa.text(
                "INSERT INTO sources (run_id, kind, route, params_json, fetched_at_utc, row_count, sha256, body_gzip) "
                "VALUES (:run_id, :kind, :route, :params, :fetched, :rows, :sha, :body) RETURNING source_id"
            ),
            {
                "run_id": run_id,
                "kind": kind,
                "route": route,
                "params": json.dumps(params, sort_keys=True),
                "fetched": self._ts(fetched_at),
                "rows": row_count,
                "sha": sha256,
                "body": body_gzip,
            },
        )
        return int(result.scalar_one())

    def complete_archive(
        self, conn: Connection, source_id: int, body_gzip: bytes, sha256: str, row_count: int
    ) -> None:
        """Fill in a source archived before its content was complete (a streamed load input)."""
        conn.execute(
            sa.text(
                "UPDATE sources SET body_gzip = :body, sha256 = :sha, row_count = :rows "
                "WHERE source_id = :sid"
            ),
            {"body": body_gzip, "sha": sha256, "rows": row_count, "sid": source_id},
        )

    # ---- backfill chunk ledger ------------------------------------------------------------

    def mark_chunk(
        self, conn: Connection, chunk_key: str, plan_key: str, run_id: int | None, rows: int, now: datetime
    ) -> None:
        """Record a backfill chunk as committed (call inside the chunk's transaction)."""
        conn.execute(
            sa.text(
                "INSERT INTO backfill_chunks (chunk_key, plan_key, run_id, rows_fetched, committed_at_utc) "
                "VALUES (:k, :p, :r, :n, :t) ON CONFLICT (chunk_key) DO UPDATE SET plan_key = excluded.plan_key, "
                "run_id = excluded.run_id, rows_fetched = excluded.rows_fetched, "
                "committed_at_utc = excluded.committed_at_utc"
            ),
            {"k": chunk_key, "p": plan_key, "r": run_id, "n": rows, "t": self._ts(now)},
        )

    def committed_chunks(self, plan_key: str) -> set[str]:
        """Chunk keys already committed under this backfill plan."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT chunk_key FROM backfill_chunks WHERE plan_key = :p"), {"p": plan_key}
            )
            return {row[0] for row in rows}

    def forget_plan(self, plan_key: str) -> None:
        """Drop a plan's chunk records (`backfill --restart`)."""
        with self.transaction() as conn:
            conn.execute(sa.text("DELETE FROM backfill_chunks WHERE plan_key = :p"), {"p": plan_key})

    # ---- series -------------------------------------------------------------------------------

    def series_keys(self, conn: Connection, frame: pd.DataFrame, now: datetime) -> dict[str, int]:
        """Return series_key for every series in `frame`, creating unknown series."""
        missing = [sid for sid in pd.unique(frame["series_id"]) if sid not in self._series_keys]
        if missing:
            wanted = frame[frame["series_id"].isin(missing)].drop_duplicates("series_id")
            self._load_series_keys(conn, missing)
            new = wanted[~wanted["series_id"].isin(list(self._series_keys))]
            if len(new):
                conn.execute(
                    sa.text(
                        "INSERT INTO series (series_id, dataset, area, area_type, counterpart, first_seen_utc) "
                        "VALUES (:sid, :dataset, :area, :area_type, :counterpart, :now) "
                        "ON CONFLICT (series_id) DO NOTHING"
                    ),
                    [
                        {
                            "sid": row.series_id,
                            "dataset": row.dataset,
                            "area": row.area,
                            "area_type": area_type(str(row.area)),
                            "counterpart": row.counterpart or "",
                            "now": self._ts(now),
                        }
                        for row in new.itertuples(index=False)
                    ],
                )
                self._load_series_keys(conn, list(new["series_id"]))
        return self._series_keys

    def _load_series_keys(self, conn: Connection, series_ids: list[str]) -> None:
        for start in range(0, len(series_ids), 500):
            batch = series_ids[start : start + 500]
            rows = conn.execute(
                sa.text("SELECT series_id, series_key FROM series WHERE series_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": batch},
            )
            self._series_keys.update({sid: int(key) for sid, key in rows})

    # ---- the upsert ---------------------------------------------------------------------------

    def upsert(
        self,
        conn: Connection,
        frame: pd.DataFrame,
        run_id: int | None,
        now: datetime,
        source_ids: pd.Series | int | None = None,
    ) -> LoadCounts:
        """Insert new observations, revise changed ones (keeping the old value), skip the rest.

        `frame` has the observation columns and unique (series_id, period_end_utc).
        """
        if frame.empty:
            return LoadCounts()
        keys = self.series_keys(conn, frame, now)
        codes, uniques = pd.factorize(frame["series_id"])
        series_key = np.array([keys[sid] for sid in uniques], dtype=np.int64)[codes]
        if isinstance(source_ids, pd.Series):
            sources = source_ids.to_numpy(dtype=np.int64)
        else:  # one source for the whole frame; -1 stands for none
            sources = np.full(len(frame), -1 if source_ids is None else source_ids, dtype=np.int64)
        if self.dialect == "postgresql":
            return self._upsert_postgresql(
                conn, frame, codes, uniques, keys, series_key, sources, run_id, now
            )
        return self._upsert_sqlite(conn, frame, series_key, sources, run_id, now)

    def _upsert_postgresql(
        self,
        conn: Connection,
        frame: pd.DataFrame,
        codes: np.ndarray[Any, Any],
        uniques: Any,
        keys: dict[str, int],
        series_key: np.ndarray[Any, Any],
        sources: np.ndarray[Any, Any],
        run_id: int | None,
        now: datetime,
    ) -> LoadCounts:
        """Binary COPY; history never stored before (a backfill's new ground) has nothing to merge
        with or revise, so it goes straight in; anything else through staging and the merge."""
        # as_unit: pandas may hold s, ms, us or ns resolution; the COPY needs microseconds
        period_us = to_pg_micros(frame["period_end_utc"].dt.tz_convert("UTC").dt.as_unit("us").array.asi8)
        values = frame["value_mwh"].to_numpy(dtype="float64")
        flags = frame["quality_flag"].to_numpy(dtype=object)
        spans = frame["period_end_utc"].groupby(codes).agg(["min", "max"])
        if none_stored(
            conn,
            [keys[sid] for sid in uniques[spans.index]],
            _period_texts(spans["min"]),
            _period_texts(spans["max"]),
        ):
            unix_us = (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            stamp = int(to_pg_micros(np.array([unix_us]))[0])
            copy_new_observations(
                conn, encode_rows(series_key, period_us, values, flags, sources, (stamp, run_id))
            )
            return LoadCounts(inserted=len(frame))
        copy_to_staging(conn, encode_rows(series_key, period_us, values, flags, sources))
        return self._merge_staging(conn, run_id, now)

    def _upsert_sqlite(
        self,
        conn: Connection,
        frame: pd.DataFrame,
        series_key: np.ndarray[Any, Any],
        sources: np.ndarray[Any, Any],
        run_id: int | None,
        now: datetime,
    ) -> LoadCounts:
        """executemany straight into observations; the revision trigger keeps old values."""
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        changes_before = dbapi.total_changes
        last_revision = conn.exec_driver_sql("SELECT coalesce(max(revision_id), 0) FROM revisions").scalar()
        stamp = self._ts(now)
        periods = _period_texts(frame["period_end_utc"])
        values = frame["value_mwh"].to_numpy(dtype="float64")
        value_list = [None if v != v else v for v in values.tolist()]
        source_list = [None if s < 0 else s for s in sources.tolist()]
        conn.exec_driver_sql(
            "INSERT INTO observations (series_key, period_end_utc, value_mwh, quality_flag, source_id, "
            "first_seen_utc, last_changed_utc, run_id) "
            f"VALUES (?, ?, ?, ?, ?, '{stamp}', '{stamp}', {run_id if run_id is not None else 'NULL'}) "
            "ON CONFLICT (series_key, period_end_utc) DO UPDATE SET "
            "value_mwh = excluded.value_mwh, quality_flag = excluded.quality_flag, "
            "last_changed_utc = excluded.last_changed_utc, run_id = excluded.run_id, "
            "source_id = excluded.source_id "
            "WHERE observations.value_mwh IS NOT excluded.value_mwh "
            "OR observations.quality_flag IS NOT excluded.quality_flag",
            list(
                zip(
                    series_key.tolist(),
                    periods,
                    value_list,
                    frame["quality_flag"].tolist(),
                    source_list,
                    strict=True,
                )
            ),
        )
        revised = int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM revisions WHERE revision_id > ?", (last_revision,)
            ).scalar_one()
        )
        written = dbapi.total_changes - changes_before - revised  # the trigger's inserts count too
        return LoadCounts(inserted=written - revised, revised=revised, unchanged=len(periods) - written)

    def _merge_staging(self, conn: Connection, run_id: int | None, now: datetime) -> LoadCounts:
        """One pass over the staged rows: new and changed ones are written, old values kept."""
        # Probe the primary key per staged row: a hash join would scan all of observations once
        # per chunk, so a long backfill would slow down as the table grows.
        conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        row = conn.execute(
            sa.text(
                """
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
            ),
            {"now": self._ts(now), "run_id": run_id},
        ).one()
        conn.exec_driver_sql("TRUNCATE gp_staging")
        staged, revised, written = (int(v) for v in row)
        return LoadCounts(inserted=written - revised, revised=revised, unchanged=staged - written)

    # ---- reads ----------------------------------------------------------------------------------

    def iter_observations(
        self,
        window: Window | None,
        bas: Sequence[str] | None,
        datasets: Sequence[str] | None,
        batch_rows: int = 50_000,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Yield batches of (series_id, period_end_utc text, value, flag, dataset, area, counterpart)."""
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {}
        if window is not None:
            where.append("o.period_end_utc >= :start AND o.period_end_utc < :end")
            params.update(start=self._ts(window.start), end=self._ts(window.end))
        stmt = series_query(
            "SELECT s.series_id, o.period_end_utc, o.value_mwh, o.quality_flag, s.dataset, s.area, s.counterpart "
            f"FROM observations o JOIN series s ON s.series_key = o.series_key WHERE {' AND '.join(where)}",
            params,
            bas,
            datasets,
            " ORDER BY s.series_id, o.period_end_utc",
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(stmt, params)
            for partition in result.partitions():
                if self.dialect == "sqlite":
                    yield [tuple(row) for row in partition]
                else:
                    yield [(r[0], r[1].astimezone(UTC).strftime(TIME_FORMAT), *r[2:]) for r in partition]


def series_query(
    sql: str,
    params: dict[str, Any],
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    tail: str = "",
) -> sa.TextClause:
    """`sql` (which aliases `series` as `s` and ends in a WHERE clause) narrowed to these BAs and
    datasets, then `tail` (ORDER BY …); fills `params` for the expanding IN lists."""
    if bas:
        sql += " AND s.area IN :bas"
        params["bas"] = list(bas)
    if datasets:
        sql += " AND s.dataset IN :datasets"
        params["datasets"] = list(datasets)
    stmt = sa.text(sql + tail)
    if bas:
        stmt = stmt.bindparams(sa.bindparam("bas", expanding=True))
    if datasets:
        stmt = stmt.bindparams(sa.bindparam("datasets", expanding=True))
    return stmt


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


def _period_texts(periods: pd.Series) -> list[str]:
    """'2024-01-01T05:00:00Z' for each timestamp, formatting each distinct hour once."""
    codes, uniques = pd.factorize(periods)
    naive = pd.DatetimeIndex(uniques).tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[s]")
    texts = np.char.add(np.datetime_as_string(naive, unit="s"), "Z").astype(object)
    return list(texts[codes].tolist())


def _now_text() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def _no_database(where: str) -> DatabaseError:
    return DatabaseError(
        f"no gridpulse database at {where} (run gridpulse ingest, or check --db / GRIDPULSE_DATABASE_URL)"
    )


def _schema_mismatch(version: int, where: str) -> DatabaseError:
    """Why a reader cannot use a database of this schema version (it never migrates one)."""
    if version == 0:
        return _no_database(where)
    if version > SCHEMA_VERSION:
        return SchemaTooNewError(
            f"database schema version {version} is newer than this gridpulse supports "
            f"({SCHEMA_VERSION}); upgrade gridpulse"
        )
    return DatabaseError(
        f"the gridpulse database at {where} has schema version {version}, older than this gridpulse's "
        f"({SCHEMA_VERSION}): run `gridpulse migrate` to upgrade it"
    )


def _read_only_sqlite_url(path: Path) -> sa.URL:
    """A URL opening an existing SQLite file read-only (SQLite refuses every write); never creates one."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise _no_database(str(path)) from None
    except OSError as exc:
        raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise DatabaseError(f"database path {path} is a directory, not a file")
    return sa.URL.create("sqlite", database=f"file:{quote_path(str(path))}?mode=ro", query={"uri": "true"})


def _prepare_sqlite_path(path: Path) -> None:
    """Create the database folder; explain an unwritable location in one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create database folder {path.parent}: {exc.strerror}") from None
    if path.is_dir():
        raise DatabaseError(f"database path {path} is a directory, not a file")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
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


def _sqlite_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    # No journal-mode pragma: that would write to the file (and a reader never needs it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _postgresql_read_only(dbapi_connection: Any, _record: Any) -> None:
    # Every transaction of the session is READ ONLY: the server refuses any write or DDL.
    dbapi_connection.set_session(readonly=True)


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
