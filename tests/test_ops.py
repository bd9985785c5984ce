"""Operating gridpulse: `gaps`, `backfill --gaps`, `health`, `runs`, the writer lock and logging.

Time-dependent commands run with GRIDPULSE_NOW pinned to the end of the data the stub serves,
so every expectation (what is due, what is fresh) is exact. Storage-facing tests run on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gridpulse_cli.backfill import plan_gap_chunks, run_backfill
from gridpulse_cli.catalog import DATASETS
from gridpulse_cli.errors import EIARequestError, ExitCode
from gridpulse_cli.gaps import Gap, find_gaps, gap_windows
from gridpulse_cli.health import check_runs
from gridpulse_cli.lock import writer_lock
from gridpulse_cli.pipeline import run_ingest
from gridpulse_cli.runs import list_runs
from gridpulse_cli.store import Store
from gridpulse_cli.windows import Window, floor_hour
from tests.eia_stub import EIAStub, make_fuel_rows, make_interchange_rows, make_region_rows
from tests.test_backfill import (
    assert_exact,
    chunk_identity,
    client_for,
    error_lines,
    expected_for,
    gp,
    gp_start,
    ok,
    request_identity,
    run_rows,
    stored,
)

HOUR = timedelta(hours=1)
OPS_BAS = ["PJM", "CISO"]
OPS_DATASETS = ["demand", "fuel-mix", "interchange"]
# What these tests keep current: health grades exactly these pairs (the default is 5 BAs x 7 datasets).
WATCHED = {"GRIDPULSE_BA": ",".join(OPS_BAS), "GRIDPULSE_DATASETS": ",".join(OPS_DATASETS)}
OPS_WINDOW = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC))
FIRST_HOUR, LAST_HOUR = "2024-01-01T00", "2024-01-04T23"  # served, inclusive
NOW = datetime(2024, 1, 5, tzinfo=UTC)  # the data's end: the newest hour is just published
NOW_TEXT = "2024-01-05T00:00:00Z"
WINDOW_ARGS = ["--from", "2024-01-01", "--to", "2024-01-05"]
PAIRS = {"PJM": ["MISO", "NYIS"], "CISO": ["BPAT"]}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(first: str, last: str) -> set[str]:
    """EIA periods from `first` to `last` inclusive."""
    start = datetime.strptime(first, "%Y-%m-%dT%H")
    count = int((datetime.strptime(last, "%Y-%m-%dT%H") - start) / HOUR) + 1
    return {(start + i * HOUR).strftime("%Y-%m-%dT%H") for i in range(count)}


def serve_ops(stub: EIAStub) -> None:
    """Four days (2024-01-01T00..01-04T23) of demand, fuel mix and interchange for PJM and CISO."""
    stub.set_rows("region-data", make_region_rows(OPS_BAS, FIRST_HOUR, LAST_HOUR, types=("D",)))
    stub.set_rows("fuel-type-data", make_fuel_rows(OPS_BAS, FIRST_HOUR, LAST_HOUR))
    stub.set_rows("interchange-data", make_interchange_rows(PAIRS, FIRST_HOUR, LAST_HOUR))


def ops_expected(stub: EIAStub) -> dict[tuple[str, str], str | None]:
    return expected_for(
        stub,
        [
            (route, ba, ["D"] if route == "region-data" else None, OPS_WINDOW)
            for route in ("region-data", "fuel-type-data", "interchange-data")
            for ba in OPS_BAS
        ],
    )


def library_ingest(db_url: str, stub: EIAStub, now: datetime = NOW) -> None:
    store = Store.open(db_url)
    try:
        run_ingest(store, client_for(stub), OPS_BAS, OPS_DATASETS, OPS_WINDOW, now=lambda: now)
    finally:
        store.close()


def in_parallel(
    *calls: tuple[Sequence[str], Mapping[str, str | None]],
) -> list[subprocess.CompletedProcess[str]]:
    """Run several `gp(args, env=...)` at once (start-up dominates their cost)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: gp(*call[0], env=call[1]), calls))


