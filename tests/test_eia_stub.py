"""The loopback EIA API v2 stub behaves like the real API, driven with plain ``requests``."""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from testing.eia_stub import (
    DEFAULT_NEIGHBOURS,
    FIELDS,
    KEY_INVALID_BODY,
    KEY_MISSING_BODY,
    NOT_FOUND_BODY,
    EIAStub,
    ba_name,
    load_sample_rows,
    make_fuel_rows,
    make_interchange_rows,
    make_region_rows,
    make_subba_rows,
    samples_dir,
)

KEY = "test-key"
T0 = datetime(2024, 1, 1, 0, tzinfo=UTC)
T47 = datetime(2024, 1, 2, 23, tzinfo=UTC)
FUELS = {"COL", "NG", "NUC", "OIL", "OTH", "SUN", "WAT", "WND"}
FULL_SORT = [("period", "asc"), ("respondent", "asc"), ("type", "asc")]
needs_samples = pytest.mark.skipif(not samples_dir().is_dir(), reason="shared/eia-samples not available")


def params(
    *,
    key: str | None = KEY,
    facets: dict[str, list[str]] | None = None,
    sort: list[tuple[str, str]] | None = None,
    **extra: Any,
) -> list[tuple[str, str]]:
    """Return a query in EIA's bracket syntax."""
    out: list[tuple[str, str]] = [("api_key", key)] if key is not None else []
    out += [("frequency", "hourly"), ("data[0]", "value")]
    for facet, values in (facets or {}).items():
        out += [(f"facets[{facet}][]", v) for v in values]
    for i, (column, direction) in enumerate(sort or []):
        out += [(f"sort[{i}][column]", column), (f"sort[{i}][direction]", direction)]
    out += [(k, str(v)) for k, v in extra.items()]
    return out


def get(stub: EIAStub, route: str = "region-data", **kw: Any) -> requests.Response:
    """GET a data route of the stub."""
    timeout = kw.pop("timeout", 5)
    query = kw.pop("query", None) or params(**kw)
    return requests.get(stub.route_url(route), params=query, timeout=timeout)


def key_of(row: dict[str, Any]) -> tuple[str, str, str]:
    """Region-data row key."""
    return (row["period"], row["respondent"], row["type"])


@pytest.fixture
def stub() -> Iterator[EIAStub]:
    """A stub holding 3 BAs x 4 types x 48 hours of region data (576 rows)."""
    with EIAStub(api_key=KEY) as s:
        s.set_rows("region-data", make_region_rows(["PJM", "CISO", "ERCO"], T0, T47))
        yield s


# --------------------------------------------------------------------------- envelope and errors


def test_envelope_has_the_real_shape(stub: EIAStub) -> None:
    r = get(
        stub, facets={"respondent": ["PJM"], "type": ["D"]}, start="2024-01-01", end="2024-01-02", length=5000
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    resp = body["response"]
    assert list(resp) == [
        "total",
        "dateFormat",
        "frequency",
        "data",
        "description",
    ]  # no warning: all rows fit
    assert resp["total"] == "25"  # a string; bare dates mean T00 and both ends are inclusive
    assert resp["dateFormat"] == 'YYYY-MM-DD"T"HH24'
    assert resp["frequency"] == "hourly"
    assert resp["description"].endswith("Source: Form EIA-930\n    Product: Hourly Electric Grid Monitor")
    assert {row["period"] for row in resp["data"]} >= {"2024-01-01T00", "2024-01-02T00"}
    for row in resp["data"]:
        assert tuple(row) == FIELDS["region-data"]
        assert isinstance(row["value"], str)
        float(row["value"])
        assert row["value-units"] == "megawatthours"
        assert row["respondent-name"] == ba_name("PJM")
    assert body["request"]["command"] == "/v2/electricity/rto/region-data/data/"
    echo = body["request"]["params"]
    assert echo["api_key"] == KEY
    assert echo["facets"] == {"respondent": ["PJM"], "type": ["D"]}
    assert echo["data"] == ["value"]
    assert echo["length"] == "5000"
    assert body["apiVersion"] == "2.1.8"


@needs_samples
def test_envelope_keys_match_a_recorded_response(stub: EIAStub) -> None:
    real = json.loads(
        (
            samples_dir() / "gridemissions-fuel-type-AECI-COL-2023-01-01-page2-offset16-length16.json"
        ).read_text()
    )
    ours = get(stub, sort=FULL_SORT, offset=16, length=16).json()
    assert set(ours) - {"ExcelAddInVersion"} == set(real)
    assert set(ours["response"]) == set(real["response"])
    assert set(ours["request"]) == set(real["request"])
    assert ours["response"]["warnings"] == real["response"]["warnings"]


def test_incomplete_return_warning_is_on_every_page_including_the_last(stub: EIAStub) -> None:
    pages = [get(stub, sort=FULL_SORT, offset=o, length=250).json()["response"] for o in (0, 250, 500)]
    assert [len(p["data"]) for p in pages] == [250, 250, 76]
    assert all(p["warnings"][0]["warning"] == "incomplete return" for p in pages)
    assert {p["total"] for p in pages} == {"576"}


def test_missing_and_invalid_keys_get_403_with_eia_bodies(stub: EIAStub) -> None:
    missing = get(stub, key=None)
    invalid = get(stub, key="wrong-key")
    assert (missing.status_code, missing.json()) == (403, KEY_MISSING_BODY)
    assert (invalid.status_code, invalid.json()) == (403, KEY_INVALID_BODY)
    assert missing.json()["error"]["code"] == "API_KEY_MISSING"
    assert invalid.json()["error"]["code"] == "API_KEY_INVALID"


def test_no_configured_key_accepts_any() -> None:
    with EIAStub(api_key=None) as s:
        assert get(s, key=None).status_code == 200


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ([("api_key", KEY), ("frequency", "local-hourly")], "Invalid frequency"),
        ([("api_key", KEY)], "Invalid frequency"),
        (params(facets={"fueltype": ["NG"]}), "Invalid facet"),
        (params(length=5001), "length"),
        (params(sort=[("nope", "asc")]), "Invalid sort column"),
        (params(start="2024-01-01 00:00"), "Invalid start"),
    ],
)
def test_bad_parameters_get_400(stub: EIAStub, query: list[tuple[str, str]], fragment: str) -> None:
    r = get(stub, query=query)
    assert r.status_code == 400
    assert r.json()["code"] == 400
    assert fragment in r.json()["error"]


