"""The database schema, as ordered migrations for SQLite and PostgreSQL.

Tables (README.md, "What gets stored" > "Tables", describes each for users):
    gridpulse_schema  one row per applied migration (version, applied_at_utc)
    series            one row per EIA series ID (dataset, area, counterpart, units)
    observations      one row per (series, period_end_utc): value_mwh, quality_flag, first/last seen
    revisions         the previous value each time EIA changed a stored one
    runs              the run ledger: command, window, counts, status, error, elapsed_s (v3)
    sources           each EIA response (or load input) gzipped, key stripped; rows point to it
    backfill_chunks   (v2) each committed backfill chunk, so a resumed backfill skips it
    findings          (v4) what the quality screen flagged: one row per (series, hour, check);
                      (v5) also `eia-imputed`: hours whose reported value EIA imputed (bulk files)

A database made by an earlier release is upgraded in place on first use (Store.migrate).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


# The series columns both backends spell the same way.
_SERIES_COLUMNS = """        series_id TEXT NOT NULL UNIQUE,
        dataset TEXT NOT NULL,
        area TEXT NOT NULL,
        area_type TEXT NOT NULL,
        counterpart TEXT NOT NULL DEFAULT '',
        units TEXT NOT NULL DEFAULT 'MWh',"""

_V1_SQLITE = (
    f"""CREATE TABLE series (
        series_key INTEGER PRIMARY KEY,
{_SERIES_COLUMNS}
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
        series_key INTEGER NOT NULL,  -- series.series_key (no FK: checked per row, it costs a third of load time)
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
        series_key INTEGER NOT NULL,
        period_end_utc TEXT NOT NULL,
        old_value_mwh REAL,
        new_value_mwh REAL,
        old_quality_flag TEXT NOT NULL,
        new_quality_flag TEXT NOT NULL,
        changed_at_utc TEXT NOT NULL,
        run_id INTEGER
    )""",
    "CREATE INDEX revisions_changed_at ON revisions (changed_at_utc)",
)

_V1_POSTGRESQL = (
    f"""CREATE TABLE series (
        series_key SERIAL PRIMARY KEY,
{_SERIES_COLUMNS}
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
        series_key INTEGER NOT NULL,  -- series.series_key (no FK: checked per row, it costs a third of load time)
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
        series_key INTEGER NOT NULL,
        period_end_utc TIMESTAMPTZ NOT NULL,
        old_value_mwh DOUBLE PRECISION,
        new_value_mwh DOUBLE PRECISION,
        old_quality_flag TEXT NOT NULL,
        new_quality_flag TEXT NOT NULL,
        changed_at_utc TIMESTAMPTZ NOT NULL,
        run_id INTEGER
    )""",
    "CREATE INDEX revisions_changed_at ON revisions (changed_at_utc)",
)

# v2: the backfill chunk ledger (resume re-fetches only uncommitted chunks), who ran each run
# (pid, host: for the lock and for `runs`), and revision lookups by series and hour.
_V2_COMMON = (
    "ALTER TABLE runs ADD COLUMN pid INTEGER",
    "ALTER TABLE runs ADD COLUMN host TEXT",
    "CREATE INDEX revisions_series_period ON revisions (series_key, period_end_utc)",
)
# On SQLite the upsert writes straight into observations (no staging table: ~3x faster there) and
# this trigger keeps the previous value of every row whose value or flag the upsert changed.
SQLITE_REVISION_TRIGGER = """CREATE TRIGGER observations_revision
    AFTER UPDATE OF value_mwh, quality_flag ON observations
    WHEN OLD.value_mwh IS NOT NEW.value_mwh OR OLD.quality_flag IS NOT NEW.quality_flag
    BEGIN
        INSERT INTO revisions (series_key, period_end_utc, old_value_mwh, new_value_mwh,
            old_quality_flag, new_quality_flag, changed_at_utc, run_id)
        VALUES (OLD.series_key, OLD.period_end_utc, OLD.value_mwh, NEW.value_mwh,
            OLD.quality_flag, NEW.quality_flag, NEW.last_changed_utc, NEW.run_id);
    END"""

_V2_SQLITE = (
    *_V2_COMMON,
    SQLITE_REVISION_TRIGGER,
    """CREATE TABLE backfill_chunks (
        chunk_key TEXT PRIMARY KEY,
        plan_key TEXT NOT NULL,
        run_id INTEGER,
        rows_fetched INTEGER NOT NULL,
        committed_at_utc TEXT NOT NULL
    )""",
    "CREATE INDEX backfill_chunks_plan ON backfill_chunks (plan_key)",
)
_V2_POSTGRESQL = (
    *_V2_COMMON,
    """CREATE TABLE backfill_chunks (
        chunk_key TEXT PRIMARY KEY,
        plan_key TEXT NOT NULL,
        run_id INTEGER,
        rows_fetched BIGINT NOT NULL,
        committed_at_utc TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX backfill_chunks_plan ON backfill_chunks (plan_key)",
)

