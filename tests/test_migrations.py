"""Schema migrations: a database made by the previous release (schema v1) upgrades in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from gridpulse_cli.bulkfiles import read_bulk_file
from gridpulse_cli.bulkload import run_bulk_files
from gridpulse_cli.db import schema
from gridpulse_cli.db import store as store_module
from gridpulse_cli.db.store import Store
from gridpulse_cli.errors import SchemaTooNewError
from gridpulse_cli.ledger import finish_run, start_run
from gridpulse_cli.runs import list_runs
from testing.bulk import AEC, imputed_copy
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


def test_v5_turns_estimated_bulk_file_hours_into_eia_imputed_findings(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Up to v4 a six-month file's imputed hours were stored with flag `estimated`; v5 makes them
    `good` (`missing` without a value) with an `eia-imputed` finding, and invents no revisions.
    Reloading the file then fills in EIA's imputed value."""
    edited = imputed_copy(tmp_path / AEC.name, AEC, {(4, "Demand (MW)"): "470"})  # reported 455 at 09Z
    frame = pd.concat(list(read_bulk_file(edited)), ignore_index=True)
    imputed_hour = pd.Timestamp("2020-07-01T09:00:00Z")
    frame.loc[
        (frame["series_id"] == "EBA.AEC-ALL.D.H") & (frame["period_end_utc"] == imputed_hour), "quality_flag"
    ] = "estimated"  # what v4's bulkfiles.py stored
    empty = (frame["series_id"] == "EBA.AEC-ALL.DF.H") & (frame["period_end_utc"] == imputed_hour)
    frame.loc[empty, ["value_mwh", "quality_flag"]] = [float("nan"), "estimated"]  # never made; handled
    typed = frame[frame["series_id"] == "EBA.AEC-ALL.NG.H"].assign(
        series_id="EBA.AECI-ALL.NG.H", area="AECI", quality_flag="estimated"
    )  # `load` keeps the flag its input file gives
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", schema.MIGRATIONS[:4])
        patch.setattr(store_module, "SCHEMA_VERSION", 4)
        old = Store.open(db_url)
        with old.transaction() as conn:
            bulk = old.archive(conn, None, "bulk-file", AEC.name, {"file": AEC.name}, b"", 0, "", NOW)
            loaded = old.archive(
                conn, None, "load-input", "observations-csv", {"input": "x"}, b"", 0, "", NOW
            )
            old.upsert(conn, frame, None, NOW, bulk)
            old.upsert(conn, typed, None, NOW, loaded)
        old.close()

    upgraded = Store.open(db_url)
    try:
        flags = dict(
            upgraded.read(
                "SELECT quality_flag, count(*) FROM observations o JOIN series s ON s.series_key = o.series_key "
                "GROUP BY quality_flag"
            )
        )
        assert flags == {"good": 71, "missing": 1, "estimated": 9}
        found = upgraded.read("SELECT check_name, detail, found_at_utc, run_id FROM findings")
        assert len(found) == 1
        check, detail, found_at, run_id = found[0]
        assert (check, run_id) == ("eia-imputed", None)
        assert "EIA imputed this hour in its six-month file" in detail and "reload the file" in detail
        assert upgraded.decode_time(found_at) is not None
        assert upgraded.findings(None, ["AEC"], ["demand"])[0][:2] == ("EBA.AEC-ALL.D.H", imputed_hour)
        assert upgraded.read("SELECT count(*) FROM revisions")[0][0] == 0  # a reinterpretation
        assert (
            upgraded.read("SELECT count(*) FROM observations WHERE last_changed_utc <> first_seen_utc")[0][0]
            == 0
        )

        report = run_bulk_files(upgraded, [edited], now=lambda: NOW + timedelta(days=1))
        assert report.findings == 0  # the same finding, re-worded
        revised = upgraded.revisions(None, None, None)
        assert [(r[0], r[1]) for r in revised] == [
            ("EBA.AEC-ALL.DF.H", imputed_hour)
        ]  # the cell emptied above
        assert upgraded.findings(None, ["AEC"], None) == [
            (
                "EBA.AEC-ALL.D.H",
                imputed_hour.to_pydatetime(),
                "eia-imputed",
                "eia-imputed: EIA's adjusted series has 470 MWh for this hour",
            )
        ]
    finally:
        upgraded.close()
