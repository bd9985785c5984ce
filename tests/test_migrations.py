"""Schema migrations: a database made by the previous release (schema v1) upgrades in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from gridpulse_cli.db import schema
from gridpulse_cli.db import store as store_module
from gridpulse_cli.db.store import Store
from gridpulse_cli.errors import SchemaTooNewError
from gridpulse_cli.ledger import finish_run, start_run
from gridpulse_cli.runs import list_runs
from tests.helpers import v1_database

NOW = datetime(2024, 2, 1, tzinfo=UTC)


def test_previous_release_database_upgrades_in_place(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    v1_database(db_url, monkeypatch)

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
        old_run = start_run(old, "ingest", None, ["PJM"], ["demand"], NOW)
        with old.transaction() as conn:
            conn.execute(
                sa.text("UPDATE runs SET status = 'ok', finished_at_utc = :end WHERE run_id = :id"),
                {"end": old.encode_time(NOW + timedelta(seconds=90)), "id": old_run},
            )
        old.close()

    upgraded = Store.open(db_url)
    try:
        new_run = start_run(upgraded, "ingest", None, ["PJM"], ["demand"], NOW)
        finish_run(upgraded, new_run, "ok", NOW, elapsed_s=2.345)
        durations = {run.run_id: run.duration_s for run in list_runs(upgraded)}
    finally:
        upgraded.close()
    assert durations == {old_run: 90.0, new_run: 2.3}
    assert all(isinstance(d, float) for d in durations.values())
