"""The database schema, as ordered migrations for SQLite and PostgreSQL.

Tables (see docs/schema.md):
    gridpulse_schema  one row per applied migration (version, applied_at_utc)
    series            one row per EIA series ID (dataset, area, counterpart, units)
    observations      one row per (series, period_end_utc): value_mwh, quality_flag, first/last seen
    revisions         the previous value each time EIA changed a stored one
    runs              the run ledger: command, window, counts, status, error
    sources           each EIA response (or load input) gzipped, key stripped; rows point to it
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


_V1_SQLITE = (
    """CREATE TABLE series (
        series_key INTEGER PRIMARY KEY,
        series_id TEXT NOT NULL UNIQUE,
        dataset TEXT NOT NULL,
        area TEXT NOT NULL,
        area_type TEXT NOT NULL,
        counterpart TEXT NOT NULL DEFAULT '',
        units TEXT NOT NULL DEFAULT 'MWh',
        first_seen_utc TEXT NOT NULL
    )""",
    """CREATE TABLE runs (
        run_id INTEGER PRIMARY KEY,
        command TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at_utc TEXT NOT NULL,
        finished_at_utc TEXT,
        window_start_utc TEXT,
        window_end_utc TEXT,
        bas TEXT NOT NULL DEFAULT '',
        datasets TEXT NOT NULL DEFAULT '',
        rows_fetched INTEGER NOT NULL DEFAULT 0,
        rows_inserted INTEGER NOT NULL DEFAULT 0,
        rows_revised INTEGER NOT NULL DEFAULT 0,
        rows_unchanged INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        error TEXT
    )""",
    """CREATE TABLE sources (
        source_id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs (run_id),
        kind TEXT NOT NULL,
        route TEXT NOT NULL,
        params_json TEXT NOT NULL,
        fetched_at_utc TEXT NOT NULL,
        row_count INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        body_gzip BLOB NOT NULL
    )""",
    """CREATE TABLE observations (
        series_key INTEGER NOT NULL REFERENCES series (series_key),
        period_end_utc TEXT NOT NULL,
        value_mwh REAL,
        quality_flag TEXT NOT NULL,
        first_seen_utc TEXT NOT NULL,
        last_changed_utc TEXT NOT NULL,
        run_id INTEGER,
        source_id INTEGER,
        PRIMARY KEY (series_key, period_end_utc)
    ) WITHOUT ROWID""",
    """CREATE TABLE revisions (
        revision_id INTEGER PRIMARY KEY,
        series_key INTEGER NOT NULL REFERENCES series (series_key),
        period_end_utc TEXT NOT NULL,
        old_value_mwh REAL,
        new_value_mwh REAL,
        old_quality_flag TEXT NOT NULL,
        new_quality_flag TEXT NOT NULL,
        changed_at_utc TEXT NOT NULL,
        run_id INTEGER
    )""",
    "CREATE INDEX revisions_changed_at ON revisions (changed_at_utc)",
    "CREATE INDEX observations_period ON observations (period_end_utc)",
)

_V1_POSTGRESQL = (
    """CREATE TABLE series (
        series_key SERIAL PRIMARY KEY,
        series_id TEXT NOT NULL UNIQUE,
        dataset TEXT NOT NULL,
        area TEXT NOT NULL,
        area_type TEXT NOT NULL,
        counterpart TEXT NOT NULL DEFAULT '',
        units TEXT NOT NULL DEFAULT 'MWh',
        first_seen_utc TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE runs (
        run_id SERIAL PRIMARY KEY,
        command TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at_utc TIMESTAMPTZ NOT NULL,
        finished_at_utc TIMESTAMPTZ,
        window_start_utc TIMESTAMPTZ,
        window_end_utc TIMESTAMPTZ,
        bas TEXT NOT NULL DEFAULT '',
        datasets TEXT NOT NULL DEFAULT '',
        rows_fetched BIGINT NOT NULL DEFAULT 0,
        rows_inserted BIGINT NOT NULL DEFAULT 0,
        rows_revised BIGINT NOT NULL DEFAULT 0,
        rows_unchanged BIGINT NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        error TEXT
    )""",
    """CREATE TABLE sources (
        source_id BIGSERIAL PRIMARY KEY,
        run_id INTEGER REFERENCES runs (run_id),
        kind TEXT NOT NULL,
        route TEXT NOT NULL,
        params_json JSONB NOT NULL,
        fetched_at_utc TIMESTAMPTZ NOT NULL,
        row_count INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        body_gzip BYTEA NOT NULL
    )""",
    """CREATE TABLE observations (
        series_key INTEGER NOT NULL REFERENCES series (series_key),
        period_end_utc TIMESTAMPTZ NOT NULL,
        value_mwh DOUBLE PRECISION,
        quality_flag TEXT NOT NULL,
        first_seen_utc TIMESTAMPTZ NOT NULL,
        last_changed_utc TIMESTAMPTZ NOT NULL,
        run_id INTEGER,
        source_id BIGINT,
        PRIMARY KEY (series_key, period_end_utc)
    )""",
    """CREATE TABLE revisions (
        revision_id BIGSERIAL PRIMARY KEY,
        series_key INTEGER NOT NULL REFERENCES series (series_key),
        period_end_utc TIMESTAMPTZ NOT NULL,
        old_value_mwh DOUBLE PRECISION,
        new_value_mwh DOUBLE PRECISION,
        old_quality_flag TEXT NOT NULL,
        new_quality_flag TEXT NOT NULL,
        changed_at_utc TIMESTAMPTZ NOT NULL,
        run_id INTEGER
    )""",
    "CREATE INDEX revisions_changed_at ON revisions (changed_at_utc)",
    "CREATE INDEX observations_period ON observations (period_end_utc)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "series, observations, revisions, runs, sources", _V1_SQLITE, _V1_POSTGRESQL),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
