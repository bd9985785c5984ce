"""`runs`: the newest runs first with their outcome, counts and times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from gridpulse_cli.backfill import run_backfill
from gridpulse_cli.db import Store
from gridpulse_cli.errors import EIARequestError
from gridpulse_cli.ingest import run_ingest
from gridpulse_cli.runs import list_runs
from gridpulse_cli.windows import Window
from testing.eia_stub import EIAStub
from tests.helpers import NOW, OPS_WINDOW, TIME_RE, client_for, gp, ok, serve_ops, utc


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