def test_unknown_route_is_404_not_found(stub: EIAStub) -> None:
    r = requests.get(f"{stub.url}/electricity/wholesale-prices/data/", params=params(), timeout=5)
    assert (r.status_code, r.json()) == (404, NOT_FOUND_BODY)


def test_without_data_value_rows_have_no_value(stub: EIAStub) -> None:
    r = get(stub, query=[("api_key", KEY), ("frequency", "hourly"), ("length", "3")])
    assert all("value" not in row for row in r.json()["response"]["data"])


# --------------------------------------------------------------------------- paging and sorting


def fetch_all(stub: EIAStub, sort: list[tuple[str, str]], length: int) -> list[tuple[str, str, str]]:
    """Page through the whole region-data set with ``sort``."""
    keys: list[tuple[str, str, str]] = []
    offset, total = 0, None
    while total is None or offset < total:
        resp = get(stub, sort=sort, offset=offset, length=length).json()["response"]
        total = int(resp["total"])
        keys += [key_of(row) for row in resp["data"]]
        offset += length
    return keys


def test_full_key_sort_pages_every_row_exactly_once(stub: EIAStub) -> None:
    keys = fetch_all(stub, FULL_SORT, length=50)
    assert len(keys) == 576
    assert Counter(keys) == Counter(key_of(r) for r in stub.rows("region-data"))
    assert keys == sorted(keys)
    desc = fetch_all(stub, [("period", "desc"), ("type", "asc"), ("respondent", "asc")], length=50)
    assert sorted(desc) == sorted(keys)
    assert desc[0][0] == "2024-01-02T23"


def test_period_only_sort_reorders_ties_on_every_call(stub: EIAStub) -> None:
    expected = Counter(json.dumps(r, sort_keys=True) for r in stub.rows("region-data"))
    orders = set()
    for _ in range(6):
        data = get(stub, sort=[("period", "asc")]).json()["response"]["data"]
        assert Counter(json.dumps(r, sort_keys=True) for r in data) == expected
        assert [r["period"] for r in data] == sorted(r["period"] for r in data)
        orders.add(tuple(key_of(r) for r in data))
    assert len(orders) > 1
    # Paging on period alone duplicates and drops rows at page boundaries (50 is not a multiple of 12).
    every_key = Counter(key_of(r) for r in stub.rows("region-data"))
    assert any(Counter(fetch_all(stub, [("period", "asc")], length=50)) != every_key for _ in range(5))