# ---- gaps -----------------------------------------------------------------------------------------

# What the stub leaves out, as (route, area field value, facet column, facet value, first, last):
DROPS: list[tuple[str, str, str, str, str, str]] = [
    ("region-data", "PJM", "type", "D", "2024-01-02T05", "2024-01-02T07"),
    ("region-data", "CISO", "type", "D", "2024-01-03T10", "2024-01-03T10"),
    ("region-data", "CISO", "type", "D", "2024-01-03T12", "2024-01-03T13"),
    ("fuel-type-data", "PJM", "fueltype", "COL", "2024-01-01T00", "2024-01-01T02"),  # the series' start
    ("fuel-type-data", "PJM", "fueltype", "NG", "2024-01-01T20", "2024-01-02T01"),
    ("fuel-type-data", "CISO", "fueltype", "SUN", "2024-01-02T14", "2024-01-02T14"),
    # fuel mix is published about a day late: the last 22 hours are not due yet
    ("fuel-type-data", "CISO", "fueltype", "WND", "2024-01-04T02", "2024-01-04T23"),
    ("interchange-data", "PJM", "toba", "NYIS", "2024-01-02T03", "2024-01-02T04"),
    ("interchange-data", "CISO", "toba", "BPAT", "2024-01-02T20", "2024-01-02T20"),
    # interchange is published about two days late: only the start of this run is due
    ("interchange-data", "PJM", "toba", "MISO", "2024-01-02T20", "2024-01-04T23"),
]
# The last interchange hour due at NOW: 2024-01-02T22 with gridpulse's 50 h lag (48 h in the README).
LAST_DUE_INTERCHANGE = floor_hour(NOW - DATASETS["interchange"].lag).strftime("%Y-%m-%dT%H")
NULLS = [("fuel-type-data", "CISO", "fueltype", "SUN", "2024-01-02T12", "2024-01-02T13")]
AREA = {"region-data": "respondent", "fuel-type-data": "respondent", "interchange-data": "fromba"}


def make_holes(stub: EIAStub) -> None:
    for route, area, column, value, first, last in DROPS:
        wanted = hours(first, last)
        dropped = stub.drop(
            route,
            lambda r, a=area, c=column, v=value, w=wanted, f=AREA[route]: (
                r[f] == a and r[c] == v and r["period"] in w
            ),
        )
        assert dropped == len(wanted)
    for route, area, column, value, first, last in NULLS:
        wanted = hours(first, last)
        changed = stub.revise(
            route,
            lambda r, a=area, c=column, v=value, w=wanted, f=AREA[route]: (
                r[f] == a and r[c] == v and r["period"] in w
            ),
            None,
        )
        assert changed == len(wanted)


def gap_json(series_id: str, first: str, last: str, reason: str = "absent") -> dict[str, Any]:
    return {
        "series_id": series_id,
        "first_missing": f"{first}:00:00Z",
        "last_missing": f"{last}:00:00Z",
        "hours": len(hours(first, last)),
        "reason": reason,
    }


EXPECTED_GAPS = [
    gap_json("EBA.CISO-ALL.D.H", "2024-01-03T10", "2024-01-03T10"),
    gap_json("EBA.CISO-ALL.D.H", "2024-01-03T12", "2024-01-03T13"),
    gap_json("EBA.CISO-ALL.NG.SUN.H", "2024-01-02T12", "2024-01-02T13", "null value"),
    gap_json("EBA.CISO-ALL.NG.SUN.H", "2024-01-02T14", "2024-01-02T14"),
    gap_json("EBA.CISO-BPAT.ID.H", "2024-01-02T20", "2024-01-02T20"),
    gap_json("EBA.PJM-ALL.D.H", "2024-01-02T05", "2024-01-02T07"),
    gap_json("EBA.PJM-ALL.NG.COL.H", "2024-01-01T00", "2024-01-01T02"),
    gap_json("EBA.PJM-ALL.NG.NG.H", "2024-01-01T20", "2024-01-02T01"),
    gap_json("EBA.PJM-MISO.ID.H", "2024-01-02T20", LAST_DUE_INTERCHANGE),
    gap_json("EBA.PJM-NYIS.ID.H", "2024-01-02T03", "2024-01-02T04"),
]
NOT_DUE = {("EBA.CISO-ALL.NG.WND.H", f"{h}:00:00Z") for h in hours("2024-01-04T02", "2024-01-04T23")} | {
    ("EBA.PJM-MISO.ID.H", f"{h}:00:00Z")
    for h in hours("2024-01-02T20", "2024-01-04T23") - hours("2024-01-02T20", LAST_DUE_INTERCHANGE)
}


