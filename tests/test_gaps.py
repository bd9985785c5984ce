"""`gaps` and `backfill --gaps` over the operations scenario: exactly the missing due hours, then filled.

GRIDPULSE_NOW is pinned to the end of the data the stub serves, so what is due is exact; the tests run
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

from gridpulse_cli.db import Store
from gridpulse_cli.errors import ExitCode
from gridpulse_cli.gaps import find_gaps
from gridpulse_cli.planner import plan_gap_chunks
from gridpulse_cli.windows import Window
from testing.eia_stub import EIAStub
from tests.helpers import (
    AREA,
    EXPECTED_GAPS,
    HOUR,
    LAST_DUE_INTERCHANGE,
    NOW,
    NOW_TEXT,
    OPS_BAS,
    OPS_WINDOW,
    WATCHED,
    WINDOW_ARGS,
    assert_exact,
    chunk_identity,
    expected_for,
    gp,
    hours,
    in_parallel,
    library_ingest,
    make_holes,
    ok,
    request_identity,
    serve_ops,
    stored,
)


def ops_expected(stub: EIAStub) -> dict[tuple[str, str], str | None]:
    return expected_for(
        stub,
        [
            (route, ba, ["D"] if route == "region-data" else None, OPS_WINDOW)
            for route in ("region-data", "fuel-type-data", "interchange-data")
            for ba in OPS_BAS
        ],
    )


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
    # one request per BA and route unless the windows are apart (BAs sharing hours packed into
    # one request); never overlapping ones
    by_group: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for route, areas, start, end in map(request_identity, requests):
        for area in areas.split(","):
            by_group.setdefault((route, area), []).append((start, end))
    assert set(by_group) == {(route, ba) for route in AREA for ba in OPS_BAS}
    for spans in by_group.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), spans

    check = gp("gaps", "--check", "--db", db_url, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    # every reported hour now holds EIA's value; hours not yet due were left alone
    assert_exact(stored(db_url), {k: v for k, v in complete.items() if k not in NOT_DUE})