def test_revise_and_drop_change_what_is_served(stub: EIAStub) -> None:
    where = {"period": "2024-01-01T05", "respondent": "PJM", "type": "D"}
    assert stub.revise("region-data", where, "12345.5") == 1
    assert stub.revise("region-data", lambda r: r["respondent"] == "ERCO" and r["type"] == "TI", None) == 48
    assert stub.drop("region-data", {"respondent": "CISO", "period": "2024-01-01T06"}) == 4
    data = get(
        stub, facets={"respondent": ["PJM"], "type": ["D"]}, start="2024-01-01T05", end="2024-01-01T05"
    ).json()
    assert data["response"]["data"][0]["value"] == "12345.5"
    erco = get(stub, facets={"respondent": ["ERCO"], "type": ["TI"]}).json()["response"]["data"]
    assert {r["value"] for r in erco} == {None}
    assert get(stub, facets={"respondent": ["CISO"]}).json()["response"]["total"] == "188"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("http500", 500, NOT_FOUND_BODY),
        ("error200", 200, {"error": "Internal error", "code": 500}),
        ("http400", 400, {"error": "Invalid sort column", "code": 400}),
    ],
)
def test_error_body_faults(stub: EIAStub, kind: str, status: int, body: dict[str, Any]) -> None:
    stub.fail_next(kind)
    r = get(stub)
    assert (r.status_code, r.json()) == (status, body)
    assert get(stub).status_code == 200  # the fault fired once
    assert [rec.fault for rec in stub.requests] == [kind, None]


def test_http503_and_http429_faults(stub: EIAStub) -> None:
    stub.fail_next("http503")
    stub.fail_next("http429", times=2)
    r503 = get(stub)
    assert r503.status_code == 503
    assert r503.headers["Content-Type"] == "text/html"
    assert "<html>" in r503.text
    for _ in range(2):
        r429 = get(stub)
        assert r429.status_code == 429
        assert r429.headers["Retry-After"] == "1"
        assert r429.json()["error"]["code"] == "OVER_RATE_LIMIT"
    assert get(stub).status_code == 200
    assert stub.pending_faults == 0


def test_invalid_json_fault(stub: EIAStub) -> None:
    stub.fail_next("invalid_json")
    r = get(stub)
    assert r.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        r.json()


def test_truncated_fault_cuts_the_body(stub: EIAStub) -> None:
    stub.fail_next("truncated")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        get(stub)
    assert get(stub).status_code == 200


