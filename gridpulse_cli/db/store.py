"""The Store: one gridpulse database behind the shared SQL, over the backend chosen when it opens.

SQLite (the default, a file) and PostgreSQL (`postgresql://…`, psycopg2) share one schema
(db/schema.py); what differs between them (time codec, connection setup, bulk upsert, writer lock,
DDL) is in db/sqlite.py and db/postgres.py. Rows whose value and flag are unchanged are never
rewritten; changed ones leave their previous value in `revisions`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gridpulse_cli.catalog import area_type
from gridpulse_cli.db.backend import Backend, LoadCounts, UpsertBatch, describe_db_error
from gridpulse_cli.db.postgres import PostgresBackend
from gridpulse_cli.db.schema import MIGRATIONS, SCHEMA_VERSION
from gridpulse_cli.db.sqlite import SQLiteBackend, no_database
from gridpulse_cli.errors import DatabaseError, SchemaTooNewError
from gridpulse_cli.stopping import STOP
from gridpulse_cli.windows import Window, format_utc

log = logging.getLogger(__name__)

SeriesSpanRow = tuple[int, str, str, str, datetime, datetime]  # key, id, dataset, area, first, last
RevisionRow = tuple[str, datetime, float | None, float | None, datetime, int | None, str, str]


class Store:
    """One gridpulse database. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine, backend: Backend) -> None:
        self.engine = engine
        self.backend = backend
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
        backend: Backend = (
            PostgresBackend(parsed) if parsed.get_backend_name() == "postgresql" else SQLiteBackend(parsed)
        )
        engine, shown = backend.create_engine(read_only)
        store = cls(engine, backend)
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

    def current_schema_version(self) -> int:
        """schema_version on a connection of its own."""
        with self.engine.connect() as conn:
            return self.schema_version(conn)

    def migrate(self) -> list[int]:
        """Apply pending migrations in one transaction each; return the versions applied."""
        applied = []
        with self.engine.begin() as conn:
            current = self.schema_version(conn)
        if current > SCHEMA_VERSION:
            raise _too_new(current)
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            with self.transaction() as conn:
                self.backend.lock_migration(conn)
                if self.schema_version(conn) >= migration.version:
                    continue  # another process got there first
                if migration.version == 1:
                    conn.exec_driver_sql(
                        "CREATE TABLE IF NOT EXISTS gridpulse_schema "
                        "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at_utc TEXT NOT NULL)"
                    )
                for statement in self.backend.migration_statements(migration):
                    conn.exec_driver_sql(statement)
                conn.execute(
                    sa.text("INSERT INTO gridpulse_schema VALUES (:v, :d, :t)"),
                    {"v": migration.version, "d": migration.description, "t": format_utc(datetime.now(UTC))},
                )
            log.debug("database schema migrated to version %d (%s)", migration.version, migration.description)
            applied.append(migration.version)
        self.backend.after_migrate(self.engine)
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

    def writer_lock(self) -> AbstractContextManager[Callable[[], bool]]:
        """The backend's writer lock: yields a non-blocking try-lock, releases it on exit (lock.py waits)."""
        return self.backend.writer_lock(self.engine)

    # ---- time values -------------------------------------------------------------------------

    def encode_time(self, moment: datetime | None) -> Any:
        """A time as this database takes it as a parameter (text on SQLite, timestamptz on PostgreSQL)."""
        return self.backend.encode_time(moment)

    def decode_time(self, value: Any) -> datetime | None:
        """A stored time as an aware UTC datetime."""
        return self.backend.decode_time(value)

    def _utc(self, value: Any) -> datetime:
        moment = self.backend.decode_time(value)
        assert moment is not None
        return moment

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
                "fetched": self.encode_time(fetched_at),
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
            {"k": chunk_key, "p": plan_key, "r": run_id, "n": rows, "t": self.encode_time(now)},
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
                            "now": self.encode_time(now),
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
        code_keys = [keys[sid] for sid in uniques]
        if isinstance(source_ids, pd.Series):
            sources = source_ids.to_numpy(dtype=np.int64)
        else:  # one source for the whole frame; -1 stands for none
            sources = np.full(len(frame), -1 if source_ids is None else source_ids, dtype=np.int64)
        series_key = np.array(code_keys, dtype=np.int64)[codes]
        return self.backend.upsert(
            conn, UpsertBatch(frame, series_key, codes, code_keys, sources, run_id, now)
        )

    # ---- reads ----------------------------------------------------------------------------------

    def read(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        """The rows of one query, on a connection of its own (for the run ledger's reads)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), dict(params or {})).all()

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
            params.update(start=self.encode_time(window.start), end=self.encode_time(window.end))
        stmt = _series_query(
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
                yield self.backend.text_rows(partition)

    def series_spans(self, bas: Sequence[str] | None, datasets: Sequence[str] | None) -> list[SeriesSpanRow]:
        """(series_key, series_id, dataset, area, first hour, last hour) of each stored series, by series_id."""
        params: dict[str, Any] = {}
        stmt = _series_query(
            "SELECT s.series_key, s.series_id, s.dataset, s.area, min(o.period_end_utc), max(o.period_end_utc) "
            "FROM series s JOIN observations o ON o.series_key = s.series_key WHERE 1 = 1",
            params,
            bas,
            datasets,
            " GROUP BY s.series_key, s.series_id, s.dataset, s.area ORDER BY s.series_id",
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, params).all()
        return [(int(r[0]), r[1], r[2], r[3], self._utc(r[4]), self._utc(r[5])) for r in rows]

    def iter_stored_hours(
        self, wanted: Sequence[tuple[int, Window]]
    ) -> Iterator[tuple[pd.DatetimeIndex, np.ndarray[Any, Any]]]:
        """For each (series_key, window): its stored hours there, and which of them hold no value."""
        stmt = sa.text(
            "SELECT period_end_utc, value_mwh IS NULL FROM observations WHERE series_key = :k "
            "AND period_end_utc >= :start AND period_end_utc < :end"
        )
        with self.engine.connect() as conn:
            for series_key, window in wanted:
                params = {
                    "k": series_key,
                    "start": self.encode_time(window.start),
                    "end": self.encode_time(window.end),
                }
                rows = conn.execute(stmt, params).all()
                # to_datetime reads either backend's stored times (text or timestamptz) at once
                periods = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], utc=True))
                yield periods, np.array([bool(r[1]) for r in rows], dtype=bool)

    def revisions(
        self,
        changed_since: datetime | None,
        bas: Sequence[str] | None,
        datasets: Sequence[str] | None,
        limit: int | None = None,
    ) -> list[RevisionRow]:
        """(series_id, period_end, old value, new value, changed_at, run_id, old flag, new flag),
        oldest change first, optionally only those changed since a moment."""
        stmt, params = self._revision_query(
            "s.series_id, r.period_end_utc, r.old_value_mwh, r.new_value_mwh, r.changed_at_utc, r.run_id, "
            "r.old_quality_flag, r.new_quality_flag",
            changed_since,
            bas,
            datasets,
            " ORDER BY r.changed_at_utc, r.revision_id" + (f" LIMIT {int(limit)}" if limit else ""),
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, params).all()
        return [(r[0], self._utc(r[1]), r[2], r[3], self._utc(r[4]), r[5], r[6], r[7]) for r in rows]

    def count_revisions(
        self, changed_since: datetime | None, bas: Sequence[str] | None, datasets: Sequence[str] | None
    ) -> int:
        """How many revisions `revisions` would return without a limit."""
        stmt, params = self._revision_query("count(*)", changed_since, bas, datasets)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt, params).scalar_one())

    def _revision_query(
        self,
        select: str,
        changed_since: datetime | None,
        bas: Sequence[str] | None,
        datasets: Sequence[str] | None,
        tail: str = "",
    ) -> tuple[sa.TextClause, dict[str, Any]]:
        """`SELECT {select}` over revisions joined to their series, narrowed by the options."""
        clauses: list[str] = ["1 = 1"]
        params: dict[str, Any] = {}
        if changed_since is not None:
            clauses.append("r.changed_at_utc >= :since")
            params["since"] = self.encode_time(changed_since)
        sql = (
            f"SELECT {select} FROM revisions r JOIN series s ON s.series_key = r.series_key "
            f"WHERE {' AND '.join(clauses)}"
        )
        return _series_query(sql, params, bas, datasets, tail), params

    def newest_hours(self) -> list[tuple[str, str, datetime]]:
        """(area, dataset, newest stored hour) per stored series: one index probe per series, not
        a scan of history."""
        rows = self.read(
            "SELECT s.area, s.dataset, (SELECT max(o.period_end_utc) FROM observations o "
            "WHERE o.series_key = s.series_key) FROM series s"
        )
        return [(area, dataset, self._utc(last)) for area, dataset, last in rows if last is not None]


def _series_query(
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


def _too_new(version: int) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"database schema version {version} is newer than this gridpulse supports "
        f"({SCHEMA_VERSION}); upgrade gridpulse"
    )


def _schema_mismatch(version: int, where: str) -> DatabaseError:
    """Why a reader cannot use a database of this schema version (it never migrates one)."""
    if version == 0:
        return no_database(where)
    if version > SCHEMA_VERSION:
        return _too_new(version)
    return DatabaseError(
        f"the gridpulse database at {where} has schema version {version}, older than this gridpulse's "
        f"({SCHEMA_VERSION}): run `gridpulse migrate` to upgrade it"
    )
