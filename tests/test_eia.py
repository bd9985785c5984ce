"""The EIA client against the loopback EIA stub: paging, retries, faults, politeness, redaction."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from gridpulse_cli.catalog import FUEL_TYPE_DATA, INTERCHANGE_DATA, REGION_DATA, SUBBA_DATA, Route
from gridpulse_cli.eia import EIAClient, Page, RateLimiter, build_params
from gridpulse_cli.errors import EIAKeyError, EIARequestError, EIARetryableError, EIAUnavailableError
from gridpulse_cli.logs import setup_logging
from testing.eia_stub import (
    EIAStub,
    make_fuel_rows,
    make_interchange_rows,
    make_region_rows,
    make_subba_rows,
)
from tests.conftest import TEST_KEY

T0 = datetime(2024, 1, 1, 0, tzinfo=UTC)
T47 = datetime(2024, 1, 2, 23, tzinfo=UTC)
BAS = ["PJM", "CISO", "ERCO"]
REGION_FACETS = {"respondent": BAS}


def make_client(url: str, key: str = TEST_KEY, **kw: Any) -> EIAClient:
    """A fast-retrying client; 100-row pages (576 stub rows: 6 pages) unless a test asks otherwise.

    Each response on a reused connection costs ~40 ms here (the stub writes headers and body
    separately: Nagle plus delayed ACK), so tests keep their request counts small.
    """
    settings: dict[str, Any] = {
        "limiter": RateLimiter(1000, 100000),
        "timeout": 5.0,
        "max_tries": 4,
        "retry_base": 0,
        "page_size": 100,
    }
    settings.update(kw)
    return EIAClient(url, key, **settings)


def key_of(route: Route, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in route.key_columns)


def fetched(route: Route, pages: list[Page]) -> Counter[tuple[Any, ...]]:
    return Counter((*key_of(route, r), r["value"]) for p in pages for r in p.rows)


def served(stub: EIAStub, route: Route) -> Counter[tuple[Any, ...]]:
    return Counter((*key_of(route, r), r["value"]) for r in stub.rows(route.name))


@pytest.fixture
def region_stub(stub: EIAStub) -> EIAStub:
    """3 BAs x 4 types x 48 hours = 576 region-data rows (6 pages of 100)."""
    stub.set_rows("region-data", make_region_rows(BAS, T0, T47))
    return stub


def fetch_region(client: EIAClient) -> list[Page]:
    return client.fetch_window(REGION_DATA, REGION_FACETS, T0, T47)


# ---- paging ---------------------------------------------------------------------------------

T23 = datetime(2024, 1, 1, 23, tzinfo=UTC)
ROUTE_CASES = [  # 480-576 rows each: 10-12 pages of 50
    (REGION_DATA, lambda: make_region_rows(BAS, T0, T47), {"respondent": BAS}, T47),
    (FUEL_TYPE_DATA, lambda: make_fuel_rows(BAS, T0, T23), {"respondent": BAS}, T23),
    (INTERCHANGE_DATA, lambda: make_interchange_rows(None, T0, T23), {"fromba": BAS}, T23),
    (SUBBA_DATA, lambda: make_subba_rows(None, T0, T47), {"parent": ["CISO", "ERCO"]}, T47),
]


@pytest.mark.parametrize(
    ("route", "rows", "facets", "end"), ROUTE_CASES, ids=[case[0].name for case in ROUTE_CASES]
)
def test_full_key_sort_pages_every_row_exactly_once(
    stub: EIAStub, route: Route, rows: Any, facets: Any, end: datetime
) -> None:
    stub.set_rows(route.name, rows())
    client = make_client(stub.url, page_size=50)
    pages = client.fetch_window(route, facets, T0, end)

    expected = Counter(
        (*key_of(route, r), r["value"])
        for r in stub.rows(route.name)
        if r[route.area_facet] in facets[route.area_facet]
    )
    assert fetched(route, pages) == expected
    assert sum(expected.values()) == sum(len(p.rows) for p in pages) >= 480
    assert client.stats.duplicates == 0  # exact by sorting, not rescued by de-duplication
    assert client.stats.requests == len(pages) == -(-sum(expected.values()) // 50)
    log = stub.requests
    assert [r.params["offset"] for r in log] == [50 * i for i in range(len(pages))]
    for record in log:
        assert {c for c, _ in record.params["sort"]} == set(route.key_columns)
        assert record.params["sort"][0] == ("period", "asc")
        assert record.params["frequency"] == "hourly"
        assert record.params["start"] == "2024-01-01T00" and record.params["end"] == end.strftime(
            "%Y-%m-%dT%H"
        )
        assert record.has_key


def test_build_params_sorts_on_the_full_key_and_sends_hour_bounds() -> None:
    params = build_params(REGION_DATA, {"respondent": ["PJM", "CISO"], "type": ["D"]}, T0, T47, 100, 50)
    assert params == [
        ("frequency", "hourly"),
        ("data[0]", "value"),
        ("facets[respondent][]", "PJM"),
        ("facets[respondent][]", "CISO"),
        ("facets[type][]", "D"),
        ("start", "2024-01-01T00"),
        ("end", "2024-01-02T23"),
        ("sort[0][column]", "period"),
        ("sort[0][direction]", "asc"),
        ("sort[1][column]", "respondent"),
        ("sort[1][direction]", "asc"),
        ("sort[2][column]", "type"),
        ("sort[2][direction]", "asc"),
        ("offset", "100"),
        ("length", "50"),
    ]
    assert not any(name == "api_key" for name, _ in params)


def test_period_only_sort_duplicates_and_drops_rows_at_page_boundaries() -> None:
    """The defect the full-key sort avoids, shown with plain requests (EIA's real behaviour)."""
    with EIAStub(api_key=TEST_KEY, shuffle_seed=930) as stub:
        stub.set_rows("region-data", make_region_rows(BAS, T0, T47))
        seen: Counter[tuple[str, str, str]] = Counter()
        offset, total = 0, None
        while total is None or offset < total:
            query = [
                ("api_key", TEST_KEY),
                ("frequency", "hourly"),
                ("data[0]", "value"),
                ("sort[0][column]", "period"),
                ("sort[0][direction]", "asc"),
                ("offset", str(offset)),
                ("length", "50"),
            ]
            body = requests.get(stub.route_url("region-data"), params=query, timeout=5).json()
            total = int(body["response"]["total"])
            rows = body["response"]["data"]
            seen.update(key_of(REGION_DATA, r) for r in rows)
            offset += len(rows)
        expected = {key_of(REGION_DATA, r) for r in stub.rows("region-data")}
    assert sum(seen.values()) == len(expected) == 576
    assert any(n > 1 for n in seen.values())  # some rows twice ...
    assert expected - set(seen)  # ... and others never


# ---- retries --------------------------------------------------------------------------------

RETRYABLE = ["http500", "http503", "http429", "error200", "truncated", "invalid_json", "reset", "timeout"]


@pytest.mark.parametrize("kind", RETRYABLE)
def test_every_transient_fault_is_retried_and_the_data_stays_exact(region_stub: EIAStub, kind: str) -> None:
    times = 1 if kind == "timeout" else 2
    region_stub.fail_next(kind, times=times, after=3)  # in the middle of the window
    client = make_client(region_stub.url, timeout=0.5, max_tries=4)
    started = time.monotonic()
    pages = fetch_region(client)
    assert fetched(REGION_DATA, pages) == served(region_stub, REGION_DATA)
    assert client.stats.retries == times
    assert client.stats.requests == 6 + times
    assert region_stub.pending_faults == 0
    assert [r.fault for r in region_stub.requests].count(kind) == times
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", ["http500", "error200", "reset", "invalid_json"])
def test_a_fault_on_the_first_page_is_retried_too(region_stub: EIAStub, kind: str) -> None:
    region_stub.fail_next(kind, times=3)
    client = make_client(region_stub.url, max_tries=4)
    assert fetched(REGION_DATA, fetch_region(client)) == served(region_stub, REGION_DATA)
    assert client.stats.retries == 3


def test_http400_is_not_retried(region_stub: EIAStub) -> None:
    region_stub.fail_next("http400", times=5)
    client = make_client(region_stub.url, max_tries=5)
    with pytest.raises(EIARequestError) as caught:
        fetch_region(client)
    assert len(region_stub.requests) == 1
    assert client.stats.retries == 0
    assert "HTTP 400" in str(caught.value) and "Invalid sort column" in str(caught.value)
    assert not isinstance(caught.value, EIAUnavailableError)


@pytest.mark.parametrize(("key", "code"), [("wrong-key-123", "API_KEY_INVALID"), ("", "API_KEY_MISSING")])
def test_a_rejected_key_is_not_retried(region_stub: EIAStub, key: str, code: str) -> None:
    client = make_client(region_stub.url, key=key, max_tries=5)
    with pytest.raises(EIAKeyError) as caught:
        fetch_region(client)
    assert len(region_stub.requests) == 1
    assert [r.status for r in region_stub.requests] == [403]
    message = str(caught.value)
    assert code in message and "\n" not in message
    assert TEST_KEY not in message
    if key:
        assert key not in message


def test_total_change_mid_paging_restarts_the_window(region_stub: EIAStub) -> None:
    before = served(region_stub, REGION_DATA)
    region_stub.fail_next("total_change", after=4)
    client = make_client(region_stub.url)
    pages = fetch_region(client)
    after = served(region_stub, REGION_DATA)
    assert after != before  # the stub added or removed a row mid-paging
    assert fetched(REGION_DATA, pages) == after
    assert client.stats.restarts == 1
    assert len({p.total for p in pages}) == 1
    offsets = [r.params["offset"] for r in region_stub.requests]
    assert offsets[:5] == [0, 100, 200, 300, 400] and offsets[5] == 0  # the window started over


def test_data_that_keeps_moving_gives_up_with_a_clear_error(region_stub: EIAStub) -> None:
    region_stub.fail_next("total_change", times=1000, after=1)
    client = make_client(region_stub.url)
    with pytest.raises(EIAUnavailableError, match=r"kept changing while paging \(4 attempts\)"):
        fetch_region(client)
    assert [r.params["offset"] for r in region_stub.requests] == [0, 100] * 4  # 4 attempts, each cut short


def test_giving_up_does_not_announce_a_fourth_restart(
    region_stub: EIAStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gridpulse_cli.eia")
    region_stub.fail_next("total_change", times=1000, after=1)
    client = make_client(region_stub.url)
    with pytest.raises(EIAUnavailableError):
        fetch_region(client)
    announced = [r.getMessage() for r in caplog.records if "fetching the window again" in r.getMessage()]
    assert len(announced) == 3 and announced[-1].endswith("(3/3)")
    assert client.stats.restarts == 3


def test_exhausted_retries_raise_unavailable_without_the_key(region_stub: EIAStub) -> None:
    region_stub.fail_next("http503", times=100)
    client = make_client(region_stub.url, max_tries=3)
    with pytest.raises(EIAUnavailableError) as caught:
        fetch_region(client)
    assert len(region_stub.requests) == 3
    message = str(caught.value)
    assert "failed 3 times" in message and "region-data" in message and "HTTP 503" in message
    assert "\n" not in message
    assert TEST_KEY not in message
    assert TEST_KEY not in "".join(traceback.format_exception(caught.value))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_url_is_unavailable_quickly() -> None:
    client = make_client(f"http://127.0.0.1:{_closed_port()}/v2", max_tries=3, timeout=2.0)
    started = time.monotonic()
    with pytest.raises(EIAUnavailableError) as caught:
        fetch_region(client)
    assert time.monotonic() - started < 2.0
    # three tries; none reached a server, so none took a rate-limit slot or counts as a request
    assert client.stats.retries == 2 and client.stats.requests == 0
    message = str(caught.value)
    assert "ConnectionError" in message and "127.0.0.1" in message
    assert TEST_KEY not in message
    assert TEST_KEY not in "".join(traceback.format_exception(caught.value))


def test_gzip_responses_are_decoded() -> None:
    with EIAStub(api_key=TEST_KEY, gzip=True) as gz:
        gz.set_rows("region-data", make_region_rows(BAS, T0, T47))
        client = make_client(gz.url)
        probe = client.session.get(gz.route_url("region-data"), params={"api_key": TEST_KEY}, timeout=5)
        assert probe.headers["Content-Encoding"] == "gzip"  # the client's session asks for gzip
        pages = fetch_region(client)
        assert fetched(REGION_DATA, pages) == served(gz, REGION_DATA)


def test_archived_pages_carry_no_key(region_stub: EIAStub) -> None:
    pages = fetch_region(make_client(region_stub.url))
    for page in pages:
        archived = page.archive_bytes()
        assert b"api_key" not in archived and TEST_KEY.encode() not in archived
        assert page.body["request"]["params"]["offset"] == page.params["offset"]
        assert len(hashlib.sha256(archived).hexdigest()) == 64


# ---- rate limit -----------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when the limiter sleeps; `overshoot` models a real sleep's lateness."""

    def __init__(self, overshoot: float = 0.0) -> None:
        self.now = 1000.0
        self.overshoot = overshoot
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds + self.overshoot


def _max_in_any_second(starts: list[float]) -> int:
    """The most starts inside any half-open 1-second window [t, t + 1)."""
    return max(sum(1 for s in starts if t <= s < t + 1.0) for t in starts)


def _run_limiter(clock: FakeClock, per_second: int, calls: int = 60) -> list[float]:
    limiter = RateLimiter(per_second, 100000, clock=clock, sleep=clock.sleep)
    starts = []
    for i in range(calls):
        if i % 9 == 0:
            clock.now += 0.37  # callers arrive irregularly
        limiter.acquire()
        starts.append(clock.now)
    return starts


@pytest.mark.parametrize("per_second", [1, 5, 7])
def test_rate_limiter_never_allows_more_than_n_in_any_second(per_second: int) -> None:
    clock = FakeClock(overshoot=0.001)
    starts = _run_limiter(clock, per_second)
    assert _max_in_any_second(starts) == per_second
    assert all(b - a >= 1.0 for a, b in zip(starts, starts[per_second:], strict=False))
    assert clock.sleeps  # it did have to wait


@pytest.mark.parametrize("per_second", [1, 5])
def test_rate_limiter_with_an_exact_sleep_never_allows_more_than_n(per_second: int) -> None:
    clock = FakeClock(overshoot=0.0)  # a sleep that lasts exactly as long as asked
    starts = _run_limiter(clock, per_second, calls=20)
    assert _max_in_any_second(starts) <= per_second


def test_rate_limiter_spaces_starts_evenly_instead_of_bursting() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 100000, margin=0.03, clock=clock, sleep=clock.sleep)
    starts = [limiter.acquire() for _ in range(11)]
    assert starts[0] == 1000.0  # an idle limiter starts at once
    assert [round(b - a, 9) for a, b in itertools.pairwise(starts)] == [0.206] * 10
    clock.now += 5.0  # idle again: the next start goes at once, then the spacing resumes
    resumed = limiter.acquire()
    assert resumed == clock.now
    assert limiter.acquire() == pytest.approx(resumed + 0.206)


def test_a_late_wake_up_is_not_passed_on_to_every_later_start() -> None:
    """Threads wake a few ms after their slot (the GIL, the scheduler): 50 starts must not take
    49 x (spacing + lateness); only the sliding window carries lateness, one start in five."""
    clock = FakeClock(overshoot=0.01)
    limiter = RateLimiter(5, 100000, margin=0.03, clock=clock, sleep=clock.sleep)
    starts = [limiter.acquire() for _ in range(51)]
    assert all(b - a >= 1.03 for a, b in zip(starts, starts[5:], strict=False))
    assert all(b - a >= 0.103 for a, b in itertools.pairwise(starts))  # never a clump
    assert starts[-1] - starts[0] < 50 * 0.206 + 0.15  # not 50 x 0.216


def test_rate_limiter_says_how_many_callers_wait_for_it() -> None:
    clock = FakeClock()
    seen: list[int] = []
    limiter = RateLimiter(
        5, 100000, clock=clock, sleep=lambda s: (seen.append(limiter.waiting), clock.sleep(s))
    )
    limiter.acquire()
    assert limiter.waiting == 0 and seen == []  # an idle limiter: nobody waits
    limiter.acquire()
    assert seen == [1] and limiter.waiting == 0  # waited for the spacing, and is done waiting


def test_rate_limiter_hourly_cap() -> None:
    clock = FakeClock(overshoot=0.001)
    limiter = RateLimiter(1000, 10, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(25):
        limiter.acquire()
        starts.append(clock.now)
    assert starts[10] - starts[0] >= 3600 and starts[20] - starts[10] >= 3600
    assert max(sum(1 for s in starts if t <= s < t + 3600) for t in starts) == 10


def test_rate_limiter_is_shared_safely_between_threads() -> None:
    clock = FakeClock(overshoot=0.001)
    limiter = RateLimiter(5, 100000, clock=clock, sleep=clock.sleep)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                starts.append(clock.now)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(starts) == 40
    assert _max_in_any_second(sorted(starts)) <= 5


def test_five_per_second_against_the_stub_in_real_time() -> None:
    """12 requests from 4 threads sharing one 5/s limiter: no second ever sees more than 5 arrive."""
    with EIAStub(api_key=TEST_KEY, max_per_second=5) as stub:
        stub.set_rows("region-data", make_region_rows(["PJM", "CISO", "ERCO", "MISO"], T0, T47))
        client = make_client(stub.url, limiter=RateLimiter(5, 9000), page_size=64, max_tries=1)
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(
                    lambda ba: client.fetch_window(REGION_DATA, {"respondent": [ba]}, T0, T47),
                    ["PJM", "CISO", "ERCO", "MISO"],
                )
            )
        elapsed = time.monotonic() - started
        arrivals = [r.arrived for r in stub.requests]
        assert stub.violations == 0
    assert [sum(len(p.rows) for p in pages) for pages in results] == [192] * 4
    assert len(arrivals) == 12
    assert all(b - a >= 1.0 for a, b in zip(arrivals, arrivals[5:], strict=False))
    assert 2.0 <= elapsed < 6


# ---- the key stays secret -------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, urllib3_logger = logging.getLogger(), logging.getLogger("urllib3")
    saved = (list(root.handlers), root.level, urllib3_logger.level)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        urllib3_logger.setLevel(saved[2])


def _run_failing_and_succeeding(stub: EIAStub) -> None:
    stub.set_rows("region-data", make_region_rows(BAS, T0, T47))
    stub.fail_next("http500", times=10)
    with pytest.raises(EIAUnavailableError):
        fetch_region(make_client(stub.url, max_tries=2))
    stub.clear_faults()
    with pytest.raises(EIAUnavailableError):
        fetch_region(make_client(f"http://127.0.0.1:{_closed_port()}/v2", max_tries=2))
    stub.fail_next("reset")
    stub.fail_next("truncated")
    assert fetch_region(make_client(stub.url, max_tries=4))


def test_key_never_reaches_the_log_stream(stub: EIAStub, restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "plain", secret=TEST_KEY, stream=stream)
    _run_failing_and_succeeding(stub)
    text = stream.getvalue()
    assert "urllib3.connectionpool" in text and "GET /v2/electricity/rto/region-data/data/" in text
    assert "api_key=REDACTED" in text  # urllib3's DEBUG lines carried the URL, redacted
    assert "retry" in text
    assert TEST_KEY not in text


def test_key_never_reaches_the_json_log_stream(stub: EIAStub, restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", secret=TEST_KEY, stream=stream)
    _run_failing_and_succeeding(stub)
    assert "api_key=REDACTED" in stream.getvalue()
    assert TEST_KEY not in stream.getvalue()


def test_key_never_reaches_handlers_after_ours(
    stub: EIAStub, restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Our filter rewrites the record itself, so any handler that runs after ours sees it redacted."""
    setup_logging("DEBUG", "plain", secret=TEST_KEY, stream=io.StringIO())
    logging.getLogger().addHandler(caplog.handler)
    _run_failing_and_succeeding(stub)
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert any("api_key=REDACTED" in r.getMessage() for r in caplog.records)
    assert TEST_KEY not in caplog.text
    for record in caplog.records:
        assert TEST_KEY not in record.getMessage()


def test_gridpulse_own_log_records_never_hold_the_key(
    stub: EIAStub, caplog: pytest.LogCaptureFixture
) -> None:
    """Without any filter: the client's own messages are clean at the source."""
    caplog.set_level(logging.DEBUG)
    _run_failing_and_succeeding(stub)
    own = [r for r in caplog.records if r.name.startswith("gridpulse_cli")]
    assert any("retry" in r.getMessage() for r in own)
    for record in own:
        assert TEST_KEY not in record.getMessage()
        assert record.exc_info is None or TEST_KEY not in "".join(
            traceback.format_exception(*record.exc_info)
        )


# ---- the limiter's stamp, and what a 429 does ---------------------------------------------------


def test_a_429_widens_the_shared_window_and_it_narrows_back_when_none_follows() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 100000, margin=0.05, recovery=10.0, clock=clock, sleep=clock.sleep)
    assert limiter.second == pytest.approx(1.05)
    limiter.throttled()
    assert limiter.second == pytest.approx(1.3125)  # a quarter wider, for every worker
    limiter.throttled()
    assert limiter.second == pytest.approx(1.3125)  # a second 429 in the same window: one signal
    starts = [limiter.acquire() for _ in range(10)]
    assert starts[5] - starts[0] == pytest.approx(1.3125)  # six starts now need 1.3125 s
    for _ in range(8):
        clock.now += limiter.second
        limiter.throttled()
    assert limiter.second == RateLimiter.MAX_WINDOW  # capped
    clock.now += 9.0
    limiter.acquire()
    assert limiter.second == RateLimiter.MAX_WINDOW  # not yet a quiet period
    clock.now += 1.0
    limiter.acquire()
    assert 1.05 < limiter.second < RateLimiter.MAX_WINDOW  # a quarter of the way back
    clock.now += 600.0
    limiter.acquire()
    assert limiter.second == pytest.approx(1.05)  # back to the base window after a quiet while


def test_retry_after_holds_every_worker_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 100000, clock=clock, sleep=clock.sleep)
    limiter.throttled(retry_after=3.0)
    assert limiter.acquire() == pytest.approx(1003.0)
    # then the (wider) spacing applies as before: no burst of the workers that waited
    assert limiter.acquire() == pytest.approx(1003.0 + limiter.second / 5)


def test_the_limiter_slot_is_taken_on_an_open_connection_right_before_sending(region_stub: EIAStub) -> None:
    seen: list[int] = []

    class Watching(RateLimiter):
        def acquire(self, cancel: threading.Event | None = None) -> float:
            deadline = time.monotonic() + 2.0
            while not region_stub._connections and time.monotonic() < deadline:
                time.sleep(0.005)  # the server thread registers the accepted connection
            seen.append(len(region_stub._connections))
            return super().acquire(cancel)

    client = make_client(region_stub.url, limiter=Watching(1000, 100000))
    client.stamps = []
    pages = fetch_region(client)
    assert seen and all(n >= 1 for n in seen)  # connected before the slot, every time
    assert len(client.stamps) == len(pages) == client.stats.requests == len(region_stub.requests)
    for (stamp, url), record in zip(client.stamps, region_stub.requests, strict=True):
        assert "api_key" in url and record.arrived >= stamp
        assert record.arrived - stamp < 0.5  # the request left right after its stamp


def test_a_429_is_retried_counted_and_slows_the_limiter(region_stub: EIAStub) -> None:
    region_stub.fail_next("http429", times=1)
    limiter = RateLimiter(1000, 100000)
    client = make_client(region_stub.url, limiter=limiter)
    started = time.monotonic()
    pages = fetch_region(client)
    assert sum(len(p.rows) for p in pages) == 576
    assert client.stats.throttled == 1 and client.stats.retries == 1
    assert limiter.second > limiter.base_second
    # the stub sends Retry-After: 1, which wins over the zero backoff of this client
    assert time.monotonic() - started >= 1.0


def test_an_over_rate_limit_body_counts_as_throttled_whatever_the_status() -> None:
    client = make_client("http://127.0.0.1:9/v2")
    response = requests.Response()
    response.status_code = 200
    response._content = (
        b'{"error": {"code": "OVER_RATE_LIMIT", "message": "You have exceeded your rate limit."}}'
    )
    with pytest.raises(EIARetryableError, match="over the rate limit"):
        client._check_response(response)
    assert client.stats.throttled == 1
