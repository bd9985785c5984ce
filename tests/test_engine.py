"""fetch -> normalize -> load against the loopback EIA stub, on SQLite and on PostgreSQL.

The expected observations are derived here from the rows the stub serves (independently of
gridpulse's normalizer), and compared value by value with what `export` writes.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gridpulse_cli.catalog import MVP_BAS
from gridpulse_cli.check import RunScreen
from gridpulse_cli.db import Store
from gridpulse_cli.eia import EIAClient, RateLimiter
from gridpulse_cli.engine import iter_raw_rows
from gridpulse_cli.errors import DatabaseError, EIAKeyError, EIAUnavailableError, InputFormatError
from gridpulse_cli.export import export_csv
from gridpulse_cli.files import write_observations_csv
from gridpulse_cli.ingest import run_ingest
from gridpulse_cli.load import run_load
from gridpulse_cli.normalize import normalize_rows
from gridpulse_cli.planner import plan_chunks
from gridpulse_cli.windows import Window
from testing.eia_stub import (
    DEFAULT_NEIGHBOURS,
    ROUTES,
    EIAStub,
    make_fuel_rows,
    make_interchange_rows,
    make_region_rows,
    make_subba_rows,
)
from tests.conftest import TEST_KEY
from tests.helpers import (
    ALL_DATASETS,
    PJM_SUBBAS,
    assert_exact,
    expected_observations,
    pacw_rows,
    parse_export,
    raw_series_id,
    serve_all,
    served_rows,
)

ROUTE_DATASET = {
    "fuel-type-data": "fuel-mix",
    "interchange-data": "interchange",
    "region-sub-ba-data": "subregion-demand",
}
WINDOW = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))
RUN_NOW = datetime(2024, 1, 5, 12, tzinfo=UTC)


# ---- what the stub serves, and what gridpulse must therefore store ---------------------------------


def export_text(store: Store, window: Window | None = None, bas: Sequence[str] | None = None) -> str:
    out = io.StringIO()
    export_csv(store, out, window, bas, None)
    return out.getvalue()


def client_for(stub: EIAStub, key: str = TEST_KEY, page_size: int = 5000, max_tries: int = 3) -> EIAClient:
    return EIAClient(
        stub.url,
        key,
        limiter=RateLimiter(10_000, 10_000_000),
        timeout=2.0,
        max_tries=max_tries,
        retry_base=0.0,
        page_size=page_size,
    )


def clock(start: datetime = RUN_NOW) -> Iterator[datetime]:
    moment = start
    while True:
        yield moment
        moment += timedelta(seconds=1)


def ingest(
    store: Store, stub: EIAStub, window: Window = WINDOW, bas: Sequence[str] = MVP_BAS, **kw: Any
) -> Any:
    ticks = clock(kw.pop("now", RUN_NOW))
    client = kw.pop("client", None) or client_for(stub)
    return run_ingest(
        store, client, list(bas), kw.pop("datasets", ALL_DATASETS), window, now=lambda: next(ticks), **kw
    )


def runs(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM runs ORDER BY run_id")).mappings()]


def count(store: Store, table: str, where: str = "1 = 1") -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE {where}").scalar_one())


def source_documents(store: Store) -> list[tuple[str, str, bytes]]:
    """(route, params JSON text, decompressed body) of every archived source."""
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT route, params_json, body_gzip FROM sources").all()
    return [
        (route, params if isinstance(params, str) else json.dumps(params), gzip.decompress(bytes(body)))
        for route, params, body in rows
    ]


# ---- ingest ----------------------------------------------------------------------------------------


def test_ingest_stores_exactly_the_served_rows(store: Store, stub: EIAStub) -> None:
    serve_all(stub, "2023-12-31T00", "2024-01-04T00")
    expected = expected_observations(served_rows(stub), MVP_BAS, WINDOW)
    assert any(v is None for v in expected.values()), "the test should serve some nulls"
    assert any(k[0] == "EBA.CISO-ALL.NG.BAT.H" for k in expected)

    report = ingest(store, stub)

    assert_exact(parse_export(export_text(store)), expected)
    assert (report.status, report.fetched, report.counts.inserted) == ("ok", len(expected), len(expected))
    assert (report.counts.revised, report.counts.unchanged) == (0, 0)
    [run] = runs(store)
    assert (run["status"], run["rows_fetched"], run["rows_inserted"], run["error"]) == (
        "ok",
        len(expected),
        len(expected),
        None,
    )
    # EIA's end is inclusive, the window half-open: nothing before or at the window end was asked for
    for request in stub.requests:
        assert request.params["start"] >= "2024-01-01T00"
        assert request.params["end"] <= "2024-01-02T23"
        assert request.params["frequency"] == "hourly"


def test_every_stored_value_traces_to_its_archived_response_without_the_key(
    store: Store, stub: EIAStub
) -> None:
    serve_all(stub, "2024-01-01T00", "2024-01-03T00")
    ingest(store, stub)
    documents = source_documents(store)
    assert documents
    assert len(documents) == len(stub.requests)  # one archive per EIA response
    for _route, params, body in documents:
        assert TEST_KEY not in params and TEST_KEY.encode() not in body
        assert "api_key" not in params
        parsed = json.loads(body)
        assert "api_key" not in parsed["request"]["params"]
    # follow one observation of each dataset back to the row EIA sent
    with store.engine.connect() as conn:
        traced = conn.exec_driver_sql(
            "SELECT s.series_id, s.dataset, o.period_end_utc, o.value_mwh, src.route, src.body_gzip "
            "FROM observations o JOIN series s ON s.series_key = o.series_key "
            "JOIN sources src ON src.source_id = o.source_id "
            "WHERE o.value_mwh IS NOT NULL ORDER BY s.dataset, s.series_id, o.period_end_utc"
        ).all()
    assert count(store, "observations", "source_id IS NULL") == 0
    seen_datasets = set()
    for sid, dataset, period, value, route, body in traced:
        if dataset in seen_datasets:
            continue
        seen_datasets.add(dataset)
        period_text = period.strftime("%Y-%m-%dT%H") if isinstance(period, datetime) else period[:13]
        rows = json.loads(gzip.decompress(bytes(body)))["response"]["data"]
        match = [r for r in rows if r["period"] == period_text and raw_series_id(route, r)[0] == sid]
        assert len(match) == 1, (sid, period_text)
        assert Decimal(match[0]["value"]) == Decimal(repr(value))
    assert seen_datasets == set(ALL_DATASETS)


def test_repeating_an_ingest_changes_nothing(store: Store, stub: EIAStub) -> None:
    serve_all(stub, "2023-12-31T00", "2024-01-04T00")
    first = ingest(store, stub)
    before = export_text(store)
    with store.engine.connect() as conn:
        stamps = conn.exec_driver_sql(
            "SELECT series_key, period_end_utc, first_seen_utc, last_changed_utc, run_id FROM observations ORDER BY 1, 2"
        ).all()

    second = ingest(store, stub, now=RUN_NOW + timedelta(hours=1))

    assert export_text(store) == before
    assert (second.counts.inserted, second.counts.revised) == (0, 0)
    assert second.counts.unchanged == first.counts.inserted
    assert count(store, "revisions") == 0
    with store.engine.connect() as conn:
        assert (
            conn.exec_driver_sql(
                "SELECT series_key, period_end_utc, first_seen_utc, last_changed_utc, run_id FROM observations ORDER BY 1, 2"
            ).all()
            == stamps
        )
    assert [r["status"] for r in runs(store)] == ["ok", "ok"]


def test_multi_page_window_is_exact(store: Store, stub: EIAStub) -> None:
    """PJM 2024-01-01..2024-03-01: every dataset spans several 5,000-row pages."""
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    stub.set_rows(
        "region-data", make_region_rows(["PJM", "MISO"], "2023-12-31T20", "2024-03-01T05", null_fraction=0.02)
    )
    stub.set_rows(
        "fuel-type-data", make_fuel_rows(["PJM"], "2023-12-31T20", "2024-03-01T05", null_fraction=0.02)
    )
    stub.set_rows(
        "interchange-data",
        make_interchange_rows({"PJM": DEFAULT_NEIGHBOURS["PJM"]}, "2023-12-31T20", "2024-03-01T05"),
    )
    stub.set_rows(
        "region-sub-ba-data", make_subba_rows({"PJM": PJM_SUBBAS}, "2023-12-31T20", "2024-03-01T05")
    )
    expected = expected_observations(served_rows(stub), ["PJM"], window)

    report = ingest(store, stub, window, ["PJM"])

    assert_exact(parse_export(export_text(store)), expected)
    assert report.counts.inserted == len(expected) == 1440 * (4 + 8 + 7 + 6)
    pages: dict[str, int] = {}
    for request in stub.requests:
        assert request.status == 200
        pages[request.route or ""] = pages.get(request.route or "", 0) + 1
        assert request.rows <= 5000
    assert set(pages) == set(ROUTES)
    assert all(n >= 2 for n in pages.values()), pages
    offsets = {(r.route, r.params["start"], r.params["offset"]) for r in stub.requests}
    assert len(offsets) == len(stub.requests)  # no page fetched twice
    # the full-key sort is what keeps paging exact when EIA shuffles ties
    assert all(len(r.params["sort"]) == 3 for r in stub.requests)


def test_revisions_are_picked_up(store: Store, stub: EIAStub) -> None:
    serve_all(stub, "2024-01-01T00", "2024-01-03T00", null_fraction=0.0)
    first = ingest(store, stub)
    target = {"respondent": "PJM", "type": "D", "period": "2024-01-01T05"}
    old = next(r for r in stub.rows("region-data") if all(r[k] == v for k, v in target.items()))["value"]
    assert stub.revise("region-data", target, "12345.6") == 1
    assert (
        stub.revise(
            "fuel-type-data", {"respondent": "CISO", "fueltype": "WND", "period": "2024-01-02T10"}, None
        )
        == 1
    )
    assert (
        stub.revise("interchange-data", {"fromba": "ERCO", "toba": "SWPP", "period": "2024-01-01T01"}, "-7")
        == 1
    )

    second = ingest(store, stub, now=RUN_NOW + timedelta(days=1))

    assert (second.counts.inserted, second.counts.revised) == (0, 3)
    assert second.counts.unchanged == first.counts.inserted - 3
    exported = parse_export(export_text(store))
    # the revised demand is a seventh of its neighbours: the quality screen flags it, value unchanged
    revised_key = ("EBA.PJM-ALL.D.H", "2024-01-01T05:00:00Z")
    assert exported[revised_key] == ("12345.6", "suspect")
    exported[revised_key] = ("12345.6", "good")
    # ERCO->SWPP revised to -7 while SWPP->ERCO still says -151: the pair no longer mirrors, so
    # the consistency check flags both sides (values unchanged)
    for pair in ("EBA.ERCO-SWPP.ID.H", "EBA.SWPP-ERCO.ID.H"):
        value, flag = exported[(pair, "2024-01-01T01:00:00Z")]
        assert flag == "suspect"
        exported[(pair, "2024-01-01T01:00:00Z")] = (value, "good")
    assert_exact(exported, expected_observations(served_rows(stub), MVP_BAS, WINDOW))
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT s.series_id, r.old_value_mwh, r.new_value_mwh, r.old_quality_flag, r.new_quality_flag, r.run_id "
            "FROM revisions r JOIN series s ON s.series_key = r.series_key ORDER BY s.series_id"
        ).all()
    by_series = {row[0]: tuple(row[1:]) for row in rows}
    assert set(by_series) == {"EBA.PJM-ALL.D.H", "EBA.CISO-ALL.NG.WND.H", "EBA.ERCO-SWPP.ID.H"}
    assert by_series["EBA.PJM-ALL.D.H"][:4] == (float(old), 12345.6, "good", "good")
    assert by_series["EBA.CISO-ALL.NG.WND.H"][1:4] == (None, "good", "missing")
    assert by_series["EBA.ERCO-SWPP.ID.H"][1] == -7.0
    assert {row[-1] for row in by_series.values()} == {second.run_id}


def test_transient_faults_are_retried_and_the_result_is_exact(sqlite_url: str, stub: EIAStub) -> None:
    """Client behaviour, so SQLite only."""
    serve_all(stub, "2024-01-01T00", "2024-01-03T00")
    for kind in ("http500", "http503", "http429", "error200", "truncated", "invalid_json", "reset"):
        stub.fail_next(kind)
    stub.fail_next("total_change", route="fuel-type-data", after=1)
    client = client_for(stub, page_size=500, max_tries=10)
    store = Store.open(sqlite_url)
    try:
        report = ingest(store, stub, client=client)

        assert stub.pending_faults == 0
        assert report.status == "ok" and report.retries >= 7
        expected = expected_observations(served_rows(stub), MVP_BAS, WINDOW)
        assert_exact(parse_export(export_text(store)), expected)
    finally:
        store.close()


@pytest.mark.parametrize("failure", ["rejected key", "persistent 500 on the 2nd route"])
def test_a_failing_chunk_fails_the_run_and_leaves_no_partial_chunk(
    store: Store, stub: EIAStub, failure: str
) -> None:
    serve_all(stub, "2024-01-01T00", "2024-01-03T00")
    client = client_for(stub, page_size=500)  # fuel-type-data: several pages in one chunk
    expected_error: type[Exception]
    if failure == "rejected key":
        client = client_for(stub, key="not-the-key-0000", page_size=500)
        expected_error = EIAKeyError
    else:
        stub.fail_next("http500", times=100, route="fuel-type-data", after=1)  # its 2nd page fails
        expected_error = EIAUnavailableError

    with pytest.raises(expected_error):
        ingest(store, stub, client=client)

    [run] = runs(store)
    assert run["status"] == "failed"
    assert run["error"] and "\n" not in run["error"]
    assert run["finished_at_utc"] is not None
    assert "not-the-key-0000" not in run["error"] and TEST_KEY not in run["error"]
    fuel_sources = count(store, "sources", "route = 'fuel-type-data'")
    stored_datasets = {r[0] for r in _stored_datasets(store)}
    assert "fuel-mix" not in stored_datasets and fuel_sources == 0
    if failure == "rejected key":
        assert count(store, "observations") == 0 and count(store, "sources") == 0
        assert run["rows_inserted"] == 0
    else:
        # the chunks that arrived whole are committed (a re-run continues from there): the one
        # before the failing one, and the one after it when its fetch finished first
        whole = ["demand", "forecast", "generation", "total-interchange"]
        whole += ["interchange"] if "interchange" in stored_datasets else []
        assert stored_datasets == set(whole)
        committed = expected_observations(served_rows(stub), MVP_BAS, WINDOW, whole)
        assert run["rows_inserted"] == count(store, "observations") == len(committed)
        stub.clear_faults()
        again = ingest(store, stub, client=client_for(stub))
        assert again.status == "ok"
        assert_exact(
            parse_export(export_text(store)), expected_observations(served_rows(stub), MVP_BAS, WINDOW)
        )


def _counting_steps(monkeypatch: pytest.MonkeyPatch, store: Store, fail: bool = False) -> list[int]:
    """RunScreen.step, counted (the hours written and not yet screened at each step)."""
    steps: list[int] = []
    real_step = RunScreen.step

    def step(self: RunScreen, stop: Any = None) -> bool:
        steps.append(len(store.written))
        if fail:
            raise DatabaseError("database error: the screen's read failed")
        return real_step(self, stop)

    monkeypatch.setattr(RunScreen, "step", step)
    return steps


def _rate_limited(stub: EIAStub) -> EIAClient:
    client = client_for(stub, page_size=500)
    client.limiter = RateLimiter(10, 10_000_000)  # 4 workers wait for it: the writer has time
    return client


def test_the_quality_screen_steps_while_the_rate_limit_holds_the_fetches_back(
    store: Store, stub: EIAStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_all(stub, "2024-01-01T00", "2024-01-03T00")
    steps = _counting_steps(monkeypatch, store)
    report = ingest(store, stub, client=_rate_limited(stub), workers=4)
    assert report.status == "ok" and steps and max(steps) > 0  # stepped with written hours pending
    assert_exact(parse_export(export_text(store)), expected_observations(served_rows(stub), MVP_BAS, WINDOW))


def test_a_writer_that_sets_the_pace_does_not_step_the_screen(
    store: Store, stub: EIAStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_all(stub, "2024-01-01T00", "2024-01-03T00")
    steps = _counting_steps(monkeypatch, store)
    assert (
        ingest(store, stub, client=client_for(stub, page_size=500)).status == "ok"
    )  # no rate limit to wait for
    assert steps == []


def test_a_failing_screen_step_fails_neither_the_run_nor_the_screen_at_its_end(
    store: Store, stub: EIAStub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serve_all(stub, "2024-01-01T00", "2024-01-03T00")
    steps = _counting_steps(monkeypatch, store, fail=True)
    finished: list[int] = []
    real_finish = RunScreen.finish

    def finish(self: RunScreen) -> int:
        finished.append(len(store.written))
        return real_finish(self)

    monkeypatch.setattr(RunScreen, "finish", finish)
    report = ingest(store, stub, client=_rate_limited(stub), workers=4)
    assert report.status == "ok"
    assert len(steps) == 1  # no second try while fetching
    assert finished and finished[0] > 0  # the end of the run screens what was written
    assert "screening while fetching failed" in caplog.text


def _stored_datasets(store: Store) -> list[tuple[str]]:
    with store.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.exec_driver_sql(
                "SELECT DISTINCT s.dataset FROM observations o JOIN series s ON s.series_key = o.series_key"
            )
        ]


def test_pacw_fuel_mix_week_equals_eia_to_the_digit(store: Store, stub: EIAStub) -> None:
    rows = pacw_rows()
    stub.set_rows("fuel-type-data", rows)
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))

    ingest(store, stub, window, ["PACW"], datasets=["fuel-mix"])

    exported = parse_export(export_text(store))
    expected = expected_observations({"fuel-type-data": rows}, ["PACW"], window)
    assert len(expected) == 725
    assert_exact(exported, expected)
    for key, served in expected.items():  # EIA's integers come back written exactly as EIA wrote them
        assert exported[key][0] == served


# ---- load ------------------------------------------------------------------------------------------


def normalized_csv(stub: EIAStub, window: Window = WINDOW, bas: Sequence[str] = MVP_BAS) -> str:
    """What `gridpulse fetch | gridpulse normalize` produces for the window."""
    rows = list(iter_raw_rows(client_for(stub), plan_chunks(list(bas), ALL_DATASETS, window)))
    frame = normalize_rows(rows).sort_values(["series_id", "period_end_utc"], kind="stable")
    out = io.StringIO()
    write_observations_csv(frame, out)
    return out.getvalue()


def test_run_load_of_normalize_output_equals_run_ingest(db_url: str, stub: EIAStub, tmp_path: Path) -> None:
    serve_all(stub, "2023-12-31T00", "2024-01-04T00")
    text = normalized_csv(stub)

    loaded = Store.open(db_url)
    ingested = Store.open(f"sqlite:///{tmp_path / 'ingested.db'}")
    try:
        report = run_load(loaded, io.StringIO(text), "observations.csv", now=lambda: RUN_NOW)
        ingest(ingested, stub)
        assert export_text(loaded) == export_text(ingested)
        assert_exact(
            parse_export(export_text(loaded)), expected_observations(served_rows(stub), MVP_BAS, WINDOW)
        )
        assert (
            report.status == "ok" and report.counts.inserted == report.fetched == len(text.splitlines()) - 1
        )

        [run] = runs(loaded)
        assert (run["status"], run["rows_inserted"]) == ("ok", report.counts.inserted)
        [(_route, _params, body)] = source_documents(loaded)
        assert body.decode() == text  # the input is archived as the rows' source
        assert count(loaded, "observations", "source_id IS NULL") == 0

        again = run_load(loaded, io.StringIO(text), "observations.csv", now=lambda: RUN_NOW)
        assert (again.counts.inserted, again.counts.revised, again.counts.unchanged) == (0, 0, report.fetched)
        # export output is valid load input too
        exported = export_text(loaded)
        third = run_load(loaded, io.StringIO(exported), "export.csv", now=lambda: RUN_NOW)
        assert third.counts.unchanged == report.fetched
    finally:
        loaded.close()
        ingested.close()


GOOD_LINES = [
    "EBA.PJM-ALL.D.H,2024-01-01T01:00:00Z,90000,good",
    "EBA.PJM-ALL.D.H,2024-01-01T02:00:00Z,,missing",
    "EBA.PJM-ALL.D.H,2024-01-01T03:00:00Z,91000.5,good",
]


@pytest.mark.parametrize(
    "bad_line",
    [
        "EBA.PJM-ALL.D.H,2024-01-01T04:00:00Z,abc,good",
        "EBA.PJM-ALL.D.H,2024-01-01 04:00,5,good",
        "EBA.PJM-ALL.D.H,2024-01-01T04:30:00Z,5,good",
        "NOT-A-SERIES,2024-01-01T04:00:00Z,5,good",
        "EBA.PJM-ALL.D.H,2024-01-01T04:00:00Z,5,excellent",
        pytest.param("EBA.PJM-ALL.D.H,2024-01-01T04:00:00Z,inf,good", id="inf"),
    ],
)
def test_run_load_rejects_a_malformed_file_without_storing_any_row(store: Store, bad_line: str) -> None:
    text = "\n".join(["series_id,period_end_utc,value,quality_flag", *GOOD_LINES, bad_line]) + "\n"
    with pytest.raises(InputFormatError, match=r"observations\.csv:5"):
        run_load(store, io.StringIO(text), "observations.csv", now=lambda: RUN_NOW)
    assert count(store, "observations") == 0
    [run] = runs(store)
    assert run["status"] == "failed" and "observations.csv:5" in run["error"]


def test_run_load_stores_nothing_when_a_later_chunk_is_malformed(store: Store) -> None:
    text = "\n".join(["series_id,period_end_utc,value,quality_flag", *GOOD_LINES, "X,Y,Z,good"]) + "\n"
    with pytest.raises(InputFormatError):
        run_load(store, io.StringIO(text), "observations.csv", now=lambda: RUN_NOW, chunk_rows=2)
    assert count(store, "observations") == 0
