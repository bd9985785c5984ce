"""Schema migrations: a database made by the previous release (schema v1) upgrades in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from gridpulse_cli import schema
from gridpulse_cli import store as store_module
from gridpulse_cli.errors import SchemaTooNewError
from gridpulse_cli.runs import list_runs
from gridpulse_cli.store import Store

NOW = datetime(2024, 2, 1, tzinfo=UTC)


def _v1_database(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create the schema exactly as release 1 did, with data in it."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", schema.MIGRATIONS[:1])
        patch.setattr(store_module, "SCHEMA_VERSION", 1)
        old = Store.open(url)
        with old.transaction() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO series (series_id, dataset, area, area_type, counterpart, first_seen_utc) "
                    "VALUES ('EBA.CISO-ALL.D.H', 'demand', 'CISO', 'ba', '', :now)"
                ),
                {"now": old._ts(NOW)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO observations (series_key, period_end_utc, value_mwh, quality_flag, "
                    "first_seen_utc, last_changed_utc) VALUES (1, :p, 25055, 'good', :now, :now)"
                ),
                {"p": old._ts(datetime(2024, 1, 1, 5, tzinfo=UTC)), "now": old._ts(NOW)},
            )
            conn.execute(
                sa.text("INSERT INTO runs (command, status, started_at_utc) VALUES ('ingest', 'ok', :now)"),
                {"now": old._ts(NOW)},
            )
        with old.engine.connect() as conn:
            assert old.schema_version(conn) == 1
        old.close()


def test_previous_release_database_upgrades_in_place(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _v1_database(db_url, monkeypatch)

    upgraded = Store.open(db_url)
    with upgraded.engine.connect() as conn:
        assert upgraded.schema_version(conn) == schema.SCHEMA_VERSION
        assert conn.exec_driver_sql("SELECT value_mwh FROM observations").scalar() == 25055
        assert conn.exec_driver_sql("SELECT count(*) FROM runs WHERE status = 'ok'").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM backfill_chunks").scalar() == 0

    # The upgraded database keeps revision history for the data that was already there.
    frame = pd.DataFrame(
        {
            "series_id": ["EBA.CISO-ALL.D.H"],
            "period_end_utc": pd.to_datetime(["2024-01-01T05:00:00Z"]),
            "value_mwh": [25100.0],
            "quality_flag": ["good"],
            "dataset": ["demand"],
            "area": ["CISO"],
            "counterpart": [""],
        }
    )
    with upgraded.transaction() as conn:
        counts = upgraded.upsert(conn, frame, None, NOW)
    assert (counts.inserted, counts.revised, counts.unchanged) == (0, 1, 0)
    with upgraded.engine.connect() as conn:
        old, new = conn.exec_driver_sql("SELECT old_value_mwh, new_value_mwh FROM revisions").one()
    assert (old, new) == (25055, 25100)
    upgraded.close()


def test_reopening_a_current_database_applies_nothing(db_url: str) -> None:
    Store.open(db_url).close()
    again = Store.open(db_url, migrate=False)
    assert again.migrate() == []
    again.close()


def test_database_from_a_newer_release_is_refused(sqlite_url: str) -> None:
    Store.open(sqlite_url).close()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO gridpulse_schema VALUES (99, 'future', '2030-01-01T00:00:00Z')")
    engine.dispose()
    with pytest.raises(SchemaTooNewError, match="newer than this gridpulse"):
        Store.open(sqlite_url)


def test_runs_recorded_before_v3_keep_their_durations(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """v3 adds runs.elapsed_s (the run's own monotonic time); earlier runs fall back to their
    timestamps, and `duration_s` is a float to 0.1 s either way, on both backends."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", schema.MIGRATIONS[:2])
        patch.setattr(store_module, "SCHEMA_VERSION", 2)
        old = Store.open(db_url)
        old_run = old.start_run("ingest", None, ["PJM"], ["demand"], NOW)
        with old.transaction() as conn:
            conn.execute(
                sa.text("UPDATE runs SET status = 'ok', finished_at_utc = :end WHERE run_id = :id"),
                {"end": old._ts(NOW + timedelta(seconds=90)), "id": old_run},
            )
        old.close()

    upgraded = Store.open(db_url)
    try:
        new_run = upgraded.start_run("ingest", None, ["PJM"], ["demand"], NOW)
        upgraded.finish_run(new_run, "ok", NOW, elapsed_s=2.345)
        durations = {run.run_id: run.duration_s for run in list_runs(upgraded)}
    finally:
        upgraded.close()
    assert durations == {old_run: 90.0, new_run: 2.3}
    assert all(isinstance(d, float) for d in durations.values())
