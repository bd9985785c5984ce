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
from gridpulse_cli.db.backend import Backend, LoadCounts, UpsertBatch, describe_db_error, period_texts
from gridpulse_cli.db.postgres import PostgresBackend
from gridpulse_cli.db.schema import MIGRATIONS, SCHEMA_VERSION
from gridpulse_cli.db.sqlite import SQLiteBackend, no_database
from gridpulse_cli.errors import DatabaseError, SchemaTooNewError
from gridpulse_cli.stopping import STOP
from gridpulse_cli.windows import Window, format_utc

log = logging.getLogger(__name__)

SeriesSpanRow = tuple[int, str, str, str, datetime, datetime]  # key, id, dataset, area, first, last
RevisionRow = tuple[str, datetime, float | None, float | None, datetime, int | None, str, str]
# one series: area, dataset, first hour, last hour, observations, missing values, newest run id
StatusRow = tuple[str, str, datetime, datetime, int, int, int | None]
LineageRow = tuple[str, str, str, int, int, datetime | None]  # series, route, kind, responses, rows, newest


class Store:
    """One gridpulse database. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine, backend: Backend) -> None:
        self.engine = engine
        self.backend = backend
        self._series_keys: dict[str, int] = {}
        # (first, last) hour each series_key was written in since the last clear: the hours a run
        # wrote, which the quality screen re-screens after it (check.RunScreen)
        self.written: dict[int, tuple[pd.Timestamp, pd.Timestamp]] = {}

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
        self._note_written(frame["period_end_utc"], codes, code_keys)
        return self.backend.upsert(
            conn, UpsertBatch(frame, series_key, codes, code_keys, sources, run_id, now)
        )

    def _note_written(self, periods: pd.Series, codes: np.ndarray[Any, Any], keys: list[int]) -> None:
        spans = periods.groupby(codes).agg(["min", "max"])
        for code, first, last in zip(spans.index, spans["min"], spans["max"], strict=True):
            key = keys[int(code)]
            old = self.written.get(key)
            self.written[key] = (first, last) if old is None else (min(old[0], first), max(old[1], last))

    # ---- quality findings (issue 10) ------------------------------------------------------------

    def series_values_many(self, keys: Sequence[int], window: Window) -> dict[int, pd.Series]:
        """One query for several series' stored values in the window (NaN where stored without one), by
        period_end_utc: each key's values (empty if none)."""
        keys = sorted(set(keys))  # the rows come back in key order: each key's are one slice
        stmt = sa.text(
            f"SELECT series_key, {self.backend.epoch_seconds('period_end_utc')}, value_mwh FROM observations "
            "WHERE series_key IN :keys AND period_end_utc >= :start AND period_end_utc < :end "
            "ORDER BY series_key, period_end_utc"
        ).bindparams(sa.bindparam("keys", expanding=True))
        params = {"start": self.encode_time(window.start), "end": self.encode_time(window.end)}
        rows: list[Any] = []
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                part = {**params, "keys": list(keys[start : start + 500])}
                rows += conn.execute(stmt, part).cursor.fetchall()  # numbers only: no Row objects
        table = np.array(rows, dtype=float).reshape(-1, 3)  # a NULL value becomes NaN
        index = pd.to_datetime(table[:, 1].astype(np.int64), unit="s", utc=True).rename("period_end_utc")
        series_keys = table[:, 0].astype(np.int64)
        bounds = (
            np.searchsorted(series_keys, keys, side="left"),
            np.searchsorted(series_keys, keys, side="right"),
        )
        return {
            key: pd.Series(table[a:b, 2], index=index[a:b], dtype=float)
            for key, a, b in zip(keys, bounds[0], bounds[1], strict=True)
        }

    def series_names(self, keys: Sequence[int]) -> dict[int, tuple[str, str, str]]:
        """series_key -> (series_id, dataset, area) for these keys."""
        out: dict[int, tuple[str, str, str]] = {}
        stmt = sa.text("SELECT series_key, series_id, dataset, area FROM series WHERE series_key IN :keys")
        stmt = stmt.bindparams(sa.bindparam("keys", expanding=True))
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                for r in conn.execute(stmt, {"keys": list(keys[start : start + 500])}):
                    out[int(r[0])] = (r[1], r[2], r[3])
        return out

    def replace_findings(
        self,
        conn: Connection,
        series_key: int,
        window: Window,
        found: pd.DataFrame,
        run_id: int | None,
        now: datetime,
        checks: Sequence[str],
    ) -> int:
        """Make the series' stored findings of these checks in the window exactly `found`
        (period_end_utc, check, detail): clear those that no longer hold, keep those that still do
        (first found_at and run), add new ones. Other checks' findings are not touched (each
        check has one owner: the per-series screen, the consistency checks, bulk files). Return
        how many are new."""
        where = (
            "series_key = :k AND period_end_utc >= :start AND period_end_utc < :end AND check_name IN :checks"
        )
        params = {
            "k": series_key,
            "start": self.encode_time(window.start),
            "end": self.encode_time(window.end),
            "checks": list(checks),
        }
        select = sa.text(f"SELECT period_end_utc, check_name, detail FROM findings WHERE {where}")
        stored = conn.execute(select.bindparams(sa.bindparam("checks", expanding=True)), params)
        # Keyed by the hour's text, formatted in bulk: a frozen feed can flag thousands of hours,
        # and parsing each stored time one by one would cost more than the screen itself.
        old = {(r[0] if isinstance(r[0], str) else format_utc(r[0]), r[1]): (r[0], r[2]) for r in stored}
        if found.empty and not old:  # most series, most runs: nothing found, nothing to clear
            return 0
        periods = pd.to_datetime(found["period_end_utc"], utc=True)  # the screen's hours are UTC
        new = {
            (text, c): (p, d)
            for text, p, c, d in zip(
                period_texts(periods), periods, found["check"], found["detail"], strict=True
            )
        }
        gone = [{"k": series_key, "p": old[key][0], "c": key[1]} for key in old.keys() - new.keys()]
        changed = [
            {"k": series_key, "p": old[key][0], "c": key[1], "d": new[key][1]}
            for key in old.keys() & new.keys()
            if old[key][1] != new[key][1]
        ]
        added = [
            {
                "k": series_key,
                "p": self.encode_time(new[key][0].to_pydatetime()),
                "c": key[1],
                "d": new[key][1],
                "t": self.encode_time(now),
                "r": run_id,
            }
            for key in new.keys() - old.keys()
        ]
        write_findings(conn, gone, changed, added)
        return len(added)

    def finding_hours(
        self, keys: Sequence[int], window: Window, excluding: Sequence[str]
    ) -> dict[int, pd.DatetimeIndex]:
        """series_key -> the hours in the window where it has a finding of a check not excluded."""
        stmt = sa.text(
            "SELECT series_key, period_end_utc FROM findings WHERE series_key IN :keys "
            "AND period_end_utc >= :start AND period_end_utc < :end AND check_name NOT IN :checks"
        ).bindparams(sa.bindparam("keys", expanding=True), sa.bindparam("checks", expanding=True))
        params = {
            "start": self.encode_time(window.start),
            "end": self.encode_time(window.end),
            "checks": list(excluding),
        }
        found: dict[int, list[Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                for key, period in conn.execute(stmt, {**params, "keys": list(keys[start : start + 500])}):
                    found.setdefault(int(key), []).append(period)
        return {key: pd.DatetimeIndex(pd.to_datetime(hours, utc=True)) for key, hours in found.items()}

    def all_series(self) -> list[tuple[int, str]]:
        """(series_key, series_id) of every series the store knows."""
        with self.engine.connect() as conn:
            return [
                (int(r[0]), r[1]) for r in conn.execute(sa.text("SELECT series_key, series_id FROM series"))
            ]

    def findings(
        self, window: Window | None, bas: Sequence[str] | None, datasets: Sequence[str] | None
    ) -> list[tuple[str, datetime, str, str]]:
        """(series_id, period_end_utc, check, detail) of stored findings, by series, hour, check."""
        params: dict[str, Any] = {}
        sql = "SELECT s.series_id, f.period_end_utc, f.check_name, f.detail FROM findings f "
        sql += "JOIN series s ON s.series_key = f.series_key WHERE 1 = 1"
        if window is not None:
            sql += " AND f.period_end_utc >= :start AND f.period_end_utc < :end"
            params.update(start=self.encode_time(window.start), end=self.encode_time(window.end))
        stmt = _series_query(
            sql, params, bas, datasets, " ORDER BY s.series_id, f.period_end_utc, f.check_name"
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, params).all()
        return [(r[0], self._utc(r[1]), r[2], r[3]) for r in rows]

    def suspect_shares(self, bas: Sequence[str], since: datetime) -> dict[str, tuple[int, int]]:
        """area -> (hours with a finding, stored values) over its series since a moment."""
        params: dict[str, Any] = {"since": self.encode_time(since)}
        stmt = _series_query(
            "SELECT s.area, count(o.value_mwh), count(CASE WHEN EXISTS (SELECT 1 FROM findings f "
            "WHERE f.series_key = o.series_key AND f.period_end_utc = o.period_end_utc) THEN 1 END) "
            "FROM observations o "
            "JOIN series s ON s.series_key = o.series_key WHERE o.period_end_utc >= :since",
            params,
            bas,
            None,
            " GROUP BY s.area",
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, params).all()
        return {r[0]: (int(r[2]), int(r[1])) for r in rows}

    def replace_eia_imputed(
        self,
        conn: Connection,
        spans: Mapping[str, tuple[pd.Timestamp, pd.Timestamp]],
        found: pd.DataFrame,
        run_id: int | None,
        now: datetime,
    ) -> int:
        """Make the `eia-imputed` findings (hours whose reported value EIA imputed, from a six-month
        file) of each series in its span (series_id -> first and last hour the file holds) exactly
        `found` (series_id, period_end_utc, detail): a reloaded file replaces what it said before,
        keeping first found_at and run of what still holds. Other checks' findings are not touched
        (the quality screen owns those). Return how many are new."""
        self._load_series_keys(conn, [sid for sid in spans if sid not in self._series_keys])
        key_spans = {self._series_keys[sid]: span for sid, span in spans.items()}
        old = self._stored_eia_imputed(conn, key_spans)
        # keyed by the hour's text, formatted in bulk (a file can hold 100,000 imputed hours)
        texts = period_texts(pd.to_datetime(found["period_end_utc"], utc=True))
        new = {
            (self._series_keys[sid], text): detail
            for sid, text, detail in zip(
                found["series_id"].tolist(), texts, found["detail"].tolist(), strict=True
            )
        }
        return self._apply_eia_imputed(conn, old, new, run_id, now)

    def _stored_eia_imputed(
        self, conn: Connection, key_spans: Mapping[int, tuple[pd.Timestamp, pd.Timestamp]]
    ) -> dict[tuple[int, str], tuple[Any, str]]:
        """(series_key, hour text) -> (stored hour, detail) of the stored `eia-imputed` findings
        inside each series' span (first and last hour)."""
        if not key_spans:
            return {}
        stmt = sa.text(
            "SELECT series_key, period_end_utc, detail FROM findings WHERE check_name = 'eia-imputed' "
            "AND series_key IN :keys AND period_end_utc >= :start AND period_end_utc <= :end"
        ).bindparams(sa.bindparam("keys", expanding=True))
        texts = {
            key: (format_utc(first.to_pydatetime()), format_utc(last.to_pydatetime()))
            for key, (first, last) in key_spans.items()
        }
        bounds = {
            "start": self.encode_time(min(first for first, _ in key_spans.values()).to_pydatetime()),
            "end": self.encode_time(max(last for _, last in key_spans.values()).to_pydatetime()),
        }
        keys = list(key_spans)
        old: dict[tuple[int, str], tuple[Any, str]] = {}
        for start in range(0, len(keys), 500):
            for key, period, detail in conn.execute(stmt, {**bounds, "keys": keys[start : start + 500]}):
                text = period if isinstance(period, str) else format_utc(period)
                first, last = texts[int(key)]
                if first <= text <= last:  # the one time format sorts as text
                    old[(int(key), text)] = (period, detail)
        return old

    def _apply_eia_imputed(
        self,
        conn: Connection,
        old: Mapping[tuple[int, str], tuple[Any, str]],
        new: Mapping[tuple[int, str], str],
        run_id: int | None,
        now: datetime,
    ) -> int:
        """Delete, re-word and add `eia-imputed` findings so `old` becomes `new`; return how many are new."""
        check = "eia-imputed"
        gone = [{"k": key[0], "p": old[key][0], "c": check} for key in old.keys() - new.keys()]
        changed = [
            {"k": key[0], "p": old[key][0], "c": check, "d": new[key]}
            for key in old.keys() & new.keys()
            if old[key][1] != new[key]
        ]
        added = [
            {
                "k": key[0],
                "p": self.encode_time(datetime.fromisoformat(key[1])),
                "c": check,
                "d": new[key],
                "t": self.encode_time(now),
                "r": run_id,
            }
            for key in new.keys() - old.keys()
        ]
        write_findings(conn, gone, changed, added)
        return len(added)

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
        by_time: bool = False,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Yield batches of (series_id, period_end_utc text, value, flag, dataset, area, counterpart),
        sorted by series_id then time, or (`by_time`) by time then series_id."""
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {}
        if window is not None:
            where.append("o.period_end_utc >= :start AND o.period_end_utc < :end")
            params.update(start=self.encode_time(window.start), end=self.encode_time(window.end))
        stmt = _series_query(
            f"SELECT s.series_id, o.period_end_utc, o.value_mwh, {_EXPORTED_FLAG}, s.dataset, s.area, s.counterpart "
            f"FROM observations o JOIN series s ON s.series_key = o.series_key WHERE {' AND '.join(where)}",
            params,
            bas,
            datasets,
            # by_time: hour by hour (export --wide pivots one batch of whole hours at a time)
            " ORDER BY o.period_end_utc, s.series_id"
            if by_time
            else " ORDER BY s.series_id, o.period_end_utc",
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(stmt, params)
            for partition in result.partitions(batch_rows):  # SQLite yields 1-row partitions otherwise
                yield self.backend.text_rows(partition)

    def series_spans(self, bas: Sequence[str] | None, datasets: Sequence[str] | None) -> list[SeriesSpanRow]:
        """(series_key, series_id, dataset, area, first hour, last hour) of each stored series, by series_id."""
        params: dict[str, Any] = {}
        # One index probe per end and series, not an aggregate over every observation.
        first, last = (
            f"(SELECT {end}(o.period_end_utc) FROM observations o WHERE o.series_key = s.series_key)"
            for end in ("min", "max")
        )
        stmt = _series_query(
            f"SELECT s.series_key, s.series_id, s.dataset, s.area, {first}, {last} FROM series s WHERE 1 = 1",
            params,
            bas,
            datasets,
            " ORDER BY s.series_id",
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, params).all()
        return [
            (int(r[0]), r[1], r[2], r[3], self._utc(r[4]), self._utc(r[5])) for r in rows if r[4] is not None
        ]

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

    # ---- reads for status and report (issue 11) ---------------------------------------------------

    def has_table(self, name: str) -> bool:
        """Whether the database has this table (e.g. `findings`, which a newer schema adds)."""
        return bool(sa.inspect(self.engine).has_table(name))

    def status_rows(self, bas: Sequence[str] | None, datasets: Sequence[str] | None) -> list[StatusRow]:
        """(area, dataset, first hour, last hour, observations, missing values, newest run id) per
        stored series: one pass over observations."""
        params: dict[str, Any] = {}
        stmt = _series_query(
            "SELECT s.area, s.dataset, min(o.period_end_utc), max(o.period_end_utc), count(*), "
            "sum(CASE WHEN o.value_mwh IS NULL THEN 1 ELSE 0 END), max(o.run_id) "
            "FROM series s JOIN observations o ON o.series_key = s.series_key WHERE 1 = 1",
            params,
            bas,
            datasets,
            " GROUP BY s.series_key, s.area, s.dataset",
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, params).all()
        return [
            (
                r[0],
                r[1],
                self._utc(r[2]),
                self._utc(r[3]),
                int(r[4]),
                int(r[5] or 0),
                None if r[6] is None else int(r[6]),
            )
            for r in rows
        ]

    def suspect_counts(self) -> dict[tuple[str, str], int]:
        """Flagged hours per (area, dataset) from the quality screen's `findings` (an hour flagged by
        several checks counts once; none in a database without the table)."""
        if not self.has_table("findings"):
            return {}
        rows = self.read(
            "SELECT s.area, s.dataset, count(*) FROM (SELECT DISTINCT series_key, period_end_utc "
            "FROM findings) f JOIN series s ON s.series_key = f.series_key GROUP BY s.area, s.dataset"
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def lineage(self, window: Window, bas: Sequence[str] | None) -> list[LineageRow]:
        """(series_id, route, source kind, stored responses, observations, newest fetch) per series and
        route its values in the window came from; route '' for values without a stored source."""
        params: dict[str, Any] = {
            "start": self.encode_time(window.start),
            "end": self.encode_time(window.end),
        }
        stmt = _series_query(
            "SELECT s.series_id, src.route, src.kind, count(DISTINCT o.source_id), count(*), "
            "max(src.fetched_at_utc) FROM observations o JOIN series s ON s.series_key = o.series_key "
            "LEFT JOIN sources src ON src.source_id = o.source_id "
            "WHERE o.period_end_utc >= :start AND o.period_end_utc < :end",
            params,
            bas,
            None,
            " GROUP BY s.series_id, src.route, src.kind ORDER BY s.series_id, src.route",
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, params).all()
        return [
            (r[0], r[1] or "", r[2] or "", int(r[3]), int(r[4]), None if r[5] is None else self._utc(r[5]))
            for r in rows
        ]


# The flag readers see: `suspect` where the quality screen has a finding for a stored value
# (the stored flag and value never change; docs/quality.md).
_EXPORTED_FLAG = (
    "CASE WHEN o.value_mwh IS NOT NULL AND EXISTS (SELECT 1 FROM findings f WHERE f.series_key = o.series_key "
    "AND f.period_end_utc = o.period_end_utc) THEN 'suspect' ELSE o.quality_flag END"
)


_FINDINGS = sa.table(
    "findings",
    *(
        sa.column(c)
        for c in ("series_key", "period_end_utc", "check_name", "detail", "found_at_utc", "run_id")
    ),
)
_FINDING_KEY = "series_key = :k AND period_end_utc = :p AND check_name = :c"


def write_findings(
    conn: Connection, gone: list[dict[str, Any]], changed: list[dict[str, Any]], added: list[dict[str, Any]]
) -> None:
    """Delete, re-word and add findings (k series_key, p stored hour, c check, d detail, t found
    at, r run). Added rows go in as multi-row INSERTs (SQLAlchemy's insertmanyvalues): psycopg2's
    executemany would send a six-month file's 100,000 `eia-imputed` findings one by one."""
    if gone:
        conn.execute(sa.text(f"DELETE FROM findings WHERE {_FINDING_KEY}"), gone)
    if changed:
        conn.execute(sa.text(f"UPDATE findings SET detail = :d WHERE {_FINDING_KEY}"), changed)
    if added:
        rows = [
            {
                "series_key": a["k"],
                "period_end_utc": a["p"],
                "check_name": a["c"],
                "detail": a["d"],
                "found_at_utc": a["t"],
                "run_id": a["r"],
            }
            for a in added
        ]
        conn.execute(sa.insert(_FINDINGS), rows)


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
