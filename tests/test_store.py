"""The database layer on SQLite and on a real PostgreSQL: schema, upsert, revisions, ledger, reads."""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from gridpulse_cli.catalog import parse_series_id
from gridpulse_cli.db import LoadCounts, Store
from gridpulse_cli.db.schema import MIGRATIONS, SCHEMA_VERSION
from gridpulse_cli.errors import DatabaseError, SchemaTooNewError
from gridpulse_cli.ledger import finish_run, start_run
from gridpulse_cli.windows import Window, format_utc

T0 = datetime(2024, 1, 1, 0, tzinfo=UTC)
RUN_AT_1 = datetime(2024, 2, 1, 12, 0, 0, tzinfo=UTC)
RUN_AT_2 = datetime(2024, 2, 2, 12, 30, 0, tzinfo=UTC)
TABLES = {"gridpulse_schema", "series", "observations", "revisions", "runs", "sources"}


# ---- helpers ---------------------------------------------------------------------------------


def hour(n: int) -> datetime:
    return T0 + timedelta(hours=n)


def stamp(moment: datetime) -> str:
    return format_utc(moment)


def as_text(value: Any) -> Any:
    """A timestamp column as the export's text, whatever the backend returned."""
    return stamp(value) if isinstance(value, datetime) else value


def frame(rows: Sequence[tuple[str, int, float | None] | tuple[str, int, float | None, str]]) -> pd.DataFrame:
    """Observations from (series_id, hour offset, value[, flag]); flag defaults from the value."""
    records = []
    for row in rows:
        sid, offset, value = row[0], row[1], row[2]
        flag = row[3] if len(row) == 4 else ("missing" if value is None else "good")  # type: ignore[misc]
        key = parse_series_id(sid)
        records.append(
            {
                "series_id": sid,
                "period_end_utc": hour(offset),
                "value_mwh": float("nan") if value is None else float(value),
                "quality_flag": flag,
                "dataset": key.dataset,
                "area": key.area,
                "counterpart": key.counterpart,
            }
        )
    out = pd.DataFrame.from_records(records)
    out["period_end_utc"] = pd.to_datetime(out["period_end_utc"], utc=True)
    out["value_mwh"] = out["value_mwh"].astype("float64")
    return out


def upsert(store: Store, rows: pd.DataFrame, run_id: int | None, now: datetime) -> LoadCounts:
    with store.transaction() as conn:
        return store.upsert(conn, rows, run_id, now)


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def observation(store: Store, sid: str, offset: int) -> dict[str, Any]:
    stmt = sa.text(
        "SELECT o.value_mwh, o.quality_flag, o.first_seen_utc, o.last_changed_utc, o.run_id, o.source_id "
        "FROM observations o JOIN series s ON s.series_key = o.series_key "
        "WHERE s.series_id = :sid AND o.period_end_utc = :period"
    )
    period = store.encode_time(hour(offset))
    with store.engine.connect() as conn:
        row = conn.execute(stmt, {"sid": sid, "period": period}).mappings().one()
    return {k: as_text(v) for k, v in row.items()}


def revisions(store: Store) -> list[dict[str, Any]]:
    stmt = sa.text(
        "SELECT s.series_id, r.period_end_utc, r.old_value_mwh, r.new_value_mwh, r.old_quality_flag, "
        "r.new_quality_flag, r.changed_at_utc, r.run_id FROM revisions r "
        "JOIN series s ON s.series_key = r.series_key ORDER BY s.series_id, r.period_end_utc, r.revision_id"
    )
    with store.engine.connect() as conn:
        return [{k: as_text(v) for k, v in row.items()} for row in conn.execute(stmt).mappings()]


def read_all(
    store: Store,
    window: Window | None = None,
    bas: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    batch_rows: int = 50_000,
) -> list[tuple[Any, ...]]:
    return [row for batch in store.iter_observations(window, bas, datasets, batch_rows) for row in batch]


# ---- schema ------------------------------------------------------------------------------------