def test_the_gap_scenario_straddles_the_interchange_lag() -> None:
    assert "2024-01-02T21" <= LAST_DUE_INTERCHANGE <= "2024-01-03T02"  # about two days before NOW


def test_gaps_reports_exactly_the_missing_due_hours_and_backfill_gaps_fills_them(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_ops(stub)
    complete = ops_expected(stub)
    originals = {route: stub.rows(route) for route in AREA}
    make_holes(stub)
    library_ingest(db_url, stub)
    env = {"GRIDPULSE_NOW": NOW_TEXT, **WATCHED}

    result, health = in_parallel(
        (["gaps", "--json", "--check", *WINDOW_ARGS, "--db", db_url], env),
        (["health", "--json", "--db", db_url], env),
    )
    assert result.returncode == ExitCode.CHECK_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout) == EXPECTED_GAPS

    # health warns about the gaps (fresh data otherwise) and a warning is not a failure
    assert health.returncode == 0, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["status"] == "warn"
    gaps_check = next(c for c in report["checks"] if c["name"] == "gaps")
    missing = sum(g["hours"] for g in EXPECTED_GAPS)
    series = len({g["series_id"] for g in EXPECTED_GAPS})
    assert gaps_check["status"] == "warn"
    assert gaps_check["detail"].startswith(f"{missing} missing hours in {series} series"), gaps_check
    assert {c["status"] for c in report["checks"] if c["name"] != "gaps"} == {"ok"}

    # the hours inside each dataset's lag were held back, not overlooked: two days later they are gaps
    store = Store.open(db_url)
    try:
        later = {
            (g.series_id, g.first_missing, g.last_missing)
            for g in find_gaps(store, None, None, OPS_WINDOW, NOW + timedelta(days=2, hours=3))
        }
        before = find_gaps(store, None, None, Window(NOW + HOUR - timedelta(days=30), NOW + HOUR), NOW)
        chunks = plan_gap_chunks(before)
    finally:
        store.close()
    assert ("EBA.PJM-MISO.ID.H", "2024-01-02T20:00:00Z", "2024-01-04T23:00:00Z") in later
    assert ("EBA.CISO-ALL.NG.WND.H", "2024-01-04T02:00:00Z", "2024-01-04T23:00:00Z") in later
    assert [g.as_json() for g in before] == EXPECTED_GAPS

    # EIA publishes the missing hours after all
    for route, rows in originals.items():
        stub.set_rows(route, rows)
    stub.reset_log()
    filled = gp("backfill", "--gaps", "--db", db_url, env=env)
    ok(filled)
    total = sum(g["hours"] for g in EXPECTED_GAPS)
    assert f"filled {total} of {total} missing hours" in filled.stderr
    requests = stub.requests
    assert sorted(request_identity(r) for r in requests) == sorted(chunk_identity(c) for c in chunks)
    # one request per BA and route unless the windows are apart; never overlapping ones
    by_group: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for route, area, start, end in map(request_identity, requests):
        by_group.setdefault((route, area), []).append((start, end))
    assert set(by_group) == {(route, ba) for route in AREA for ba in OPS_BAS}
    for spans in by_group.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), spans

    check = gp("gaps", "--check", "--db", db_url, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    # every reported hour now holds EIA's value; hours not yet due were left alone
    assert_exact(stored(db_url), {k: v for k, v in complete.items() if k not in NOT_DUE})


def gap(series_id: str, first: str, last: str, reason: str = "absent") -> Gap:
    return Gap(**gap_json(series_id, first, last, reason))


def window(first: str, end: str) -> Window:
    return Window(
        datetime.strptime(first, "%Y-%m-%dT%H").replace(tzinfo=UTC),
        datetime.strptime(end, "%Y-%m-%dT%H").replace(tzinfo=UTC),
    )


def test_gap_windows_merge_overlapping_and_touching_runs_per_dataset_and_ba() -> None:
    gaps = [
        gap("EBA.PJM-ALL.NG.COL.H", "2024-01-01T05", "2024-01-01T07"),
        gap("EBA.PJM-ALL.NG.NG.H", "2024-01-01T06", "2024-01-01T09"),  # overlaps
        gap("EBA.PJM-ALL.NG.SUN.H", "2024-01-01T10", "2024-01-01T10", "null value"),  # touches
        gap("EBA.PJM-ALL.NG.WND.H", "2024-01-03T00", "2024-01-03T00"),  # two days later
        gap("EBA.CISO-ALL.NG.SUN.H", "2024-01-01T05", "2024-01-01T07"),  # another BA
        gap("EBA.PJM-ALL.D.H", "2024-01-01T05", "2024-01-01T05"),  # another dataset
        gap("EBA.PJM-MISO.ID.H", "2024-01-01T05", "2024-01-01T06"),
        gap("EBA.PJM-NYIS.ID.H", "2024-01-01T05", "2024-01-01T06"),  # the same hours, another series
    ]
    assert gap_windows(gaps) == [
        ("demand", "PJM", window("2024-01-01T05", "2024-01-01T06")),
        ("fuel-mix", "CISO", window("2024-01-01T05", "2024-01-01T08")),
        ("fuel-mix", "PJM", window("2024-01-01T05", "2024-01-01T11")),
        ("fuel-mix", "PJM", window("2024-01-03T00", "2024-01-03T01")),
        ("interchange", "PJM", window("2024-01-01T05", "2024-01-01T07")),
    ]


def test_plan_gap_chunks_asks_once_per_ba_and_route_for_overlapping_gaps() -> None:
    gaps = [
        gap("EBA.PJM-ALL.D.H", "2024-01-01T05", "2024-01-01T06"),
        gap("EBA.PJM-ALL.NG.H", "2024-01-01T06", "2024-01-01T08"),  # same route, other type
        gap("EBA.PJM-ALL.TI.H", "2024-01-01T09", "2024-01-01T09"),  # touches
        gap("EBA.CISO-ALL.D.H", "2024-01-01T05", "2024-01-01T05"),
        gap("EBA.PJM-ALL.NG.COL.H", "2024-01-01T05", "2024-01-01T05"),
        gap("EBA.PJM-ALL.NG.NUC.H", "2024-01-01T05", "2024-01-01T05"),
    ]
    chunks = plan_gap_chunks(gaps)
    described = sorted(
        (c.route.name, tuple(c.facets[c.route.area_facet]), tuple(sorted(c.facets.get("type", []))), c.window)
        for c in chunks
    )
    assert described == [
        ("fuel-type-data", ("PJM",), (), window("2024-01-01T05", "2024-01-01T06")),
        ("region-data", ("CISO",), ("D",), window("2024-01-01T05", "2024-01-01T06")),
        ("region-data", ("PJM",), ("D", "NG", "TI"), window("2024-01-01T05", "2024-01-01T10")),
    ]
    # a month-long gap is split into page-sized requests (fuel mix: 500 hours each)
    long = plan_gap_chunks([gap("EBA.PJM-ALL.NG.COL.H", "2024-01-01T00", "2024-01-31T23")])
    assert [c.window.hours for c in long] == [500, 244]


def test_plan_gap_chunks_covers_nearby_gaps_of_one_ba_and_route_in_one_request() -> None:
    # four single missing hours of PJM demand, every other hour: 7 hours in all, one page
    gaps = [gap("EBA.PJM-ALL.D.H", f"2024-01-01T{h:02d}", f"2024-01-01T{h:02d}") for h in (5, 7, 9, 11)]
    chunks = plan_gap_chunks(gaps)
    assert len(chunks) == 1
    assert chunks[0].window == window("2024-01-01T05", "2024-01-01T12")


# ---- health ---------------------------------------------------------------------------------------


def health_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"status", "checks"}
    assert report["status"] in ("ok", "warn", "fail")
    for check in report["checks"]:
        freshness = check["name"].startswith("freshness ")
        assert set(check) == {"name", "status", "detail"} | ({"behind_s"} if freshness else set())
        assert check["status"] in ("ok", "warn", "fail") and isinstance(check["detail"], str)
    worst = max((c["status"] for c in report["checks"]), key=["ok", "warn", "fail"].index)
    assert report["status"] == worst
    return report


