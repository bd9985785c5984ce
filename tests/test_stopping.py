"""Stops that are always clean: SIGTERM or SIGINT at a random moment of `ingest` or `backfill`;
a lock timeout that bounds the wait; a run that loses its database still counts what it committed.

Each trial starts the real executable against the loopback stub, sends a signal after a random
delay (seeded: the same moments every run) and checks what an operator relies on: the process
ends within 10 s; with 130 and one error line when the run was interrupted, with 0 when it had
already finished; the run is recorded with the counts of what committed; never "database is
locked"; never a run left `running`. Trials run in three lanes at once, each on its own database.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from gridpulse_cli import ledger
from gridpulse_cli.backfill import run_backfill
from gridpulse_cli.db import Store
from gridpulse_cli.eia import EIAClient, RateLimiter
from gridpulse_cli.errors import DatabaseError, EIAError, ExitCode
from gridpulse_cli.lock import writer_lock
from gridpulse_cli.windows import Window, parse_time
from testing.eia_stub import EIAStub, make_fuel_rows, make_interchange_rows, make_region_rows, make_subba_rows
from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[1]
BAS = ["PJM", "CISO", "MISO", "ERCO", "SWPP"]
WINDOW = ["--from", "2024-05-01", "--to", "2024-05-15"]
COMMANDS = (["ingest", *WINDOW], ["backfill", "--restart", *WINDOW])
TRIALS, LANES = 30, 3
# Python must start before gridpulse can own the signals: a few tens of milliseconds, more on
# a loaded machine. Before that the OS default applies (and nothing has started yet).
EARLIEST, LATEST = 0.5, 2.8


@dataclass(frozen=True)
class Trial:
    number: int
    command: list[str]
    signum: int
    delay: float


@dataclass(frozen=True)
class Outcome:
    trial: Trial
    returncode: int
    seconds_to_exit: float
    stderr: str


def trials(seed: int) -> list[Trial]:
    rng = random.Random(seed)
    return [
        Trial(
            n,
            COMMANDS[n % 2],
            (signal.SIGTERM, signal.SIGINT)[rng.random() < 0.3],
            rng.uniform(EARLIEST, LATEST),
        )
        for n in range(TRIALS)
    ]


@pytest.fixture(scope="module")
def busy_stub() -> Iterator[EIAStub]:
    """Two weeks of every dataset for the five default BAs, answered after 50 ms."""
    with EIAStub(api_key=TEST_KEY, latency=0.05) as stub:
        start, end = "2024-04-30T00", "2024-05-16T00"
        stub.set_rows("region-data", make_region_rows(BAS, start, end))
        stub.set_rows("fuel-type-data", make_fuel_rows(BAS, start, end))
        stub.set_rows("interchange-data", make_interchange_rows(None, start, end))
        stub.set_rows("region-sub-ba-data", make_subba_rows(None, start, end))
        yield stub


def run_trial(trial: Trial, db_url: str, stub: EIAStub, home: Path) -> Outcome:
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "EIA_API_KEY": TEST_KEY,
        "GRIDPULSE_EIA_URL": stub.url,
        "GRIDPULSE_MAX_RPS": "1000",
        "GRIDPULSE_RETRY_BASE": "0",
        "GRIDPULSE_LOCK_TIMEOUT": "30",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gridpulse_cli", *trial.command, "--db", db_url],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(trial.delay)
        sent = time.monotonic()
        process.send_signal(trial.signum)
        _out, err = process.communicate(timeout=30)
        return Outcome(trial, process.returncode, time.monotonic() - sent, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def runs_of(db_url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("runs"):
                return []
            return [dict(r) for r in conn.execute(sa.text("SELECT * FROM runs ORDER BY run_id")).mappings()]
    finally:
        engine.dispose()


def observation_count(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("observations"):
                return 0
            return int(conn.execute(sa.text("SELECT count(*) FROM observations")).scalar_one())
    finally:
        engine.dispose()


def check(outcome: Outcome, runs_before: int, runs_after: list[dict[str, object]]) -> None:
    """One trial's promises (see the module docstring)."""
    label = f"trial {outcome.trial} -> exit {outcome.returncode}: {outcome.stderr[-600:]}"
    assert outcome.seconds_to_exit < 10, label
    assert "Traceback" not in outcome.stderr, label
    assert "database is locked" not in outcome.stderr, label
    assert outcome.returncode in (0, ExitCode.INTERRUPTED), label
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("gridpulse: error:")]
    new_runs = runs_after[runs_before:]
    assert all(r["status"] != "running" for r in runs_after), label
    assert len(new_runs) <= 1, label
    if outcome.returncode == 0:
        assert errors == [] and [r["status"] for r in new_runs] == ["ok"], label
    else:
        assert len(errors) == 1 and "interrupted" in errors[0], label
        assert [r["status"] for r in new_runs] in ([], ["interrupted"]), label
        assert all(r["finished_at_utc"] is not None for r in new_runs), label