# v3: each run's own elapsed seconds (a monotonic clock), so `runs` shows the same duration on both
# backends: SQLite keeps timestamps to the second, and a pinned GRIDPULSE_NOW makes them equal.
_V3_SQLITE = ("ALTER TABLE runs ADD COLUMN elapsed_s REAL",)
_V3_POSTGRESQL = ("ALTER TABLE runs ADD COLUMN elapsed_s DOUBLE PRECISION",)

# v4: the quality screen's findings (quality.py, check.py; docs/quality.md), each run's count of
# them, and each run's count of 429 (rate-limited) responses. A finding never changes a value:
# export shows `suspect` for an hour that has one.
_V4_COMMON = (
    "ALTER TABLE runs ADD COLUMN findings INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0",
)
_FINDINGS_COLUMNS = """        series_key INTEGER NOT NULL,
        period_end_utc {time} NOT NULL,
        check_name TEXT NOT NULL,
        detail TEXT NOT NULL,
        found_at_utc {time} NOT NULL,
        run_id INTEGER,
        PRIMARY KEY (series_key, period_end_utc, check_name)"""
_V4_SQLITE = (
    *_V4_COMMON,
    f"CREATE TABLE findings (\n{_FINDINGS_COLUMNS.format(time='TEXT')}\n    ) WITHOUT ROWID",
)
_V4_POSTGRESQL = (
    *_V4_COMMON,
    f"CREATE TABLE findings (\n{_FINDINGS_COLUMNS.format(time='TIMESTAMPTZ')}\n    )",
)

# v5: an hour whose reported value EIA imputed in a six-month file is a finding (`eia-imputed`,
# export `suspect`), not the flag `estimated`, which is left for values that are themselves
# estimates. Earlier versions set `estimated` only there (bulkfiles.py; `load` passes a flag its
# input file gives through, so only rows from a `bulk-file` source are migrated). They did not keep
# EIA's imputed value: the detail says so, and reloading the file fills it in. The flag changes
# are a reinterpretation, not EIA revising a value: no revisions (SQLite's revision trigger is
# dropped around the UPDATE; PostgreSQL records revisions in the upsert, not by trigger).
# the rows earlier versions flagged for EIA's imputation
_V5_ESTIMATED = (
    "quality_flag = 'estimated' AND source_id IN (SELECT source_id FROM sources WHERE kind = 'bulk-file')"
)
_V5_DETAIL = (  # an SQL literal
    "'eia-imputed: EIA imputed this hour in its six-month file (stored as estimated before gridpulse "
    "schema v5, which kept no imputed value); reload the file to see EIA''s imputed value here'"
)


def _v5(now: str) -> tuple[str, ...]:
    """The v5 statements; `now` is the SQL for the migration time as this backend stores it."""
    return (
        "INSERT INTO findings (series_key, period_end_utc, check_name, detail, found_at_utc, run_id) "
        f"SELECT series_key, period_end_utc, 'eia-imputed', {_V5_DETAIL}, {now}, NULL FROM observations "
        f"WHERE {_V5_ESTIMATED} AND value_mwh IS NOT NULL",  # an empty reported cell is a gap
        "UPDATE observations SET quality_flag = CASE WHEN value_mwh IS NULL THEN 'missing' ELSE 'good' END "
        f"WHERE {_V5_ESTIMATED}",
    )


_V5_SQLITE = (
    "DROP TRIGGER observations_revision",
    *_v5("strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"),
    SQLITE_REVISION_TRIGGER,
)
_V5_POSTGRESQL = _v5("now()")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "series, observations, revisions, runs, sources", _V1_SQLITE, _V1_POSTGRESQL),
    Migration(2, "backfill chunk ledger, run pid/host, revision index", _V2_SQLITE, _V2_POSTGRESQL),
    Migration(3, "run elapsed seconds", _V3_SQLITE, _V3_POSTGRESQL),
    Migration(4, "quality findings, run findings and throttled counts", _V4_SQLITE, _V4_POSTGRESQL),
    Migration(5, "EIA-imputed hours as eia-imputed findings, not flag estimated", _V5_SQLITE, _V5_POSTGRESQL),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


# ---- TimescaleDB (optional) -------------------------------------------------------------------
# 30-day chunks: with every BA and dataset (~1,300 series) a month is ~1M rows, ~100 MB with its
# index: small enough to stay in memory while EIA revises it, large enough to keep the chunk
# count low over ten years (~120 chunks). See docs/timescaledb.md.
TIMESCALE_CHUNK_INTERVAL = "30 days"


def timescale_statements(chunk_interval: str = TIMESCALE_CHUNK_INTERVAL) -> tuple[str, ...]:
    """What turns `observations` into a hypertable (run only where the extension is available)."""
    return (
        "CREATE EXTENSION IF NOT EXISTS timescaledb",
        "SELECT create_hypertable('observations', 'period_end_utc', "
        f"chunk_time_interval => INTERVAL '{chunk_interval}', if_not_exists => TRUE, migrate_data => TRUE)",
    )
