"""The EIA API v2 client: full-key paging, retries with backoff, a shared rate limit, redaction.

This is the only module that speaks HTTP. It returns raw EIA rows (dicts exactly as EIA sent
them) grouped by the response page they came from, so every stored value can be traced to the
response that carried it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import Timeout

from gridpulse_cli import __version__
from gridpulse_cli.catalog import PAGE_SIZE, Route
from gridpulse_cli.errors import (
    ConfigError,
    EIAError,
    EIAKeyError,
    EIARequestError,
    EIARetryableError,
    EIAUnavailableError,
)
from gridpulse_cli.redact import redact, strip_key, strip_key_bytes
from gridpulse_cli.stopping import wait_or_cancel
from gridpulse_cli.text import plural, shorten
from gridpulse_cli.windows import eia_period

log = logging.getLogger(__name__)

# requests' connection errors, as (text in the error, what the one error line says).
_NETWORK_REASONS = (
    ("Connection refused", "connection refused"),
    ("Failed to resolve", "host not found"),
    ("Name or service not known", "host not found"),
    ("nodename nor servname", "host not found"),
    ("Connection reset", "connection reset"),
    ("RemoteDisconnected", "connection closed by the server"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
    ("Network is unreachable", "network unreachable"),
)
_URL_IN_ERROR = re.compile(r"with url: \S+ ?")
MAX_WINDOW_RESTARTS = 3
MAX_BACKOFF_SECONDS = 60.0
# The limiter's window beyond one second: covers the spread between our stamp and the server's
# arrival of evenly spaced requests (docs/benchmarks.md); rarer outliers are what the 429
# handling is for.
MARGIN = 0.03


class RateLimiter:
    """Never more than `per_second` request starts in any sliding window of `second` seconds,
    and those starts spaced evenly: one per `second / per_second` seconds.

    Spaced, not in bursts: five starts at once reach the server as a clump, and the clump's
    spread (the server's queueing, our threads contending) decides whether a sixth lands inside
    one second; spaced starts arrive one at a time, so the margin need only cover one request's
    jitter (docs/benchmarks.md). The spacing follows a schedule, not the latest stamp: a worker
    that wakes a few milliseconds late does not push every later start back, up to half a
    spacing (the sliding window still holds). A token bucket would be worse: refilled at 5/s it
    lets a burst of 5 follow a burst of 5 within one second, which EIA's guidance forbids.
    `per_hour` caps the hourly volume the same way. Thread-safe; one instance is shared by all
    workers, so when the server says "too many" (`throttled`), every worker slows down: the
    window (and the spacing) widens by a quarter (up to MAX_WINDOW seconds), nobody starts
    before a `Retry-After` has passed, and each `recovery` seconds without another 429 narrows
    the window a quarter of the way back.
    """

    MAX_WINDOW = 4.0

    def __init__(
        self,
        per_second: int = 5,
        per_hour: int = 9000,
        *,
        margin: float = MARGIN,
        recovery: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second, self.per_hour = per_second, per_hour
        self.base_second = self.second = 1.0 + margin
        self.recovery = recovery
        self._clock, self._sleep = clock, sleep
        self._recent: deque[float] = deque()
        self._hourly: deque[float] = deque()
        self._next = -math.inf  # the next start's slot in the even spacing
        self._not_before = 0.0  # no start before this (Retry-After)
        self._waiting = 0
        self._last_throttle = self._last_widened = -math.inf
        self._lock = threading.Lock()

    def throttled(self, retry_after: float | None = None) -> None:
        """The server answered 429: widen the window for every worker, honour Retry-After."""
        with self._lock:
            now = self._clock()
            # 429s to requests sent at the old pace (within one window of the last widening) are
            # one signal, not several: concurrent workers often collect them together.
            if now - self._last_widened >= self.second:
                self.second = min(self.MAX_WINDOW, self.second * 1.25)
                self._last_widened = now
            self._last_throttle = now
            if retry_after is not None and retry_after > 0:
                self._not_before = max(self._not_before, now + min(retry_after, MAX_BACKOFF_SECONDS))

    def _recover(self, now: float) -> None:
        """A quarter of the way back to the base window per quiet `recovery` period (under the lock)."""
        while self.second > self.base_second and now - self._last_throttle >= self.recovery:
            self.second = max(self.base_second, self.second - (self.second - self.base_second) / 4 - 0.001)
            self._last_throttle += self.recovery

    @property
    def spacing(self) -> float:
        return self.second / self.per_second

    def _wait(self, now: float) -> float:
        """Seconds until one more start is allowed (0: now); expires old starts (under the lock)."""
        self._recover(now)
        # The same expressions decide expiry and the wait, so sleeping exactly the wait always
        # expires the oldest start (no float disagreement between the two).
        while self._recent and self._recent[0] + self.second <= now:
            self._recent.popleft()
        while self._hourly and self._hourly[0] + 3600.0 <= now:
            self._hourly.popleft()
        wait = max(self._not_before - now, self._next - now)
        if len(self._recent) >= self.per_second:
            wait = max(wait, self._recent[0] + self.second - now)
        if len(self._hourly) >= self.per_hour:
            wait = max(wait, self._hourly[0] + 3600.0 - now)
        return wait

    def _start(self, now: float, asked: float) -> None:
        """Record a start at `now` by a caller waiting since `asked` (under the lock).

        The start fills the slot it waited for (its turn in the spacing, the end of a Retry-After,
        or the moment it asked if nobody was waiting); the next slot is one spacing later.
        Lateness up to half a spacing (a thread woken late) is not passed on; more is, so a long
        wait (the hourly cap, the sliding window) resumes the spacing from here, never in a burst.
        """
        slot = max(self._next, asked, self._not_before, now - self.spacing / 2)
        self._next = slot + self.spacing
        self._recent.append(now)
        self._hourly.append(now)

    def acquire(self, cancel: threading.Event | None = None) -> float:
        """Block until one more request may start, record it and return its stamp (Cancelled if
        `cancel` is set)."""
        asked = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now)
                if wait <= 0:
                    self._start(now, asked)
                    return now
                self._waiting += 1
            if wait > 60:
                log.warning("hourly request cap of %d reached; waiting %.0f s", self.per_hour, wait)
            try:
                if cancel is None:
                    self._sleep(wait)
                else:
                    wait_or_cancel(wait, cancel)
            finally:
                with self._lock:
                    self._waiting -= 1

    @property
    def waiting(self) -> int:
        """How many callers are waiting for a start: the limit, not the work, sets the pace."""
        return self._waiting


@dataclass
class Page:
    """One EIA response: the parsed body (key stripped) and the rows gridpulse keeps from it."""

    route: str
    params: dict[str, Any]  # request parameters, without the key
    body: dict[str, Any]
    rows: list[dict[str, Any]]
    total: int
    fetched_at: datetime
    raw: bytes | None = None  # the body exactly as received, minus the echoed key

    def archive_bytes(self) -> bytes:
        """The body as stored for audit: EIA's bytes with the echoed key removed."""
        if self.raw is None:
            self.raw = json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()
        return self.raw


@dataclass
class ClientStats:
    """Counters shared by every thread using one client."""

    requests: int = 0
    retries: int = 0
    restarts: int = 0
    duplicates: int = 0
    throttled: int = 0  # answers 429 / OVER_RATE_LIMIT
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, amount in counts.items():
                setattr(self, name, getattr(self, name) + amount)


def parse_total(raw: Any) -> int:
    """EIA's `total` is a string in current responses and an int in older ones."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise EIARetryableError(f"response has no usable 'total' ({raw!r})") from None


def build_params(
    route: Route,
    facets: Mapping[str, Sequence[str]],
    start: datetime,
    end_inclusive: datetime,
    offset: int,
    length: int,
) -> list[tuple[str, str]]:
    """Query parameters for one page, sorted on the route's full key so paging is exact."""
    params: list[tuple[str, str]] = [("frequency", "hourly"), ("data[0]", "value")]
    for facet, values in facets.items():
        params.extend((f"facets[{facet}][]", value) for value in values)
    params += [("start", eia_period(start)), ("end", eia_period(end_inclusive))]
    for i, column in enumerate(route.key_columns):
        params += [(f"sort[{i}][column]", column), (f"sort[{i}][direction]", "asc")]
    params += [("offset", str(offset)), ("length", str(length))]
    return params


# One page's query parameters at (offset, length): build_params with the window filled in.
PageParams = Callable[[int, int], list[tuple[str, str]]]


def _error_message(body: Any) -> tuple[str, str]:
    """Return (code, message) from EIA's two error shapes."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))
    if error is not None:
        return str(body.get("code", "")), str(error)
    return "", ""


class EIAThrottledError(EIARetryableError):
    """EIA said "too many requests" (HTTP 429 or an OVER_RATE_LIMIT body)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not worth a parser: None)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _stamped_pool(
    base: type[HTTPConnectionPool], before_send: Callable[[str], None]
) -> type[HTTPConnectionPool]:
    """A connection pool that connects first and calls `before_send` as the request's first
    bytes go to the socket, so the rate limiter stamps the send, not the moment a worker asked.

    The slot is taken inside the connection's `send`, a few bytecodes before the system call:
    taken any earlier, a thread holding the stamp can lose the GIL to a busy thread (a commit,
    the quality screen) for tens of milliseconds before its request leaves, and that spread is
    what the limiter's margin must cover (docs/benchmarks.md).

    The connection class is the pool's at the moment a connection is made, not at import: test
    tools (vcrpy) swap it at run time. One that never sends through `send` (vcrpy's replay) gets
    its slot when the request returns.
    """
    stamped_classes: dict[type, type] = {}

    def send(self: Any, data: Any) -> None:
        url = self.__dict__.pop("_gridpulse_slot", None)  # armed below, once per request
        if url is not None:
            before_send(url)
        parent: Any = type(self).__mro__[1]  # the connection class this one stamps
        parent.send(self, data)

    def _new_conn(self: HTTPConnectionPool) -> Any:
        current: Any = base.ConnectionCls
        if current not in stamped_classes:
            stamped_classes[current] = type(f"Stamped{current.__name__}", (current,), {"send": send})
        self.ConnectionCls = stamped_classes[current]
        return base._new_conn(self)

    def _make_request(self: HTTPConnectionPool, conn: Any, method: str, url: str, **kwargs: Any) -> Any:
        if getattr(conn, "sock", True) is None:  # a new connection: set it up outside the slot
            timeout = self._get_timeout(kwargs.get("timeout", Timeout.DEFAULT_TIMEOUT))
            conn.timeout = Timeout.resolve_default_timeout(timeout.connect_timeout)
            conn.connect()
        conn._gridpulse_slot = url
        response = base._make_request(self, conn, method, url, **kwargs)
        if conn.__dict__.pop("_gridpulse_slot", None) is not None:  # it never went through send
            before_send(url)
        return response

    return type(f"Stamped{base.__name__}", (base,), {"_make_request": _make_request, "_new_conn": _new_conn})