def run_lane(lane_trials: list[Trial], db_url: str, stub: EIAStub, home: Path) -> list[Outcome]:
    outcomes = []
    for trial in lane_trials:
        before = len(runs_of(db_url))
        outcome = run_trial(trial, db_url, stub, home)
        after = runs_of(db_url)
        check(outcome, before, after)
        # Every committed row was counted by the run that committed it, interrupted or not.
        assert sum(int(str(r["rows_inserted"])) for r in after) == observation_count(db_url), outcome
        outcomes.append(outcome)
    return outcomes


def run_lanes(db_urls: list[str], stub: EIAStub, home: Path, seed: int) -> list[Outcome]:
    planned = trials(seed)
    with ThreadPoolExecutor(len(db_urls)) as pool:
        lanes = [
            pool.submit(run_lane, planned[i :: len(db_urls)], url, stub, home) for i, url in enumerate(db_urls)
        ]
        outcomes = [o for lane in lanes for o in lane.result()]
    assert len(outcomes) >= 30
    # The random moments must have caught runs in the act, and some after they finished.
    assert sum(o.returncode == ExitCode.INTERRUPTED for o in outcomes) >= 10
    return outcomes


def test_signals_at_random_moments_always_stop_cleanly_on_sqlite(
    busy_stub: EIAStub, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    urls = [f"sqlite:///{tmp_path / f'lane{i}.db'}" for i in range(LANES)]
    run_lanes(urls, busy_stub, home, seed=930)


@pytest.mark.postgres
def test_signals_at_random_moments_always_stop_cleanly_on_postgresql(
    busy_stub: EIAStub, pg_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    base = pg_url.split("?", 1)[0]
    engine = sa.create_engine(base)
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(LANES)]
    try:
        with engine.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        run_lanes([f"{base}?options=-csearch_path%3D{s}" for s in schemas], busy_stub, home, seed=931)
    finally:
        with engine.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()


# ---- the lock timeout bounds the whole wait -------------------------------------------------


def test_lock_timeout_bounds_the_wait_even_when_the_holder_is_mid_transaction_on_a_new_database(
    tmp_path: Path, busy_stub: EIAStub
) -> None:
    """The schema is created under the lock: a writer waiting for the first-ever run of another
    gives up after GRIDPULSE_LOCK_TIMEOUT (exit 9), not after SQLite's 30 s busy timeout (exit 6)."""
    path = tmp_path / "new.db"
    holder = Store.open(f"sqlite:///{path}", migrate=False)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with writer_lock(holder, 5):
            raw = sqlite3.connect(path, isolation_level=None)
            raw.execute("BEGIN IMMEDIATE")  # the holder's first transaction, still open
            holding.set()
            release.wait(60)
            raw.execute("ROLLBACK")
            raw.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        env = {
            "HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "EIA_API_KEY": TEST_KEY,
            "GRIDPULSE_EIA_URL": busy_stub.url,
            "GRIDPULSE_LOCK_TIMEOUT": "1",
        }
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "gridpulse_cli", "ingest", *WINDOW, "--db", str(path)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        waited = time.monotonic() - started
    finally:
        release.set()
        thread.join(10)
        holder.close()
    assert result.returncode == ExitCode.LOCKED, result.stderr
    assert waited < 15, waited  # start-up plus 1 s, far below the 30 s busy timeout
    assert result.stderr.count("\n") == 1 and "locked" in result.stderr


# ---- a run that loses its database ----------------------------------------------------------


def test_a_run_that_cannot_record_its_outcome_still_counts_what_it_committed(
    db_url: str, busy_stub: EIAStub
) -> None:
    """Committed chunks add to the run's counts in their own transaction. When the outcome cannot
    be written (the database went away), the run's error is the one reported, the ledger row
    still holds what was committed, and the next writer closes it without calling it killed."""
    store = Store.open(db_url)
    client = EIAClient(busy_stub.url, TEST_KEY, limiter=RateLimiter(1000, 10**6), max_tries=1, retry_base=0)
    window = Window(parse_time("2024-05-01"), parse_time("2024-05-15"))

    def database_gone(*_args: object, **_kwargs: object) -> None:
        raise DatabaseError("database error: server closed the connection unexpectedly")

    busy_stub.fail_next("http400", times=1000, after=2)  # the plan is 4 packed chunks: 2 commit
    try:
        with pytest.MonkeyPatch.context() as patch, pytest.raises(EIAError):
            patch.setattr(ledger, "finish_run", database_gone)
            run_backfill(store, client, BAS, ["demand", "fuel-mix"], window, end_as_given="x", workers=1)
        [run] = runs_of(db_url)
        assert run["status"] == "running"
        assert int(str(run["rows_inserted"])) == observation_count(db_url) > 0
        assert ledger.close_abandoned_runs(store, parse_time("2024-05-15")) == 1
        [run] = runs_of(db_url)
        assert run["status"] == "interrupted" and "lost the database" in str(run["error"])
    finally:
        busy_stub.clear_faults()
        store.close()