def statuses(report: Mapping[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_health_reports_database_key_freshness_and_runs(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_ops(stub)
    library_ingest(db_url, stub)
    args = ["health", "--json", "--db", db_url]
    fresh, later = in_parallel(
        (args, {"GRIDPULSE_NOW": NOW_TEXT, **WATCHED}),
        (args, {"GRIDPULSE_NOW": "2024-01-07T00:00:00Z", **WATCHED}),
    )

    report = health_json(fresh)
    assert fresh.returncode == 0, fresh.stdout
    assert report["status"] in ("ok", "warn")
    found = statuses(report)
    assert found["database"] == found["api-key"] == found["runs"] == "ok"
    freshness = {name: s for name, s in found.items() if name.startswith("freshness")}
    assert set(freshness) == {f"freshness {ba} {d}" for ba in OPS_BAS for d in OPS_DATASETS}
    assert set(freshness.values()) == {"ok"}

    # two days without an ingest: demand and fuel mix are stale; interchange (50 h lag) is not due yet
    report = health_json(later)
    assert later.returncode == ExitCode.CHECK_FAILED
    found = statuses(report)
    for ba in OPS_BAS:
        assert found[f"freshness {ba} demand"] == "fail"
        assert found[f"freshness {ba} fuel-mix"] == "fail"
        assert found[f"freshness {ba} interchange"] == "ok"
    assert found["database"] == found["api-key"] == found["runs"] == "ok"

    # failing runs: two in a row warn, three fail
    store = Store.open(db_url)
    try:
        for attempt in range(3):
            stub.fail_next("http400")  # one chunk, one request: no fetch left running to take the next fault
            with pytest.raises(EIARequestError):
                run_ingest(store, client_for(stub), ["PJM"], ["demand"], OPS_WINDOW, now=lambda: NOW)
            if attempt == 1:
                assert check_runs(store).status == "warn"
    finally:
        store.close()
    # ... and without EIA_API_KEY the api-key check fails too (the data is still fresh)
    failing = gp(*args, env={"GRIDPULSE_NOW": NOW_TEXT, "EIA_API_KEY": None, **WATCHED})
    report = health_json(failing)
    assert failing.returncode == ExitCode.CHECK_FAILED
    assert report["status"] == "fail"
    runs = next(c for c in report["checks"] if c["name"] == "runs")
    assert runs["status"] == "fail" and "3 consecutive" in runs["detail"], runs
    assert sorted(name for name, s in statuses(report).items() if s == "fail") == ["api-key", "runs"]


def test_health_fails_cleanly_when_postgresql_is_unreachable(cli_env: dict[str, str]) -> None:
    result = gp("health", "--json", "--db", "postgresql://postgres@127.0.0.1:1/gridpulse")
    assert result.returncode == ExitCode.CHECK_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    report = health_json(result)
    database = next(c for c in report["checks"] if c["name"] == "database")
    assert database["status"] == "fail" and "127.0.0.1" in database["detail"], database
    assert report["status"] == "fail"


# ---- runs -----------------------------------------------------------------------------------------


def ticking(start: datetime) -> Any:
    moment = [start]

    def now() -> datetime:
        moment[0] += timedelta(seconds=1)
        return moment[0]

    return now


def test_runs_lists_the_newest_runs_first_with_their_outcome(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_ops(stub)
    bf_window = Window(utc(2024, 1, 2), utc(2024, 1, 3))
    store = Store.open(db_url)
    try:
        now = ticking(NOW)
        run_ingest(store, client_for(stub), ["PJM"], ["demand"], OPS_WINDOW, now=now)
        stub.fail_next("http400")
        with pytest.raises(EIARequestError):
            run_ingest(store, client_for(stub), ["CISO"], ["demand"], OPS_WINDOW, now=now)
        run_backfill(store, client_for(stub), ["CISO"], ["fuel-mix"], bf_window, end_as_given="x", now=now)
    finally:
        store.close()

    runs = json.loads(ok(gp("runs", "--json", "--last", "2", "--db", db_url)))
    assert [(r["run_id"], r["command"], r["status"]) for r in runs] == [
        (3, "backfill", "ok"),
        (2, "ingest", "failed"),
    ]
    backfill, failed = runs
    for run in runs:
        assert TIME_RE.match(run["started_at"]) and TIME_RE.match(run["finished_at"])
        assert run["finished_at"] > run["started_at"]
        # the run's own elapsed time (not the ticking clock's), a float to 0.1 s on both backends
        assert isinstance(run["duration_s"], float) and 0 <= run["duration_s"] < 30
        assert run["duration_s"] == round(run["duration_s"], 1)
    assert (backfill["window_start"], backfill["window_end"]) == (
        "2024-01-02T00:00:00Z",
        "2024-01-03T00:00:00Z",
    )
    assert (backfill["bas"], backfill["datasets"]) == ("CISO", "fuel-mix")
    assert backfill["rows_fetched"] == backfill["rows_inserted"] == 24 * 8
    assert (backfill["rows_revised"], backfill["rows_unchanged"], backfill["requests"]) == (0, 0, 1)
    assert backfill["error"] is None
    assert (failed["window_start"], failed["window_end"]) == ("2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z")
    assert failed["rows_inserted"] == 0 and "400" in failed["error"]
    store = Store.open(db_url)
    try:
        assert [r.run_id for r in list_runs(store, 20)] == [3, 2, 1]
        assert [r.as_json() for r in list_runs(store, 2)] == runs
    finally:
        store.close()


# ---- the writer lock ------------------------------------------------------------------------------

INGEST_ARGS = ["ingest", "--ba", "PJM,CISO", "--dataset", "demand,fuel-mix", *WINDOW_ARGS]


class Holder:
    """Holds the writer lock from a thread, inside a 'running' run, as a live writer would."""

    def __init__(self, db_url: str) -> None:
        self.store = Store.open(db_url)
        self.acquired, self.release = threading.Event(), threading.Event()
        self.run_id = 0
        self.released_at = 0.0
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with writer_lock(self.store, 5):
            self.run_id = self.store.start_run("ingest", OPS_WINDOW, ["PJM"], ["demand"], NOW)
            self.acquired.set()
            self.release.wait(30)
            self.store.finish_run(self.run_id, "ok", NOW)
            self.released_at = time.monotonic()

    def __enter__(self) -> Holder:
        self.thread.start()
        assert self.acquired.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)
        self.store.close()


def test_a_second_writer_waits_for_the_lock_or_gives_up_naming_the_holder(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_ops(stub)
    with Holder(db_url) as holder:
        impatient = gp_start(*INGEST_ARGS, "--db", db_url, env={"GRIDPULSE_LOCK_TIMEOUT": "1"})
        patient = gp_start(*INGEST_ARGS, "--db", db_url, env={"GRIDPULSE_LOCK_TIMEOUT": "60"})
        out, err = impatient.communicate(timeout=30)
        assert impatient.returncode == ExitCode.LOCKED, err
        assert out == "" and "Traceback" not in err
        errors = error_lines(err)
        assert len(errors) == 1, err
        assert f"run {holder.run_id} (ingest, pid {os.getpid()} " in errors[0], errors[0]
        assert "locked" in errors[0], errors[0]
        time.sleep(0.5)  # the patient writer, started with the impatient one, is waiting by now
        assert patient.poll() is None, patient.communicate()
    out, err = patient.communicate(timeout=60)
    finished = time.monotonic()
    assert patient.returncode == 0, err
    assert finished > holder.released_at  # it did not finish while the lock was held
    runs = run_rows(db_url)
    assert [(r["run_id"], r["status"]) for r in runs] == [(holder.run_id, "ok"), (holder.run_id + 1, "ok")]
    assert_exact(stored(db_url), expected_two_datasets(stub))


def test_a_writer_that_gives_up_on_the_lock_prints_exactly_one_line(
    sqlite_url: str, cli_env: dict[str, str]
) -> None:
    with Holder(sqlite_url) as holder:
        result = gp("ingest", "--db", sqlite_url, env={"GRIDPULSE_LOCK_TIMEOUT": "1"})
    assert result.returncode == ExitCode.LOCKED
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gridpulse: error:"), result.stderr
    assert f"run {holder.run_id} (ingest" in lines[0]


def expected_two_datasets(stub: EIAStub) -> dict[tuple[str, str], str | None]:
    return expected_for(
        stub,
        [
            (route, ba, ["D"] if route == "region-data" else None, OPS_WINDOW)
            for route in ("region-data", "fuel-type-data")
            for ba in OPS_BAS
        ],
    )


def test_two_ingests_started_together_both_finish_without_duplicates(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_ops(stub)
    stub.latency = 0.05
    first, second = in_parallel(([*INGEST_ARGS, "--db", db_url], {}), ([*INGEST_ARGS, "--db", db_url], {}))
    ok(first)
    ok(second)
    exported = stored(db_url)  # parse_export fails on a repeated (series, hour)
    assert_exact(exported, expected_two_datasets(stub))
    runs = run_rows(db_url)
    assert [r["status"] for r in runs] == ["ok", "ok"]
    assert sorted(r["rows_inserted"] for r in runs) == [0, len(exported)]
    assert sum(r["rows_unchanged"] for r in runs) == len(exported)


# ---- logging --------------------------------------------------------------------------------------

PLAIN_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .+$"
)


def test_log_formats_levels_and_quiet(stub: EIAStub, cli_env: dict[str, str], tmp_path: Path) -> None:
    stub.set_rows("region-data", make_region_rows(["PJM"], "2024-01-01T00", "2024-01-02T00", types=("D",)))
    args = ["--ba", "PJM", "--dataset", "demand", "--from", "2024-01-01", "--to", "2024-01-02"]

    def db(name: str) -> list[str]:
        return ["--db", f"sqlite:///{tmp_path / name}.db"]

    as_json, quiet, warning, plain = in_parallel(
        (["--log-format", "json", "ingest", *args, *db("json")], {}),
        (["-q", "ingest", *args, *db("quiet")], {}),
        (["ingest", *args, *db("warning")], {"GRIDPULSE_LOG_LEVEL": "WARNING"}),
        (["ingest", *args, *db("plain")], {}),
    )
    for result in (as_json, quiet, warning, plain):
        assert ok(result) == ""  # data to stdout, logs to stderr: ingest writes no data

    lines = as_json.stderr.splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert TIME_RE.match(entry["time"])
    assert any(e["level"] == "info" and e["message"].startswith("run 1 ok:") for e in entries), entries

    assert quiet.stderr == ""
    assert warning.stderr == ""

    lines = plain.stderr.splitlines()
    assert lines and all(PLAIN_LINE.match(line) for line in lines), plain.stderr
    assert "\x1b[" not in plain.stderr
    assert any(" INFO gridpulse: run 1 ok:" in line for line in lines), plain.stderr