def test_reset_fault_drops_the_connection(stub: EIAStub) -> None:
    stub.fail_next("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        get(stub)
    assert stub.requests[0].status == 0
    assert get(stub).status_code == 200


def test_timeout_fault_sleeps_then_answers(stub: EIAStub) -> None:
    stub.timeout_sleep = 0.5
    stub.fail_next("timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(stub, timeout=0.1)
    started = time.monotonic()
    assert get(stub).status_code == 200
    assert time.monotonic() - started < 0.4


def test_faults_respect_route_and_after(stub: EIAStub) -> None:
    stub.fail_next("http500", route="fuel-type-data")
    stub.fail_next("error200", route="region-data", after=1)
    assert get(stub).json()["response"]["total"] == "576"  # let through by after=1
    assert get(stub).json() == {"error": "Internal error", "code": 500}
    assert get(stub, "fuel-type-data").status_code == 500
    with pytest.raises(ValueError, match="unknown fault kind"):
        stub.fail_next("meteor")


def test_total_change_adds_a_row_inside_the_window(stub: EIAStub) -> None:
    window: dict[str, Any] = {
        "start": "2024-01-01T00",
        "end": "2024-01-01T23",
        "sort": FULL_SORT,
        "length": 40,
    }
    first = get(stub, offset=0, **window).json()["response"]
    stub.fail_next("total_change", route="region-data")
    second = get(stub, offset=40, **window).json()["response"]
    assert (first["total"], second["total"]) == ("288", "289")
    assert get(stub, offset=0, **window).json()["response"]["total"] == "289"  # permanent
    new = [r for r in stub.rows("region-data") if r["respondent"] not in ("PJM", "CISO", "ERCO")]
    assert len(new) == 1
    assert "2024-01-01T00" <= new[0]["period"] <= "2024-01-01T23"


def test_total_change_on_a_full_pinned_window_still_moves_total(stub: EIAStub) -> None:
    pinned: dict[str, Any] = {
        "facets": {"respondent": ["PJM"], "type": ["D"]},
        "start": "2024-01-01",
        "end": "2024-01-02",
    }
    stub.drop("region-data", {"respondent": "PJM", "type": "D", "period": "2024-01-01T07"})
    stub.fail_next("total_change", times=2)
    assert get(stub, **pinned).json()["response"]["total"] == "25"  # the gap was filled
    assert get(stub, **pinned).json()["response"]["total"] == "24"  # no free key left: a row went


def test_total_change_with_a_pinned_respondent_adds_an_unseen_fuel_code() -> None:
    with EIAStub(api_key=KEY) as s:
        s.set_rows("fuel-type-data", make_fuel_rows(["CISO"], T0, T47))
        s.fail_next("total_change")
        resp = get(s, "fuel-type-data", facets={"respondent": ["CISO"]}, length=1).json()["response"]
        assert resp["total"] == str(48 * 8 + 1)
        assert {r["fueltype"] for r in s.rows("fuel-type-data")} == {*FUELS, "UNK"}


# --------------------------------------------------------------------------- rate limit, latency, log, gzip, stop


def test_rate_limit_counts_violations() -> None:
    with EIAStub(api_key=KEY, max_per_second=3) as s, requests.Session() as session:
        codes = [
            session.get(s.route_url("region-data"), params=params(), timeout=5).status_code for _ in range(6)
        ]
        assert codes == [200, 200, 200, 429, 429, 429]
        assert s.violations == 3
        time.sleep(1.05)
        assert session.get(s.route_url("region-data"), params=params(), timeout=5).status_code == 200
    with EIAStub(api_key=KEY, max_per_hour=2) as s:
        assert [get(s).status_code for _ in range(3)] == [200, 200, 429]
        assert s.violations == 1


def test_latency_and_concurrency_are_measured() -> None:
    with EIAStub(api_key=KEY, latency=0.2) as s:
        threads = [threading.Thread(target=get, args=(s,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        records = s.requests
        assert s.max_concurrency >= 3
        assert all(r.finished is not None and r.finished - r.arrived >= 0.19 for r in records)


def test_request_log_parses_params_and_never_keeps_the_key(stub: EIAStub) -> None:
    get(
        stub, facets={"respondent": ["PJM", "CISO"]}, sort=FULL_SORT, start="2024-01-01", offset=10, length=20
    )
    get(stub, key=None)
    ok, missing = stub.requests
    assert (ok.route, ok.status, ok.rows, ok.has_key) == ("region-data", 200, 20, True)
    assert ok.params["facets"] == {"respondent": ["PJM", "CISO"]}
    assert (ok.params["start"], ok.params["end"], ok.params["offset"], ok.params["length"]) == (
        "2024-01-01",
        None,
        10,
        20,
    )
    assert ok.params["sort"] == FULL_SORT
    assert (missing.status, missing.has_key) == (403, False)
    assert KEY not in repr(stub.requests)
    stub.reset_log()
    assert stub.requests == []
    assert stub.violations == 0


def test_gzip_when_enabled_and_accepted(stub: EIAStub) -> None:
    assert "Content-Encoding" not in get(stub).headers
    stub.gzip = True
    r = get(stub, length=10)
    assert r.headers["Content-Encoding"] == "gzip"
    assert len(r.json()["response"]["data"]) == 10
    plain = requests.get(
        stub.route_url("region-data"), params=params(), headers={"Accept-Encoding": "identity"}, timeout=5
    )
    assert "Content-Encoding" not in plain.headers


def test_server_stops_when_the_context_exits() -> None:
    session = requests.Session()
    with EIAStub(api_key=KEY) as s:
        port = s.port
        assert s.url == f"http://127.0.0.1:{port}/v2"
        assert session.get(s.route_url("region-data"), params=params(), timeout=5).status_code == 200
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    with pytest.raises(requests.exceptions.ConnectionError):  # the kept-alive connection is gone too
        session.get(
            f"http://127.0.0.1:{port}/v2/electricity/rto/region-data/data/", params=params(), timeout=2
        )
    s.stop()  # idempotent


# --------------------------------------------------------------------------- generators and samples


def test_generators_are_deterministic_and_window_independent() -> None:
    a = make_region_rows(["PJM", "MISO"], T0, T47, seed=1)
    assert a == make_region_rows(["PJM", "MISO"], T0, T47, seed=1)
    assert a != make_region_rows(["PJM", "MISO"], T0, T47, seed=2)
    day2 = make_region_rows(["PJM", "MISO"], "2024-01-02T00", T47, seed=1)
    assert all(r in a for r in day2)
    assert len(a) == 2 * 48 * 4
    assert {r["period"] for r in a} == {f"2024-01-0{1 + h // 24}T{h % 24:02d}" for h in range(48)}


def test_generated_rows_look_like_eia_rows() -> None:
    region = make_region_rows(["ERCO"], T0, T47, null_fraction=0.1)
    fuel = make_fuel_rows(["CISO"], T0, T47)
    inter = make_interchange_rows(None, T0, T47)
    subba = make_subba_rows({"CISO": ["PGAE", "SCE"]}, T0, T47)
    for route, rows in [
        ("region-data", region),
        ("fuel-type-data", fuel),
        ("interchange-data", inter),
        ("region-sub-ba-data", subba),
    ]:
        assert all(tuple(r) == FIELDS[route] for r in rows)
        assert all(
            v is None or (isinstance(v, str) and float(v) == float(v)) for v in (r["value"] for r in rows)
        )
    nulls = sum(r["value"] is None for r in region)
    assert 0 < nulls < len(region) * 0.25
    assert any(r["value"] and r["value"].startswith("-") for r in region if r["type"] == "TI")
    assert any(r["value"] in ("0", "-1", "-2") for r in fuel if r["fueltype"] == "SUN")
    values = [r["value"] for r in inter]
    assert any(v.startswith("-") for v in values)
    assert any("." in v for v in values)
    assert all(v.isdigit() for v in values if "." not in v and not v.startswith("-"))
    by_key = {(r["period"], r["fromba"], r["toba"]): float(r["value"]) for r in inter}
    pjm_miso = [
        (v, by_key[(p, "MISO", "PJM")]) for (p, f, t), v in by_key.items() if (f, t) == ("PJM", "MISO")
    ]
    assert all(abs(x + y) <= 1 for x, y in pjm_miso)  # B->A is minus A->B
    assert subba[0]["subba-name"] == "Pacific Gas and Electric"


def test_generators_are_fast() -> None:
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        rows = make_fuel_rows(["PJM", "CISO"], T0, datetime(2024, 3, 1, tzinfo=UTC))
        best = max(best, len(rows) / (time.perf_counter() - started))
    assert best >= 200_000, f"{best:,.0f} rows/s"


@needs_samples
def test_default_neighbours_are_the_active_connections_in_the_reference_csv() -> None:
    with (samples_dir() / "eia930-reference-ba-connections-observable.csv").open(newline="") as fh:
        active: dict[str, list[str]] = {}
        for rec in csv.DictReader(fh):
            if rec["BA Code"] in DEFAULT_NEIGHBOURS and rec["Active Connection"] == "Yes":
                active.setdefault(rec["BA Code"], []).append(rec["Directly Interconnected BA Code"])
    assert {k: sorted(v) for k, v in active.items()} == {k: sorted(v) for k, v in DEFAULT_NEIGHBOURS.items()}
    assert ba_name("CISO") == "California Independent System Operator"
    assert ba_name("US48") == "United States Lower 48"
    assert ba_name("NOPE") == "NOPE"


@needs_samples
def test_sample_rows_are_served_as_recorded() -> None:
    counts = {
        route: len(load_sample_rows(route)) for route in ("region-data", "fuel-type-data", "interchange-data")
    }
    assert counts == {"region-data": 4425, "fuel-type-data": 7000, "interchange-data": 7425}
    fuel = load_sample_rows("fuel-type-data")
    assert ".3" in {r["value"] for r in fuel}
    with pytest.raises(ValueError, match="no sample rows"):
        load_sample_rows("region-sub-ba-data")
    with EIAStub(api_key=KEY) as s:
        s.set_rows("fuel-type-data", fuel)
        resp = get(
            s,
            "fuel-type-data",
            facets={"respondent": ["AECI"], "fueltype": ["COL"]},
            sort=[("period", "asc")],
        ).json()["response"]
        assert resp["total"] == "25"
        assert resp["data"][0] == fuel[0]


def test_rate_limit_is_strict_on_arrivals_in_any_one_second_window() -> None:
    # not per clock second: two arrivals, then one 0.6 s later is a third within one second;
    # the refused arrival counts too, as at EIA
    with EIAStub(api_key=KEY, max_per_second=2) as s, requests.Session() as session:
        first = [session.get(s.route_url("region-data"), params=params(), timeout=5) for _ in range(2)]
        time.sleep(0.6)
        third = session.get(s.route_url("region-data"), params=params(), timeout=5)
        assert [r.status_code for r in first] == [200, 200]
        assert third.status_code == 429 and third.json()["error"]["code"] == "OVER_RATE_LIMIT"
        assert third.headers["Retry-After"] == "1"
        assert s.violations == 1
        time.sleep(0.5)  # the first two have left the window; the refused one has not
        assert session.get(s.route_url("region-data"), params=params(), timeout=5).status_code == 200
