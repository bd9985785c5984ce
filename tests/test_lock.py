"""The writer lock: a second writer waits or gives up naming the holder; two ingests at once both finish."""

from __future__ import annotations

import os
import time

from gridpulse_cli.errors import ExitCode
from testing.eia_stub import EIAStub
from tests.helpers import (
    OPS_BAS,
    OPS_WINDOW,
    WINDOW_ARGS,
    Holder,
    assert_exact,
    error_lines,
    expected_for,
    gp,
    gp_start,
    in_parallel,
    ok,
    run_rows,
    serve_ops,
    stored,
)

INGEST_ARGS = ["ingest", "--ba", "PJM,CISO", "--dataset", "demand,fuel-mix", *WINDOW_ARGS]


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
