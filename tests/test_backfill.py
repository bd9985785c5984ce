"""`gridpulse backfill`: the plan (page-sized chunks per BA and route), exactness against the stub,
politeness, and resuming after a failure, a SIGTERM or a SIGKILL (on SQLite and PostgreSQL).

Expected observations are derived here from the rows the stub serves, independently of
gridpulse's normalizer, and compared value by value with what `export` writes.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from gridpulse_cli.backfill import run_backfill
from gridpulse_cli.catalog import DATASETS, FUEL_TYPE_DATA, REGION_DATA, SUBBA_DATA, rows_per_hour
from gridpulse_cli.db import Store
from gridpulse_cli.eia import PAGE_SIZE
from gridpulse_cli.errors import ExitCode, Interrupted
from gridpulse_cli.planner import Chunk, chunk_key, plan_backfill
from gridpulse_cli.windows import Window, format_utc
from testing.eia_stub import (
    DEFAULT_NEIGHBOURS,
    DEFAULT_SUBBAS,
    EIAStub,
    RequestRecord,
    make_fuel_rows,
    make_interchange_rows,
    make_region_rows,
)
from tests.conftest import TEST_KEY
from tests.helpers import (
    assert_exact,
    chunk_identity,
    chunk_selection,
    client_for,
    error_lines,
    expected_for,
    gp,
    gp_start,
    ok,
    request_identity,
    run_rows,
    stored,
    utc,
)

BF_BAS = ["PJM", "CISO"]
BF_DATASETS = ["demand", "fuel-mix", "interchange"]
BF_WINDOW = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
BF_ARGS = [
    "backfill",
    "--ba",
    "PJM,CISO",
    "--from",
    "2024-01-01",
    "--to",
    "2024-03-01",
    "--dataset",
    "demand,fuel-mix,interchange",
]
# Resume tests use January only: 10 chunks of up to a page each.
JAN = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
JAN_ARGS = [*BF_ARGS[:6], "2024-02-01", *BF_ARGS[7:]]


# ---- the database, read directly ----------------------------------------------------------------


def db_query(db_url: str, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), dict(params or {}))]
    finally:
        engine.dispose()


def committed_keys(db_url: str) -> set[str]:
    """Chunk keys in backfill_chunks; empty while the table does not exist yet."""
    try:
        return {row[0] for row in db_query(db_url, "SELECT chunk_key FROM backfill_chunks")}
    except sa.exc.SQLAlchemyError:
        return set()


# ---- what the stub serves and what must therefore be stored -----------------------------------


def expected_for_chunks(stub: EIAStub, chunks: Iterable[Chunk]) -> dict[tuple[str, str], str | None]:
    return expected_for(stub, (chunk_selection(c) for c in chunks))


def serve_backfill(stub: EIAStub, end: str = "2024-03-02T00") -> None:
    """Two months (and a day either side) of demand/…, fuel mix and interchange; MISO is not asked for."""
    start = "2023-12-31T00"
    stub.set_rows("region-data", make_region_rows(["PJM", "CISO", "MISO"], start, end, null_fraction=0.02))
    stub.set_rows("fuel-type-data", make_fuel_rows(["PJM", "CISO", "MISO"], start, end, null_fraction=0.02))
    stub.set_rows("interchange-data", make_interchange_rows(None, start, end))


def bf_plan(window: Window = BF_WINDOW) -> list[Chunk]:
    return plan_backfill(BF_BAS, BF_DATASETS, window)


def request_keys(records: Sequence[RequestRecord]) -> list[str]:
    return [json.dumps([r.route, r.params], sort_keys=True) for r in records]


# ---- the plan ----------------------------------------------------------------------------------


def test_plan_backfill_chunks_pack_bas_into_at_most_one_page() -> None:
    bas = ["PJM", "CISO", "ERCO", "US48"]
    datasets = list(DATASETS)
    window = Window(utc(2023, 1, 1), utc(2024, 1, 1))
    chunks = plan_backfill(bas, datasets, window)
    groups: dict[tuple[str, str], list[Window]] = {}
    for chunk in chunks:
        facet = chunk.route.area_facet
        areas = chunk.facets[facet]
        assert set(areas) <= set(bas), chunk.describe()
        if chunk.route is REGION_DATA:
            assert set(chunk.facets) == {facet, "type"}
            assert sorted(chunk.facets["type"]) == ["D", "DF", "NG", "TI"]
        else:
            assert set(chunk.facets) == {facet}
        types = chunk.facets.get("type", [])
        estimate = sum(rows_per_hour(chunk.route.name, area, types) for area in areas)
        assert chunk.window.hours * estimate <= PAGE_SIZE, chunk.describe()
        for area in areas:
            groups.setdefault((chunk.route.name, area), []).append(chunk.window)
    # every BA on every route it publishes on (US48 has no subregions), each tiling the window exactly
    routes = {d.route.name for d in DATASETS.values()}
    assert set(groups) == {(r, ba) for r in routes for ba in bas} - {("region-sub-ba-data", "US48")}
    for (route, area), windows in groups.items():
        windows.sort(key=lambda w: w.start)
        assert windows[0].start == window.start and windows[-1].end == window.end
        assert all(a.end == b.start for a, b in itertools.pairwise(windows)), (route, area)
    # oldest first overall, so an interrupted backfill has filled every series up to about the same time
    starts = [c.window.start for c in chunks]
    assert starts == sorted(starts)
    # the estimate covers what EIA (and the stub) actually publish per hour
    assert rows_per_hour("fuel-type-data", "CISO", []) >= 8
    for ba, neighbours in DEFAULT_NEIGHBOURS.items():
        assert rows_per_hour("interchange-data", ba, []) >= len(neighbours)
    for parent, subbas in DEFAULT_SUBBAS.items():
        assert rows_per_hour("region-sub-ba-data", parent, []) >= len(subbas)


def test_plan_backfill_fetches_only_the_region_types_asked_for() -> None:
    chunks = plan_backfill(["PJM"], ["demand", "total-interchange"], Window(utc(2024, 1, 1), utc(2024, 2, 1)))
    assert [c.route.name for c in chunks] == ["region-data"]
    assert sorted(chunks[0].facets["type"]) == ["D", "TI"]
    assert chunks[0].window == Window(utc(2024, 1, 1), utc(2024, 2, 1))  # 744 h x 2 rows: one page


def test_plan_backfill_clips_each_route_to_its_history_start() -> None:
    window = Window(utc(2018, 6, 1), utc(2018, 8, 1))
    chunks = plan_backfill(["PJM"], ["demand", "fuel-mix", "subregion-demand"], window)
    by_route: dict[str, list[Window]] = {}
    for chunk in chunks:
        by_route.setdefault(chunk.route.name, []).append(chunk.window)
    assert min(w.start for w in by_route["region-data"]) == utc(2018, 6, 1)
    assert min(w.start for w in by_route["fuel-type-data"]) == FUEL_TYPE_DATA.history_start == utc(2018, 7, 1)
    assert min(w.start for w in by_route["region-sub-ba-data"]) == SUBBA_DATA.history_start
    assert all(w.end <= window.end for ws in by_route.values() for w in ws)
    # a window wholly before fuel-mix history asks nothing of that route
    before = plan_backfill(["PJM"], ["demand", "fuel-mix"], Window(utc(2018, 1, 1), utc(2018, 7, 1)))
    assert {c.route.name for c in before} == {"region-data"}
    assert plan_backfill(["PJM"], ["fuel-mix"], Window(utc(2018, 1, 1), utc(2018, 7, 1))) == []
    # region-data starts 2015-07-01
    early = plan_backfill(["PJM"], ["demand"], Window(utc(2015, 1, 1), utc(2015, 8, 1)))
    assert min(c.window.start for c in early) == REGION_DATA.history_start == utc(2015, 7, 1)


def test_backfill_never_requests_fuel_mix_before_its_history_start(stub: EIAStub, sqlite_url: str) -> None:
    stub.set_rows("region-data", make_region_rows(["PJM"], "2018-06-29T00", "2018-07-03T00", types=("D",)))
    stub.set_rows("fuel-type-data", make_fuel_rows(["PJM"], "2018-06-29T00", "2018-07-03T00"))
    window = Window(utc(2018, 6, 30), utc(2018, 7, 2))
    client = client_for(stub)
    store = Store.open(sqlite_url)
    try:
        report = run_backfill(
            store, client, ["PJM"], ["demand", "fuel-mix"], window, end_as_given="2018-07-02"
        )
    finally:
        store.close()
    assert report.status == "ok"
    fuel = [r for r in stub.requests if r.route == "fuel-type-data"]
    assert fuel and all(r.params["start"] >= "2018-07-01T00" for r in fuel), [r.params for r in fuel]
    expected = expected_for(
        stub,
        [
            ("region-data", "PJM", ["D"], window),
            ("fuel-type-data", "PJM", None, Window(utc(2018, 7, 1), window.end)),
        ],
    )
    assert_exact(stored(sqlite_url), expected)


# ---- a complete backfill -----------------------------------------------------------------------------


def test_backfill_stores_exactly_the_served_rows_with_no_request_twice(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_backfill(stub)
    ok(gp(*BF_ARGS, "--db", db_url))
    chunks = bf_plan()
    exported = stored(db_url)
    assert_exact(exported, expected_for_chunks(stub, chunks))
    requests = stub.requests
    assert all(r.status == 200 for r in requests), [(r.status, r.fault) for r in requests]
    keys = request_keys(requests)
    assert len(keys) == len(set(keys)), "a request was made twice"
    # one page per chunk: exactly the planned chunks were requested
    assert sorted(request_identity(r) for r in requests) == sorted(chunk_identity(c) for c in chunks)
    runs = run_rows(db_url)
    assert [(r["command"], r["status"]) for r in runs] == [("backfill", "ok")]
    assert runs[0]["requests"] == len(chunks)
    assert runs[0]["rows_inserted"] == len(exported)


def test_backfill_respects_five_requests_per_second(cli_env: dict[str, str], sqlite_url: str) -> None:
    # a year of nine BAs' demand: 16 packed requests against a stub answering 429 above 5 arrivals a second
    bas = ["PJM", "CISO", "MISO", "ERCO", "SWPP", "TVA", "NYIS", "BPAT", "ISNE"]
    window = Window(utc(2023, 1, 1), utc(2024, 1, 1))
    with EIAStub(api_key=TEST_KEY, max_per_second=5) as limited:
        limited.set_rows("region-data", make_region_rows(bas, "2023-01-01T00", "2024-01-01T00", types=("D",)))
        result = gp(
            "backfill",
            "--ba",
            ",".join(bas),
            "--dataset",
            "demand",
            "--from",
            "2023-01-01",
            "--to",
            "2024-01-01",
            "--workers",
            "8",
            "--db",
            sqlite_url,
            env={"GRIDPULSE_EIA_URL": limited.url, "GRIDPULSE_MAX_RPS": "5"},
        )
        ok(result)
        requests = limited.requests
        assert limited.violations == 0
        assert len(requests) == len(plan_backfill(bas, ["demand"], window)) == 16
        assert all(r.status == 200 for r in requests)
        arrivals = [r.arrived for r in requests]
        assert all(sum(1 for b in arrivals if a <= b < a + 1.0) <= 5 for a in arrivals)
        expected = expected_for(limited, [("region-data", ba, ["D"], window) for ba in bas])
    assert_exact(stored(sqlite_url), expected)


# ---- resuming --------------------------------------------------------------------------------------


def test_failed_backfill_resumes_with_only_the_uncommitted_chunks(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_backfill(stub, end="2024-02-02T00")
    chunks = bf_plan(JAN)  # packed: 7 chunks of two BAs each
    by_key = {chunk_key(c): c for c in chunks}
    good = 3
    assert len(chunks) > good + 3
    # one worker and a little latency: every successful fetch is committed before the failure lands
    stub.latency = 0.02
    stub.fail_next("http400", times=1000, after=good)
    args = [*JAN_ARGS, "--workers", "1", "--db", db_url]

    first = gp(*args)
    assert first.returncode == ExitCode.EIA_UNAVAILABLE, first.stderr
    assert "Traceback" not in first.stderr
    assert len(error_lines(first.stderr)) == 1, first.stderr
    first_ok = [r for r in stub.requests if r.status == 200]
    assert len(first_ok) == good
    runs = run_rows(db_url)
    assert [r["status"] for r in runs] == ["failed"]
    assert "400" in (runs[0]["error"] or "")
    committed = committed_keys(db_url)
    assert len(committed) == good and committed <= set(by_key)
    # what was committed is complete, chunk by chunk, and nothing else is stored
    assert_exact(stored(db_url), expected_for_chunks(stub, (by_key[k] for k in committed)))

    stub.clear_faults()
    stub.reset_log()
    ok(gp(*args))
    second = stub.requests
    assert len(first_ok) + len(second) == len(chunks)
    assert sorted(request_identity(r) for r in second) == sorted(
        chunk_identity(c) for k, c in by_key.items() if k not in committed
    )
    assert_exact(stored(db_url), expected_for_chunks(stub, chunks))
    assert [r["status"] for r in run_rows(db_url)] == ["failed", "ok"]

    # the same backfill once more (the plan the CLI made, run in-process): nothing left to fetch
    stub.reset_log()
    store = Store.open(db_url)
    try:
        report = run_backfill(store, client_for(stub), BF_BAS, BF_DATASETS, JAN, end_as_given=format_utc(JAN.end))
    finally:
        store.close()
    assert (report.status, report.chunks, report.requests) == ("ok", 0, 0)
    assert stub.requests == []

    # --restart re-fetches everything; nothing changes
    stub.latency = 0.0
    ok(gp(*JAN_ARGS, "--restart", "--db", db_url))
    assert sorted(request_identity(r) for r in stub.requests) == sorted(chunk_identity(c) for c in chunks)
    exported = stored(db_url)
    assert_exact(exported, expected_for_chunks(stub, chunks))
    last = run_rows(db_url)[-1]
    assert (last["command"], last["status"]) == ("backfill", "ok")
    assert (last["rows_inserted"], last["rows_revised"]) == (0, 0)
    assert last["rows_unchanged"] == len(exported)


def test_backfill_resumes_whatever_the_spelling_of_an_equal_to(
    stub: EIAStub, cli_env: dict[str, str], sqlite_url: str
) -> None:
    stub.set_rows("region-data", make_region_rows(["PJM"], "2024-01-01T00", "2024-01-04T00", types=("D",)))
    args = ["backfill", "--ba", "PJM", "--dataset", "demand", "--from", "2024-01-01", "--db", sqlite_url]
    ok(gp(*args, "--to", "2024-01-03"))
    assert len(stub.requests) == 1
    stub.reset_log()
    ok(gp(*args, "--to", "2024-01-03T00"))  # the same window, so the same backfill
    assert stub.requests == []


def wait_for_chunks(db_url: str, count: int, process: subprocess.Popen[str], timeout: float = 30) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = committed_keys(db_url)
        if len(keys) >= count:
            return keys
        assert process.poll() is None, f"backfill ended early: {process.communicate()}"
        time.sleep(0.03)
    raise AssertionError(f"fewer than {count} chunks committed after {timeout} s")


def assert_committed_chunks_complete(db_url: str, stub: EIAStub, by_key: Mapping[str, Chunk]) -> set[str]:
    """Committed chunks are stored completely and nothing else is: no chunk was half-written."""
    committed = committed_keys(db_url)
    assert committed <= set(by_key)
    assert_exact(stored(db_url), expected_for_chunks(stub, (by_key[k] for k in committed)))
    return committed


def test_an_interrupt_inside_a_chunk_commit_rolls_the_whole_chunk_back(db_url: str, stub: EIAStub) -> None:
    """A signal landing after a chunk's rows are written but before its commit: none of it stays."""
    serve_backfill(stub, end="2024-02-02T00")
    chunks = bf_plan(JAN)
    by_key = {chunk_key(c): c for c in chunks}
    store = Store.open(db_url)
    upsert = store.upsert
    written: list[int] = []

    def upsert_then_interrupt(*args: Any, **kwargs: Any) -> Any:
        counts = upsert(*args, **kwargs)
        written.append(counts.inserted)
        if len(written) == 3:
            raise KeyboardInterrupt("signal 15")
        return counts

    try:
        store.upsert = upsert_then_interrupt  # type: ignore[method-assign]
        with pytest.raises(Interrupted):
            # one worker: the 7 packed chunks arrive (and commit) in at least three batches
            run_backfill(
                store, client_for(stub), BF_BAS, BF_DATASETS, JAN, end_as_given=format_utc(JAN.end), workers=1
            )
        assert written[2] > 0  # the third chunk's rows were in the database, uncommitted
        committed = assert_committed_chunks_complete(db_url, stub, by_key)
        # chunks that arrive together commit together: two upserts cover at least two chunks
        assert 2 <= len(committed) < len(chunks)
        runs = run_rows(db_url)
        assert [r["status"] for r in runs] == ["interrupted"]
        assert runs[0]["rows_inserted"] == sum(written[:2]) == len(stored(db_url))

        store.upsert = upsert  # type: ignore[method-assign]
        stub.reset_log()
        report = run_backfill(store, client_for(stub), BF_BAS, BF_DATASETS, JAN, end_as_given=format_utc(JAN.end))
    finally:
        store.close()
    assert report.status == "ok" and report.requests == len(chunks) - len(committed)
    assert sorted(request_identity(r) for r in stub.requests) == sorted(
        chunk_identity(c) for k, c in by_key.items() if k not in committed
    )
    assert_exact(stored(db_url), expected_for_chunks(stub, chunks))


