"""`health`: database, key, freshness and runs at a pinned GRIDPULSE_NOW; a dead server fails cleanly."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest

from gridpulse_cli.db import Store
from gridpulse_cli.errors import EIARequestError, ExitCode
from gridpulse_cli.health import check_runs
from gridpulse_cli.ingest import run_ingest
from testing.eia_stub import EIAStub
from tests.helpers import (
    NOW,
    NOW_TEXT,
    OPS_BAS,
    OPS_DATASETS,
    OPS_WINDOW,
    WATCHED,
    client_for,
    gp,
    in_parallel,
    library_ingest,
    serve_ops,
)


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