class StampingAdapter(HTTPAdapter):
    """requests' adapter whose pools call `before_send` as each request leaves (see _stamped_pool)."""

    def __init__(self, before_send: Callable[[str], None], **kwargs: Any) -> None:
        self._before_send = before_send
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _stamped_pool(HTTPConnectionPool, self._before_send),
            "https": _stamped_pool(HTTPSConnectionPool, self._before_send),
        }


class EIAClient:
    """Fetches complete windows of EIA-930 rows from one EIA API v2 base URL."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        timeout: float = 60.0,
        max_tries: int = 6,
        retry_base: float = 1.0,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.limiter = limiter or RateLimiter()
        self._sending = threading.local()  # the calling worker's cancel event, for _before_send
        self.stamps: list[tuple[float, str]] | None = None  # (stamp, url) when a benchmark asks
        # Our own session takes the limiter slot as the request leaves; a caller's session
        # (tests, recorders) takes it before the call.
        self._stamped = session is None
        self.session = session or self._new_session(self._before_send)
        self.timeout = (min(10.0, timeout), timeout)
        self.page_size = page_size
        self.stats = ClientStats()
        self.max_tries = max_tries
        self.retry_base = retry_base

    @staticmethod
    def _new_session(before_send: Callable[[str], None]) -> requests.Session:
        session = requests.Session()
        adapter = StampingAdapter(before_send, pool_connections=4, pool_maxsize=16, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = f"gridpulse/{__version__}"
        return session

    def _before_send(self, url: str = "") -> None:
        """Take the limiter slot (blocks; Cancelled when the worker's run stops) and count it."""
        stamp = self.limiter.acquire(getattr(self._sending, "cancel", None))
        self.stats.add(requests=1)
        if self.stamps is not None:
            self.stamps.append((stamp, url))

    def url(self, route: Route) -> str:
        return f"{self.base_url}/electricity/rto/{route.name}/data/"

    def _get_json(
        self, url: str, params: list[tuple[str, str]], cancel: threading.Event | None
    ) -> tuple[dict[str, Any], bytes | None]:
        """One request, retried on transient failures with exponential backoff and full jitter.

        The waits (the limiter's and the backoff's) end at once when `cancel` is set, so a
        stopping run can join its fetch threads within moments.
        """
        for attempt in range(1, self.max_tries + 1):
            try:
                return self._get_json_once(url, params, cancel)
            except EIARetryableError as exc:
                if attempt == self.max_tries:
                    raise
                delay = random.uniform(0, min(MAX_BACKOFF_SECONDS, self.retry_base * 2 ** (attempt - 1)))
                if isinstance(exc, EIAThrottledError) and exc.retry_after is not None:
                    delay = max(delay, min(MAX_BACKOFF_SECONDS, exc.retry_after))
                self.stats.add(retries=1)
                # DEBUG, not WARNING: the run's summary counts retries, and a failure's one error
                # line says how many tries failed; cron logs stay one line per outcome.
                log.debug(
                    "EIA request failed (%s); retry %d/%d in %.1f s", exc, attempt, self.max_tries - 1, delay
                )
                wait_or_cancel(delay, cancel)
        raise AssertionError("unreachable")

    def _get_json_once(
        self, url: str, params: list[tuple[str, str]], cancel: threading.Event | None
    ) -> tuple[dict[str, Any], bytes | None]:
        if self._stamped:
            self._sending.cancel = cancel
        else:
            self._before_send()
        try:
            response = self.session.get(url, params=[*params, ("api_key", self._key)], timeout=self.timeout)
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ):
            raise ConfigError(
                f"GRIDPULSE_EIA_URL {self.base_url!r} is not a usable URL (like https://api.eia.gov/v2)"
            ) from None
        except requests.RequestException as exc:
            raise EIARetryableError(f"{type(exc).__name__}: {self._network_reason(exc)}") from None
        return self._check_response(response)

    def _clean(self, exc: BaseException | str) -> str:
        return redact(str(exc), self._key)

    def _network_reason(self, exc: requests.RequestException) -> str:
        """What went wrong on the wire, in a few words: requests' own text repeats the whole URL
        and the exception chain, which made the error line five terminal lines long."""
        if isinstance(exc, requests.exceptions.Timeout):
            return f"no answer within {self.timeout[1]:g} s"
        text = str(exc)
        for needle, reason in _NETWORK_REASONS:
            if needle in text:
                return reason
        return shorten(self._clean(_URL_IN_ERROR.sub("", text)), 80)

    def _check_response(self, response: requests.Response) -> tuple[dict[str, Any], bytes | None]:
        status = response.status_code
        try:
            body = orjson.loads(response.content)  # ~3x the stdlib's speed on 5,000-row pages
        except (ValueError, requests.exceptions.RequestException):
            body = None
        code, message = _error_message(body)
        if status == 403 or code.startswith("API_KEY"):
            detail = message or response.reason or "forbidden"
            said = shorten(self._clean(detail).split(". ")[0].rstrip("."), 60)  # EIA's first sentence
            raise EIAKeyError(f"EIA rejected the API key: {said} ({code or status}); check EIA_API_KEY")
        if status == 429 or code == "OVER_RATE_LIMIT":
            self.stats.add(throttled=1)
            retry_after = _retry_after(response.headers.get("Retry-After"))
            self.limiter.throttled(retry_after)
            raise EIAThrottledError(f"HTTP {status}: over the rate limit ({code or 'no code'})", retry_after)
        if status >= 500:
            raise EIARetryableError(f"HTTP {status}" + (f": {self._clean(message)}" if message else ""))
        if status >= 400:
            raise EIARequestError(
                f"EIA rejected the request (HTTP {status}): {shorten(self._clean(message or response.reason), 100)}"
            )
        if body is None:
            raise EIARetryableError("truncated or invalid JSON body")
        if code or message:
            raise EIARetryableError(f"error body with HTTP {status}: {self._clean(message)} ({code})")
        data = body.get("response", {}).get("data") if isinstance(body.get("response"), dict) else None
        if not isinstance(data, list):
            raise EIARetryableError("response has no data list")
        return strip_key(body), strip_key_bytes(response.content, self._key)

    def _get_page(
        self, route: Route, params: list[tuple[str, str]], cancel: threading.Event | None = None
    ) -> Page:
        try:
            body, raw = self._get_json(self.url(route), params, cancel)
        except EIARetryableError as exc:
            raise EIAUnavailableError(
                f"EIA API at {self.base_url} failed {self.max_tries} times for {route.name}: {exc}"
            ) from None
        return Page(
            route=route.name,
            params=_params_dict(params),
            body=body,
            rows=body["response"]["data"],
            total=parse_total(body["response"].get("total")),
            fetched_at=datetime.now(UTC),
            raw=raw,
        )

    def fetch_window(
        self,
        route: Route,
        facets: Mapping[str, Sequence[str]],
        start: datetime,
        end_inclusive: datetime,
        cancel: threading.Event | None = None,
    ) -> list[Page]:
        """Return every page of one window; each row appears once across the pages.

        Pages are requested with a full-key sort; if `total` moves between pages the data
        changed under us and the whole window is fetched again. Setting `cancel` (from another
        thread) abandons the window with stopping.Cancelled at the next wait.
        """
        params_at = partial(build_params, route, facets, start, end_inclusive)
        for attempt in range(MAX_WINDOW_RESTARTS + 1):
            pages = self._fetch_pages(route, params_at, cancel)
            if pages is not None:
                return _drop_duplicates(route, pages, self.stats)
            if attempt == MAX_WINDOW_RESTARTS:
                break
            self.stats.add(restarts=1)
            log.warning(
                "%s %s..%s changed while paging; fetching the window again (%d/%d)",
                route.name,
                eia_period(start),
                eia_period(end_inclusive),
                attempt + 1,
                MAX_WINDOW_RESTARTS,
            )
        raise EIAUnavailableError(
            f"EIA's {route.name} data for {eia_period(start)}..{eia_period(end_inclusive)} "
            f"kept changing while paging ({MAX_WINDOW_RESTARTS + 1} attempts)"
        )

    def _fetch_pages(
        self, route: Route, params_at: PageParams, cancel: threading.Event | None
    ) -> list[Page] | None:
        """Fetch a window page by page (`params_at(offset, length)` asks for one page); None when
        the data moved and the window must restart."""
        pages: list[Page] = []
        offset, total = 0, None
        while total is None or offset < total:
            params = params_at(offset, self.page_size)
            page = self._get_page(route, params, cancel)
            if total is not None and page.total != total:
                return None
            total = page.total
            if not page.rows and offset < total:
                return None  # fewer rows than promised: the data moved
            pages.append(page)
            offset += len(page.rows)
            log.debug("%s offset %d: %d rows of %d", route.name, offset, len(page.rows), total)
        return pages


def _params_dict(params: list[tuple[str, str]]) -> dict[str, Any]:
    """Request parameters as a JSON-able dict (facets grouped), for the audit archive."""
    out: dict[str, Any] = {}
    for name, value in params:
        if name.endswith("[]"):
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _drop_duplicates(route: Route, pages: list[Page], stats: ClientStats) -> list[Page]:
    """Drop rows whose full key was already seen on an earlier page (warn; EIA's paging defect)."""
    if len(pages) < 2:
        return pages  # the defect is between pages; one page cannot repeat a row of another
    seen: set[tuple[Any, ...]] = set()
    dropped = 0
    for page in pages:
        kept = []
        for row in page.rows:
            key = tuple(row.get(column) for column in route.key_columns)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            kept.append(row)
        page.rows = kept
    if dropped:
        stats.add(duplicates=dropped)
        log.warning("%s: dropped %s repeated across pages", route.name, plural(dropped, "duplicate row"))
    return pages


__all__ = ["PAGE_SIZE", "EIAClient", "EIAError", "Page", "RateLimiter", "build_params", "parse_total"]