def test_sigterm_and_sigkill_leave_whole_chunks_and_the_backfill_resumes(
    db_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_backfill(stub, end="2024-02-02T00")
    chunks = bf_plan(JAN)
    by_key = {chunk_key(c): c for c in chunks}
    args = [*JAN_ARGS, "--workers", "1", "--db", db_url]
    stub.latency = 0.1

    # SIGTERM: the chunk in flight is dropped or committed whole, the run is recorded interrupted
    process = gp_start(*args)
    try:
        wait_for_chunks(db_url, 2, process)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert time.monotonic() - sent < 10
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert len(error_lines(err)) == 1 and "interrupted" in error_lines(err)[0], err
    runs = run_rows(db_url)
    assert [r["status"] for r in runs] == ["interrupted"]
    after_term = assert_committed_chunks_complete(db_url, stub, by_key)
    assert 2 <= len(after_term) < len(chunks)
    assert runs[0]["rows_inserted"] == len(stored(db_url))

    # SIGKILL: no chance to record anything; the run stays 'running' until the next writer
    process = gp_start(*args)
    try:
        wait_for_chunks(db_url, len(after_term) + 2, process)
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [r["status"] for r in run_rows(db_url)] == ["interrupted", "running"]
    after_kill = assert_committed_chunks_complete(db_url, stub, by_key)
    assert after_term < after_kill and len(after_kill) < len(chunks)

    # the same command completes the rest, and closes the killed run
    stub.latency = 0.0
    stub.reset_log()
    result = gp(*args)
    ok(result)
    assert "marked 1 run left" in result.stderr
    assert sorted(request_identity(r) for r in stub.requests) == sorted(
        chunk_identity(c) for k, c in by_key.items() if k not in after_kill
    )
    assert_exact(stored(db_url), expected_for_chunks(stub, chunks))
    runs = run_rows(db_url)
    assert [r["status"] for r in runs] == ["interrupted", "interrupted", "ok"]
    assert "killed" in (runs[1]["error"] or "")
    assert runs[1]["finished_at_utc"] is not None


def test_a_throttled_backfill_counts_its_429s_in_the_ledger_and_the_summary(
    stub: EIAStub, cli_env: dict[str, str], sqlite_url: str
) -> None:
    serve_backfill(stub, end="2024-02-02T00")
    stub.fail_next("http429", times=2)
    result = gp(*JAN_ARGS, "--workers", "1", "--db", sqlite_url)
    ok(result)
    assert "(2 throttled by EIA)" in result.stderr
    assert db_query(sqlite_url, "SELECT throttled, retries FROM runs") == [(2, 2)]
    assert_exact(stored(sqlite_url), expected_for_chunks(stub, plan_backfill(BF_BAS, BF_DATASETS, JAN)))