def test_schema_is_created_on_first_use_and_versioned(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        with store.engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= TABLES
            assert store.schema_version(conn) == SCHEMA_VERSION
            versions = [v for (v,) in conn.exec_driver_sql("SELECT version FROM gridpulse_schema ORDER BY 1")]
        assert versions == [m.version for m in MIGRATIONS]
        assert versions[-1] == SCHEMA_VERSION
    finally:
        store.close()


def test_reopening_is_a_no_op(db_url: str) -> None:
    Store.open(db_url).close()
    store = Store.open(db_url)
    try:
        upsert(store, frame([("EBA.PJM-ALL.D.H", 1, 100.0)]), None, RUN_AT_1)
        assert store.migrate() == []
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version, applied_at_utc FROM gridpulse_schema").all()
        assert len(rows) == len(MIGRATIONS)
    finally:
        store.close()
    again = Store.open(db_url)
    try:
        assert again.migrate() == []
        assert count(again, "gridpulse_schema") == len(MIGRATIONS)
        assert count(again, "observations") == 1  # re-opening does not touch the data
    finally:
        again.close()


def test_a_newer_schema_is_refused(db_url: str) -> None:
    store = Store.open(db_url)
    with store.transaction() as conn:
        conn.execute(
            sa.text("INSERT INTO gridpulse_schema VALUES (:v, 'from the future', '2099-01-01T00:00:00Z')"),
            {"v": SCHEMA_VERSION + 1},
        )
    store.close()
    with pytest.raises(SchemaTooNewError, match=str(SCHEMA_VERSION + 1)):
        Store.open(db_url)


# ---- upsert ------------------------------------------------------------------------------------

SERIES = ["EBA.PJM-ALL.D.H", "EBA.PJM-ALL.NG.WND.H", "EBA.CISO-BANC.ID.H", "EBA.ERCO-COAS.D.H"]


def sample_frame(hours: int = 24) -> pd.DataFrame:
    rows = [
        (sid, h, float(1000 * i + h) + 0.25 * (h % 3)) for i, sid in enumerate(SERIES) for h in range(hours)
    ]
    rows[5] = (rows[5][0], rows[5][1], None)  # one missing value
    rows[7] = (rows[7][0], rows[7][1], -3.0)  # negative values are real
    return frame(rows)


def test_upsert_is_idempotent(store: Store) -> None:
    data = sample_frame()
    first = upsert(store, data, None, RUN_AT_1)
    assert (first.inserted, first.revised, first.unchanged) == (len(data), 0, 0)
    before = read_all(store)

    second = upsert(store, data, None, RUN_AT_2)
    assert (second.inserted, second.revised, second.unchanged) == (0, 0, len(data))
    assert count(store, "observations") == len(data)
    assert count(store, "series") == len(SERIES)
    assert count(store, "revisions") == 0
    assert read_all(store) == before
    # unchanged rows are not rewritten: last_changed stays at the first load
    assert observation(store, SERIES[0], 3)["last_changed_utc"] == stamp(RUN_AT_1)


def test_stored_values_round_trip_exactly(store: Store) -> None:
    values = [0.0, -3.0, 0.3, 4225.3001, 123456789.125, 1e-4, None]
    upsert(store, frame([("EBA.MISO-ALL.D.H", h, v) for h, v in enumerate(values)]), None, RUN_AT_1)
    got = [(row[2], row[3]) for row in read_all(store)]
    assert got == [(v, "missing" if v is None else "good") for v in values]


def test_changed_value_is_a_revision_keeping_the_old_one(store: Store) -> None:
    run1 = start_run(store, "ingest", None, ["PJM"], ["demand"], RUN_AT_1)
    data = sample_frame()
    upsert(store, data, run1, RUN_AT_1)

    run2 = start_run(store, "ingest", None, ["PJM"], ["demand"], RUN_AT_2)
    changed = data.copy()
    changed.loc[3, "value_mwh"] = 4242.5
    counts = upsert(store, changed, run2, RUN_AT_2)
    assert (counts.inserted, counts.revised, counts.unchanged) == (0, 1, len(data) - 1)
    assert count(store, "observations") == len(data)

    sid, offset = changed.loc[3, "series_id"], 3
    assert revisions(store) == [
        {
            "series_id": sid,
            "period_end_utc": stamp(hour(offset)),
            "old_value_mwh": data.loc[3, "value_mwh"],
            "new_value_mwh": 4242.5,
            "old_quality_flag": "good",
            "new_quality_flag": "good",
            "changed_at_utc": stamp(RUN_AT_2),
            "run_id": run2,
        }
    ]
    row = observation(store, sid, offset)
    assert row["value_mwh"] == 4242.5
    assert row["first_seen_utc"] == stamp(RUN_AT_1)
    assert row["last_changed_utc"] == stamp(RUN_AT_2)
    assert row["run_id"] == run2
    untouched = observation(store, sid, offset + 1)
    assert (untouched["last_changed_utc"], untouched["run_id"]) == (stamp(RUN_AT_1), run1)

    # the same revised data again: nothing more to record
    again = upsert(store, changed, run2, RUN_AT_2 + timedelta(hours=1))
    assert (again.inserted, again.revised, again.unchanged) == (0, 0, len(data))
    assert len(revisions(store)) == 1


def test_null_to_value_value_to_null_and_flag_changes_are_revisions(store: Store) -> None:
    sid = "EBA.SWPP-ALL.TI.H"
    upsert(store, frame([(sid, 0, None), (sid, 1, 50.0), (sid, 2, 60.0), (sid, 3, 70.0)]), 1, RUN_AT_1)
    counts = upsert(
        store,
        frame([(sid, 0, 10.0), (sid, 1, None), (sid, 2, 60.0, "estimated"), (sid, 3, 70.0)]),
        2,
        RUN_AT_2,
    )
    assert (counts.inserted, counts.revised, counts.unchanged) == (0, 3, 1)
    got = [
        (
            r["period_end_utc"],
            r["old_value_mwh"],
            r["new_value_mwh"],
            r["old_quality_flag"],
            r["new_quality_flag"],
        )
        for r in revisions(store)
    ]
    assert got == [
        (stamp(hour(0)), None, 10.0, "missing", "good"),
        (stamp(hour(1)), 50.0, None, "good", "missing"),
        (stamp(hour(2)), 60.0, 60.0, "good", "estimated"),
    ]
    assert {r["run_id"] for r in revisions(store)} == {2}
    assert [(row[2], row[3]) for row in read_all(store)] == [
        (10.0, "good"),
        (None, "missing"),
        (60.0, "estimated"),
        (70.0, "good"),
    ]


def test_new_hours_and_new_series_are_inserted_next_to_existing_ones(store: Store) -> None:
    upsert(store, frame([("EBA.PJM-ALL.D.H", h, 1.0) for h in range(3)]), None, RUN_AT_1)
    counts = upsert(
        store,
        frame([("EBA.PJM-ALL.D.H", h, 1.0) for h in range(5)] + [("EBA.PJM-ALL.DF.H", 0, 2.0)]),
        None,
        RUN_AT_2,
    )
    assert (counts.inserted, counts.revised, counts.unchanged) == (3, 0, 3)
    assert observation(store, "EBA.PJM-ALL.D.H", 4)["first_seen_utc"] == stamp(RUN_AT_2)
    assert count(store, "series") == 2


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as conn:
        store.upsert(conn, sample_frame(), None, RUN_AT_1)
        raise RuntimeError("stop half-way")
    assert count(store, "observations") == 0
    assert count(store, "series") == 0
    # and the store still works afterwards (no stale series keys cached)
    counts = upsert(store, sample_frame(2), None, RUN_AT_1)
    assert counts.inserted == 2 * len(SERIES)


def test_series_rows_describe_the_series(store: Store) -> None:
    upsert(store, frame([(sid, 0, 1.0) for sid in [*SERIES, "EBA.US48-ALL.D.H"]]), None, RUN_AT_1)
    with store.engine.connect() as conn:
        rows = {
            r[0]: tuple(r[1:])
            for r in conn.exec_driver_sql(
                "SELECT series_id, dataset, area, area_type, counterpart FROM series"
            )
        }
    assert rows == {
        "EBA.PJM-ALL.D.H": ("demand", "PJM", "ba", ""),
        "EBA.PJM-ALL.NG.WND.H": ("fuel-mix", "PJM", "ba", "WND"),
        "EBA.CISO-BANC.ID.H": ("interchange", "CISO", "ba", "BANC"),
        "EBA.ERCO-COAS.D.H": ("subregion-demand", "ERCO", "ba", "COAS"),
        "EBA.US48-ALL.D.H": ("demand", "US48", "region", ""),
    }


# ---- run ledger and sources ----------------------------------------------------------------------


def test_run_ledger_records_start_and_finish(store: Store) -> None:
    window = Window(hour(0), hour(24))
    ok = start_run(store, "ingest", window, ["PJM", "CISO"], ["demand", "fuel-mix"], RUN_AT_1)
    failed = start_run(store, "load x.csv", None, [], [], RUN_AT_2)
    assert failed != ok

    def run(run_id: int) -> dict[str, Any]:
        with store.engine.connect() as conn:
            row = (
                conn.execute(sa.text("SELECT * FROM runs WHERE run_id = :r"), {"r": run_id}).mappings().one()
            )
        return {k: as_text(v) for k, v in row.items()}

    started = run(ok)
    assert started["status"] == "running"
    assert started["command"] == "ingest"
    assert started["started_at_utc"] == stamp(RUN_AT_1)
    assert started["finished_at_utc"] is None
    assert (started["window_start_utc"], started["window_end_utc"]) == (stamp(hour(0)), stamp(hour(24)))
    assert (started["bas"], started["datasets"]) == ("PJM,CISO", "demand,fuel-mix")

    finish_run(
        store,
        ok,
        "ok",
        RUN_AT_1 + timedelta(minutes=2),
        fetched=120,
        counts=LoadCounts(inserted=100, revised=5, unchanged=15),
        requests=7,
        retries=2,
    )
    finish_run(store, failed, "failed", RUN_AT_2 + timedelta(seconds=5), error="input.csv:3: bad value")
    done = run(ok)
    assert done["status"] == "ok"
    assert done["finished_at_utc"] == stamp(RUN_AT_1 + timedelta(minutes=2))
    assert (done["rows_fetched"], done["rows_inserted"], done["rows_revised"], done["rows_unchanged"]) == (
        120,
        100,
        5,
        15,
    )
    assert (done["requests"], done["retries"], done["error"]) == (7, 2, None)
    bad = run(failed)
    assert (bad["status"], bad["error"], bad["window_start_utc"]) == (
        "failed",
        "input.csv:3: bad value",
        None,
    )


def test_sources_archive_is_gzip_without_the_key(store: Store) -> None:
    body = json.dumps(
        {"response": {"total": "1", "data": [{"period": "2024-01-01T01", "value": "5"}]}, "request": {}}
    ).encode()
    params = {"frequency": "hourly", "facets[respondent][]": ["PJM"], "start": "2024-01-01T00"}
    run_id = start_run(store, "ingest", None, ["PJM"], ["demand"], RUN_AT_1)
    with store.transaction() as conn:
        source_id = store.archive(
            conn, run_id, "eia-response", "region-data", params, gzip.compress(body), 1, "abc123", RUN_AT_1
        )
        store.upsert(conn, frame([("EBA.PJM-ALL.D.H", 1, 5.0)]), run_id, RUN_AT_1, source_id)
    with store.engine.connect() as conn:
        row = (
            conn.execute(sa.text("SELECT * FROM sources WHERE source_id = :s"), {"s": source_id})
            .mappings()
            .one()
        )
    stored = bytes(row["body_gzip"])
    assert stored[:2] == b"\x1f\x8b"  # a gzip member
    assert gzip.decompress(stored) == body
    stored_params = row["params_json"]
    stored_params = json.loads(stored_params) if isinstance(stored_params, str) else stored_params
    assert stored_params == params
    assert "api_key" not in json.dumps(stored_params)
    assert (row["run_id"], row["kind"], row["route"], row["row_count"], row["sha256"]) == (
        run_id,
        "eia-response",
        "region-data",
        1,
        "abc123",
    )
    assert observation(store, "EBA.PJM-ALL.D.H", 1)["source_id"] == source_id


# ---- reads ---------------------------------------------------------------------------------------


def test_iter_observations_orders_and_filters(store: Store) -> None:
    series = [
        "EBA.PJM-ALL.D.H",
        "EBA.CISO-ALL.D.H",
        "EBA.CISO-ALL.NG.SUN.H",
        "EBA.MISO-PJM.ID.H",
        "EBA.PJM-MISO.ID.H",
        "EBA.ERCO-COAS.D.H",
    ]
    rows = [(sid, h, float(h)) for sid in series for h in range(-3, 30)]
    random.Random(7).shuffle(rows)
    upsert(store, frame(rows), None, RUN_AT_1)

    everything = read_all(store, batch_rows=17)  # several batches
    keys = [(r[0], r[1]) for r in everything]
    assert keys == sorted(keys)
    assert len(everything) == len(rows)
    assert everything[0][:4] == ("EBA.CISO-ALL.D.H", stamp(hour(-3)), -3.0, "good")
    assert everything[0][4:] == ("demand", "CISO", "")

    window = Window(hour(0), hour(24))
    in_window = read_all(store, window=window)
    assert {r[1] for r in in_window} == {stamp(hour(h)) for h in range(24)}  # half-open: hour 24 excluded
    assert len(in_window) == 24 * len(series)

    pjm = read_all(store, window=window, bas=["PJM"])
    assert {r[0] for r in pjm} == {"EBA.PJM-ALL.D.H", "EBA.PJM-MISO.ID.H"}
    assert {r[5] for r in pjm} == {"PJM"}

    demand = read_all(store, datasets=["demand", "subregion-demand"])
    assert {r[0] for r in demand} == {"EBA.PJM-ALL.D.H", "EBA.CISO-ALL.D.H", "EBA.ERCO-COAS.D.H"}

    both = read_all(store, window=Window(hour(5), hour(7)), bas=["CISO", "ERCO"], datasets=["demand"])
    assert [(r[0], r[1]) for r in both] == [
        ("EBA.CISO-ALL.D.H", stamp(hour(5))),
        ("EBA.CISO-ALL.D.H", stamp(hour(6))),
    ]
    assert read_all(store, window=Window(hour(100), hour(200))) == []


# ---- unusable SQLite locations -------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["under /proc", "parent is a file", "path is a directory", "read-only directory"],
)
def test_unwritable_sqlite_path_is_a_database_error(tmp_path: Path, where: str) -> None:
    if where == "under /proc":
        path = Path("/proc/gridpulse-test/gridpulse.db")
    elif where == "parent is a file":
        (tmp_path / "file").write_text("not a folder")
        path = tmp_path / "file" / "gridpulse.db"
    elif where == "path is a directory":
        path = tmp_path / "dir.db"
        path.mkdir()
    elif os.geteuid() == 0:
        # root writes through permission bits; sysfs refuses new files even to root
        path = Path("/sys/gridpulse-test.db")
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
        path = readonly / "gridpulse.db"
    try:
        with pytest.raises(DatabaseError) as caught:
            Store.open(f"sqlite:///{path}")
    finally:
        if path.parent == tmp_path / "ro":
            path.parent.chmod(0o755)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path.parent) in message or str(path) in message
