"""A loopback imitation of the EIA API v2 ``electricity/rto`` data routes, for tests and benchmarks.

The stub serves ``GET /v2/electricity/rto/{route}/data/`` for the four EIA-930 hourly routes from
in-memory raw EIA rows (the real field layout, ``value`` as a string or null) and answers with the
real envelope: string ``total``, ``warnings`` "incomplete return" whenever ``total > length`` (on
every page, the last one too), ``request.command`` and the ``request.params`` echo including the
``api_key``. Rows that tie on the requested sort columns come back in a new random order on every
call, as EIA's do, so only a client that sorts on the full key pages exactly.

Faults (5xx, 429, errors in 200 bodies, truncated or invalid JSON, resets, timeouts, a ``total``
that changes mid-paging), latency, a rate limit and a request log make it a test double for the
client's retry, paging and politeness logic. Deterministic generators build realistic rows for any
window. Standard library only::

    with EIAStub(api_key="test-key") as stub:
        stub.set_rows("region-data", make_region_rows(["PJM"], start, end))
        requests.get(f"{stub.url}/electricity/rto/region-data/data/", params=..., timeout=5)
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import gzip as gzip_module
import json
import math
import os
import random
import re
import socket
import struct
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Row = dict[str, Any]
RowFilter = Callable[[Row], bool] | Mapping[str, Any]

ROUTES: tuple[str, ...] = ("region-data", "fuel-type-data", "interchange-data", "region-sub-ba-data")
FIELDS: dict[str, tuple[str, ...]] = {
    "region-data": ("period", "respondent", "respondent-name", "type", "type-name", "value", "value-units"),
    "fuel-type-data": (
        "period",
        "respondent",
        "respondent-name",
        "fueltype",
        "type-name",
        "value",
        "value-units",
    ),
    "interchange-data": ("period", "fromba", "fromba-name", "toba", "toba-name", "value", "value-units"),
    "region-sub-ba-data": ("period", "subba", "subba-name", "parent", "parent-name", "value", "value-units"),
}
FACETS: dict[str, tuple[str, str]] = {
    "region-data": ("respondent", "type"),
    "fuel-type-data": ("respondent", "fueltype"),
    "interchange-data": ("fromba", "toba"),
    "region-sub-ba-data": ("subba", "parent"),
}
# The unique key of a row on each route: period plus both facet columns.
KEYS: dict[str, tuple[str, str, str]] = {route: ("period", *facets) for route, facets in FACETS.items()}
DESCRIPTIONS: dict[str, str] = {
    "region-data": "Hourly demand, day-ahead demand forecast, net generation, and interchange by balancing authority.",
    "fuel-type-data": "Hourly net generation by balancing authority and energy source.",
    "interchange-data": "Hourly net interchange between balancing authorities.",
    "region-sub-ba-data": "Hourly demand by balancing authority subregion.",
}
_DESCRIPTION_TAIL = "  \n    Source: Form EIA-930\n    Product: Hourly Electric Grid Monitor"
API_VERSION = "2.1.8"
DATE_FORMAT = 'YYYY-MM-DD"T"HH24'
MAX_LENGTH = 5000
UNITS = "megawatthours"

TYPE_NAMES: dict[str, str] = {
    "D": "Demand",
    "DF": "Day-ahead demand forecast",
    "NG": "Net generation",
    "TI": "Total interchange",
}
FUEL_NAMES: dict[str, str] = {
    "COL": "Coal",
    "NG": "Natural Gas",
    "NUC": "Nuclear",
    "OIL": "Petroleum",
    "OTH": "Other",
    "SUN": "Solar",
    "WAT": "Hydro",
    "WND": "Wind",
    "UNK": "Unknown",
    "GEO": "Geothermal",
    "BAT": "Battery storage",
    "PS": "Pumped storage",
    "SNB": "Solar with integrated battery storage",
    "UES": "Unknown energy storage",
}
# Active connections of the five MVP BAs in eia930-reference-ba-connections-observable.csv.
DEFAULT_NEIGHBOURS: dict[str, list[str]] = {
    "PJM": ["CPLE", "CPLW", "DUK", "LGEE", "MISO", "NYIS", "TVA"],
    "CISO": ["AZPS", "BANC", "BPAT", "CEN", "IID", "LDWP", "NEVP", "PACW", "SRP", "TIDC", "WALC"],
    "MISO": ["AECI", "IESO", "LGEE", "MHEB", "PJM", "SOCO", "SPA", "SWPP", "TVA"],
    "ERCO": ["CEN", "SWPP"],
    "SWPP": ["AECI", "EPE", "ERCO", "MISO", "PNM", "PSCO", "SPA", "SPC", "WACM", "WAUW"],
}
DEFAULT_SUBBAS: dict[str, list[str]] = {
    "CISO": ["PGAE", "SCE", "SDGE", "VEA"],
    "ERCO": ["COAS", "EAST", "FWES", "NCEN", "NRTH", "SCEN", "SOUT", "WEST"],
}
SUBBA_NAMES: dict[str, str] = {
    "PGAE": "Pacific Gas and Electric",
    "SCE": "Southern California Edison",
    "SDGE": "San Diego Gas and Electric",
    "VEA": "Valley Electric Association",
    "COAS": "Coast",
    "EAST": "East",
    "FWES": "Far West",
    "NCEN": "North Central",
    "NRTH": "North",
    "SCEN": "South Central",
    "SOUT": "Southern",
    "WEST": "West",
}

FAULT_KINDS: frozenset[str] = frozenset(
    {
        "http500",
        "http503",
        "http429",
        "error200",
        "truncated",
        "invalid_json",
        "reset",
        "timeout",
        "http400",
        "total_change",
    }
)

KEY_MISSING_BODY: dict[str, Any] = {
    "error": {
        "code": "API_KEY_MISSING",
        "message": "No api_key was supplied.  Please register for one at https://www.eia.gov/opendata/register.php",
    }
}
KEY_INVALID_BODY: dict[str, Any] = {
    "error": {
        "code": "API_KEY_INVALID",
        "message": "An invalid api_key was supplied. Get one at https://api.eia.gov:443",
    }
}
RATE_LIMIT_BODY: dict[str, Any] = {
    "error": {
        "code": "OVER_RATE_LIMIT",
        "message": "You have exceeded your rate limit. Try again later or contact us at "
        "https://api.eia.gov:443/contact/ for assistance",
    }
}
NOT_FOUND_BODY: dict[str, Any] = {"error": "Not found.", "code": 404}
HTML_503 = b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>"
INVALID_JSON = b'{"response": {"total": "3", "data": ['
INCOMPLETE_WARNING: dict[str, str] = {
    "warning": "incomplete return",
    "description": "The API can only return 5000 rows in JSON format.  Please consider constraining your "
    "request with facet, start, or end, or using offset to paginate results.",
}

_PATH = re.compile(r"^/v2/electricity/rto/([a-z-]+)/data/?$")
_PERIOD = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2})?$")
_FACET_PARAM = re.compile(r"^facets\[([^\]]*)\]\[\]$")
_DATA_PARAM = re.compile(r"^data\[(\d+)\]$")
_SORT_PARAM = re.compile(r"^sort\[(\d+)\]\[(column|direction)\]$")


# --------------------------------------------------------------------------- samples and names


def samples_dir() -> Path:
    """Return the real EIA samples: env ``GRIDPULSE_SAMPLES_DIR``, else the copy in testing/data."""
    env = os.environ.get("GRIDPULSE_SAMPLES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    vendored = here.parent / "data" / "eia-samples"
    if vendored.is_dir():
        return vendored
    for parent in here.parents:
        candidate = parent / "shared" / "eia-samples"
        if candidate.is_dir():
            return candidate
    return here.parents[2] / "shared" / "eia-samples"


@cache
def _names() -> dict[str, str]:
    """Map BA, region and foreign-area codes to EIA's names, from the shared reference files."""
    names: dict[str, str] = {}
    base = samples_dir()
    with contextlib.suppress(OSError, ValueError, KeyError):
        facets = json.loads(
            (base / "gridemissions-facet-values-region+fuel-type+interchange-2024-07.json").read_text()
        )
        for route_facets in facets.values():
            for items in route_facets.values():
                for item in items:
                    names.setdefault(item["id"], item["name"])
    with (
        contextlib.suppress(OSError, KeyError),
        (base / "eia930-reference-balancing-authorities-observable.csv").open(
            newline="", encoding="utf-8"
        ) as fh,
    ):
        for rec in csv.DictReader(fh):
            names[rec["BA Code"]] = rec["BA Name"]
            if rec.get("Region/Country Code"):
                names.setdefault(rec["Region/Country Code"], rec["Region/Country Name"])
    return names


def ba_name(code: str) -> str:
    """Return EIA's name for a BA or region code, or the code itself when unknown."""
    return _names().get(code, code)


@cache
def _sample_rows(route: str) -> tuple[tuple[tuple[str, Any], ...], ...]:
    path = samples_dir() / f"gridemissions-apirows-{route}-allBA-2022-07-10T00_2022-07-11T00.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return tuple(
            tuple((k, (v if v != "" else None) if k == "value" else v) for k, v in rec.items())
            for rec in csv.DictReader(fh)
        )


def load_sample_rows(route: str) -> list[Row]:
    """Return the real API rows captured for ``route`` over 2022-07-10T00..2022-07-11T00 (all BAs)."""
    if route not in ("region-data", "fuel-type-data", "interchange-data"):
        raise ValueError(f"no sample rows for route {route!r}")
    return [dict(rec) for rec in _sample_rows(route)]


# --------------------------------------------------------------------------- generators

_TABLE = 4099  # prime, so different strides through the noise tables do not line up
_rng = random.Random(930)
_NOISE: list[float] = [max(-1.0, min(1.0, _rng.gauss(0.0, 0.4))) for _ in range(_TABLE)]
_UNIF: list[float] = [_rng.random() for _ in range(_TABLE)]
del _rng
# Load shape by UTC hour-ending (US peak late afternoon local ~ 22Z) and by day of year (summer peak).
_DAILY: list[float] = [0.88 + 0.12 * math.cos(2 * math.pi * (h - 22) / 24) for h in range(24)]
_SEASON: list[float] = [0.08 * math.cos(2 * math.pi * (d - 200) / 365) for d in range(366)]
_SOLAR: list[float] = [max(0.0, math.cos(2 * math.pi * (h - 20) / 24)) ** 1.5 for h in range(24)]
_LEVELS: dict[str, int] = {"PJM": 90000, "MISO": 75000, "ERCO": 50000, "SWPP": 33000, "CISO": 25000}
_FUEL_SHARE: dict[str, float] = {
    "COL": 0.2,
    "NG": 0.4,
    "NUC": 0.18,
    "OIL": 0.005,
    "OTH": 0.01,
    "SUN": 0.12,
    "WAT": 0.05,
    "WND": 0.15,
}


def _crc(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def _to_hour(value: datetime | str) -> datetime:
    """Return ``value`` as an aware UTC datetime on the hour (strings: ``YYYY-MM-DD[THH]``)."""
    if isinstance(value, str):
        value = datetime.strptime(value if "T" in value else value + "T00", "%Y-%m-%dT%H")
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(minute=0, second=0, microsecond=0)


def _hours(start: datetime | str, end: datetime | str) -> list[tuple[str, int]]:
    """Return ``(period, hours since epoch)`` for every hour ending in ``[start, end]``."""
    first, last = _to_hour(start), _to_hour(end)
    count = int((last - first).total_seconds() // 3600) + 1
    base = int(first.timestamp()) // 3600
    return [((first + timedelta(hours=i)).strftime("%Y-%m-%dT%H"), base + i) for i in range(max(count, 0))]


def _decimal(x: float) -> str:
    """Format like EIA's decimals: ``4225.3001``, ``.3``."""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return text[1:] if text.startswith("0.") else text


def _fmt(x: float, u: float) -> str:
    """Stringify a value as EIA does: mostly integers, about 2% decimals."""
    return _decimal(x) if u < 0.02 else str(round(x))


def _level(code: str, seed: int) -> float:
    return float(_LEVELS.get(code, 800 + _crc(seed, "level", code) % 15000))


def make_region_rows(
    respondents: Iterable[str],
    start: datetime | str,
    end: datetime | str,
    types: Sequence[str] = ("D", "DF", "NG", "TI"),
    seed: int = 0,
    null_fraction: float = 0.0,
) -> list[Row]:
    """Return region-data rows (D/DF/NG/TI) for each respondent and hour ending in ``[start, end]``.

    Values depend only on seed, respondent, type and hour, so overlapping windows agree.
    """
    hours = _hours(start, end)
    rows: list[Row] = []
    append = rows.append
    noise, unif, daily, season, n = _NOISE, _UNIF, _DAILY, _SEASON, _TABLE
    for resp in respondents:
        name, level = ba_name(resp), _level(resp, seed)
        off = _crc(seed, "region", resp)
        for period, idx in hours:
            k = (idx + off) % n
            d = level * (daily[idx % 24] + season[(idx // 24) % 366]) * (1 + 0.03 * noise[k])
            ti = level * 0.06 * noise[(k * 3 + 5) % n]
            values = {"D": d, "DF": d * (1 + 0.04 * noise[(k * 7 + 1) % n]), "NG": d + ti, "TI": ti}
            for j, typ in enumerate(types):
                u = unif[(k * 11 + j * 13) % n]
                x = values.get(typ, d)
                append(
                    {
                        "period": period,
                        "respondent": resp,
                        "respondent-name": name,
                        "type": typ,
                        "type-name": TYPE_NAMES.get(typ, typ),
                        "value": None if u < null_fraction else _fmt(x, unif[(k * 5 + j) % n]),
                        "value-units": UNITS,
                    }
                )
    return rows


def make_fuel_rows(
    respondents: Iterable[str],
    start: datetime | str,
    end: datetime | str,
    fuels: Sequence[str] = ("COL", "NG", "NUC", "OIL", "OTH", "SUN", "WAT", "WND"),
    seed: int = 0,
    null_fraction: float = 0.0,
) -> list[Row]:
    """Return fuel-type-data rows for each respondent, fuel and hour ending in ``[start, end]``.

    Solar is zero or slightly negative at night, wind occasionally negative, nuclear flat.
    """
    hours = _hours(start, end)
    rows: list[Row] = []
    append = rows.append
    noise, unif, daily, solar, n = _NOISE, _UNIF, _DAILY, _SOLAR, _TABLE
    for resp in respondents:
        name, level = ba_name(resp), _level(resp, seed)
        offs = [_crc(seed, "fuel", resp, f) for f in fuels]
        caps = [
            level * _FUEL_SHARE.get(f, 0.02) * (0.5 + (o % 1000) / 1000)
            for f, o in zip(fuels, offs, strict=True)
        ]
        for period, idx in hours:
            hod = idx % 24
            for fuel, off, cap in zip(fuels, offs, caps, strict=True):
                k = (idx + off) % n
                u = unif[k]
                if fuel == "SUN":
                    x = (
                        cap * solar[hod] * (0.8 + 0.2 * noise[k])
                        if solar[hod] > 0
                        else (-(k % 3) if u < 0.3 else 0)
                    )
                elif fuel == "WND":
                    x = cap * (0.45 + 0.55 * noise[(idx // 8 + off) % n]) if cap > 30 else cap * noise[k]
                elif fuel == "NUC":
                    x = cap if u > 0.01 else cap * 0.5
                elif fuel == "OIL":
                    x = 0 if u < 0.4 else cap * (1 + noise[k])
                else:
                    x = cap * daily[hod] * (1 + 0.1 * noise[k])
                append(
                    {
                        "period": period,
                        "respondent": resp,
                        "respondent-name": name,
                        "fueltype": fuel,
                        "type-name": FUEL_NAMES.get(fuel, fuel),
                        "value": None
                        if unif[(k * 17 + 3) % n] < null_fraction
                        else _fmt(x, unif[(k * 5 + 2) % n]),
                        "value-units": UNITS,
                    }
                )
    return rows


def make_interchange_rows(
    pairs: Mapping[str, Sequence[str]] | None,
    start: datetime | str,
    end: datetime | str,
    seed: int = 0,
) -> list[Row]:
    """Return interchange-data rows for each ``fromba -> toba`` pair and hour ending in ``[start, end]``.

    ``pairs`` maps fromba to its neighbours (default: ``DEFAULT_NEIGHBOURS``). B->A is minus A->B.
    """
    hours = _hours(start, end)
    rows: list[Row] = []
    append = rows.append
    noise, unif, n = _NOISE, _UNIF, _TABLE
    for frm, tos in (DEFAULT_NEIGHBOURS if pairs is None else pairs).items():
        frm_name = ba_name(frm)
        for to in tos:
            lo, hi = sorted((frm, to))
            sign = 1.0 if frm == lo else -1.0
            off = _crc(seed, "interchange", lo, hi)
            cap = sign * (150 + off % 3000)
            bias = noise[off % n]
            to_name = ba_name(to)
            for period, idx in hours:
                k = (idx + off) % n
                x = cap * (bias + 0.5 * noise[k])
                append(
                    {
                        "period": period,
                        "fromba": frm,
                        "fromba-name": frm_name,
                        "toba": to,
                        "toba-name": to_name,
                        "value": _fmt(x, unif[(k * 5 + 4) % n]),
                        "value-units": UNITS,
                    }
                )
    return rows


def make_subba_rows(
    parents: Mapping[str, Sequence[str]] | None,
    start: datetime | str,
    end: datetime | str,
    seed: int = 0,
) -> list[Row]:
    """Return region-sub-ba-data demand rows for each parent's subregions (default ``DEFAULT_SUBBAS``)."""
    hours = _hours(start, end)
    rows: list[Row] = []
    append = rows.append
    noise, unif, daily, season, n = _NOISE, _UNIF, _DAILY, _SEASON, _TABLE
    for parent, subbas in (DEFAULT_SUBBAS if parents is None else parents).items():
        parent_name, level = ba_name(parent), _level(parent, seed)
        for subba in subbas:
            off = _crc(seed, "subba", parent, subba)
            share = level * (0.05 + (off % 1000) / 2500)
            subba_name = SUBBA_NAMES.get(subba, subba)
            for period, idx in hours:
                k = (idx + off) % n
                x = share * (daily[idx % 24] + season[(idx // 24) % 366]) * (1 + 0.04 * noise[k])
                append(
                    {
                        "period": period,
                        "subba": subba,
                        "subba-name": subba_name,
                        "parent": parent,
                        "parent-name": parent_name,
                        "value": _fmt(x, unif[(k * 5 + 6) % n]),
                        "value-units": UNITS,
                    }
                )
    return rows


# --------------------------------------------------------------------------- request log


@dataclass
class RequestRecord:
    """One request as the stub saw it; the api_key value is never kept (``has_key`` only)."""

    arrived: float
    route: str | None
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    has_key: bool = False
    status: int = 0  # 0: connection closed without an answer (reset) or never answered
    rows: int = 0
    fault: str | None = None
    finished: float | None = None


@dataclass
class _Fault:
    kind: str
    times: int
    route: str | None
    after: int


class _BadRequestError(Exception):
    """A parameter EIA would reject with HTTP 400."""


@dataclass
class _Query:
    """The parsed query string of a data request."""

    api_key: str | None = None
    frequency: str | None = None
    data: list[str] = field(default_factory=list)
    facets: dict[str, list[str]] = field(default_factory=dict)
    start: str | None = None
    end: str | None = None
    sort: list[tuple[str, str]] = field(default_factory=list)
    offset: str | None = None
    length: str | None = None
    echo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, query: str) -> _Query:
        """Parse EIA's bracketed parameters, keeping the echo in the order received."""
        q = cls()
        sorts: dict[int, dict[str, str]] = {}
        data: dict[int, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            if m := _FACET_PARAM.match(name):
                q.facets.setdefault(m[1], []).append(value)
                q.echo.setdefault("facets", q.facets)
            elif m := _DATA_PARAM.match(name):
                data[int(m[1])] = value
                q.echo["data"] = None
            elif m := _SORT_PARAM.match(name):
                sorts.setdefault(int(m[1]), {})[m[2]] = value
                q.echo["sort"] = None
            elif name in ("api_key", "frequency", "start", "end", "offset", "length"):
                setattr(q, name, value)
                q.echo[name] = value
        q.data = [data[i] for i in sorted(data)]
        sort_echo = [sorts[i] for i in sorted(sorts)]
        q.sort = [(s.get("column", ""), s.get("direction", "asc")) for s in sort_echo]
        if "data" in q.echo:
            q.echo["data"] = q.data
        if "sort" in q.echo:
            q.echo["sort"] = sort_echo
        return q

    def record(self) -> dict[str, Any]:
        """Return the loggable parameters (no key)."""
        return {
            "frequency": self.frequency,
            "data": list(self.data),
            "facets": {k: list(v) for k, v in self.facets.items()},
            "start": self.start,
            "end": self.end,
            "offset": _int_or_raw(self.offset, 0),
            "length": _int_or_raw(self.length, MAX_LENGTH),
            "sort": list(self.sort),
        }


def query_record(query: str) -> dict[str, Any]:
    """The logged parameters (``RequestRecord.params``) of a raw query string: lets a client's own
    record of a request (a benchmark's limiter stamps) be matched to the stub's arrival."""
    return _Query.parse(query).record()


def _int_or_raw(value: str | None, default: int) -> int | str:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return value


def _norm_period(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not _PERIOD.match(value):
        raise _BadRequestError(f"Invalid {name} '{value}'. Expected format YYYY-MM-DDTHH.")
    return value if "T" in value else value + "T00"


def _sort_key(column: str) -> Callable[[Row], Any]:
    if column == "value":
        return lambda r: (r["value"] is not None, float(r["value"]) if r["value"] is not None else 0.0)
    return itemgetter(column)


# --------------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    stub: EIAStub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openresty"
    sys_version = ""
    timeout = 30
    server: _Server

    def log_message(self, *args: Any) -> None:
        """Stay quiet: tests read ``stub.requests`` instead."""

    def setup(self) -> None:
        """Track the connection so ``stop()`` can close it."""
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle + delayed ACK stall
        # every response on a kept-alive connection by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.stub._track(self.connection, add=True)

    def finish(self) -> None:
        """Untrack the connection."""
        self.server.stub._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        """Answer one request through the stub."""
        self.server.stub._serve(self)

    def send_body(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Send a complete response."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class EIAStub:
    """An EIA API v2 look-alike on 127.0.0.1; use as a context manager or ``start()``/``stop()``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        latency: float = 0.0,
        max_per_second: int | None = None,
        max_per_hour: int | None = None,
        gzip: bool = False,
        timeout_sleep: float = 3.0,
        shuffle_seed: int | None = None,
    ) -> None:
        """Configure the stub; ``api_key=None`` accepts any key, even none."""
        self.api_key = api_key
        self.latency = latency
        self.max_per_second = max_per_second
        self.max_per_hour = max_per_hour
        self.gzip = gzip
        self.timeout_sleep = timeout_sleep
        self.violations = 0
        self.max_concurrency = 0
        self._lock = threading.Lock()
        self._random = random.Random(shuffle_seed)
        self._data: dict[str, tuple[list[Row], list[str]]] = {route: ([], []) for route in ROUTES}
        self._version = 0
        self._cache: OrderedDict[tuple[Any, ...], list[Row]] = OrderedDict()
        self._faults: list[_Fault] = []
        self._log: list[RequestRecord] = []
        self._arrivals: deque[float] = deque()
        self._in_flight = 0
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EIAStub:
        """Bind a free loopback port and serve from a daemon thread."""
        if self._server is None:
            self._stopping.clear()
            server = _Server(("127.0.0.1", 0), _Handler)
            server.stub = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the port and every open connection; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EIAStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("EIAStub is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL a client uses, e.g. ``http://127.0.0.1:PORT/v2``."""
        return f"http://127.0.0.1:{self.port}/v2"

    def route_url(self, route: str) -> str:
        """The full data URL of ``route``."""
        return f"{self.url}/electricity/rto/{route}/data/"

    # ------------------------------------------------------------------ data

    def set_rows(self, route: str, rows: Iterable[Row]) -> None:
        """Replace the rows of ``route`` (kept by reference: change them with ``revise``)."""
        self._store(route, list(rows), append=False)

    def add_rows(self, route: str, rows: Iterable[Row]) -> None:
        """Append rows to ``route``."""
        self._store(route, list(rows), append=True)

    def rows(self, route: str) -> list[Row]:
        """Return copies of the rows of ``route``, ordered by period."""
        with self._lock:
            return [dict(r) for r in self._data[_check_route(route)][0]]

    def revise(
        self, route: str, where: RowFilter, new_value: str | Callable[[Row], str | None] | None
    ) -> int:
        """Set ``value`` of the matching rows (``where``: predicate or field mapping); return the count."""
        match = _matcher(where)
        changed = 0
        with self._lock:
            rows, periods = self._data[_check_route(route)]
            out = []
            for r in rows:
                if match(r):
                    r = {**r, "value": new_value(r) if callable(new_value) else new_value}
                    changed += 1
                out.append(r)
            self._data[route] = (out, periods)
            self._bump()
        return changed

    def drop(self, route: str, where: RowFilter) -> int:
        """Remove the matching rows (a gap); return how many went."""
        match = _matcher(where)
        with self._lock:
            rows = self._data[_check_route(route)][0]
            kept = [r for r in rows if not match(r)]
            self._data[route] = (kept, [r["period"] for r in kept])
            self._bump()
        return len(rows) - len(kept)

    def clear(self) -> None:
        """Remove every row of every route."""
        for route in ROUTES:
            self._store(route, [], append=False)

    def _store(self, route: str, rows: list[Row], *, append: bool) -> None:
        _check_route(route)
        if rows and not set(FIELDS[route]) <= rows[0].keys():
            raise ValueError(f"rows for {route} need the fields {FIELDS[route]}, got {sorted(rows[0])}")
        with self._lock:
            if append:
                rows = self._data[route][0] + rows
            rows.sort(key=itemgetter("period"))  # already sorted data makes this linear
            self._data[route] = (rows, [r["period"] for r in rows])
            self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._cache.clear()

    # ------------------------------------------------------------------ faults and log

    def fail_next(self, kind: str, times: int = 1, route: str | None = None, *, after: int = 0) -> None:
        """Inject ``kind`` into the next ``times`` matching requests, after letting ``after`` pass."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; valid: {sorted(FAULT_KINDS)}")
        if route is not None:
            _check_route(route)
        with self._lock:
            self._faults.append(_Fault(kind, times, route, after))

    def clear_faults(self) -> None:
        """Forget pending faults."""
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected faults have not fired yet."""
        with self._lock:
            return sum(f.times for f in self._faults)

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, in order of arrival."""
        with self._lock:
            return sorted(self._log, key=lambda r: r.arrived)

    def reset_log(self) -> None:
        """Clear the request log, the violation count and the concurrency high-water mark."""
        with self._lock:
            self._log.clear()
            self._arrivals.clear()
            self.violations = 0
            self.max_concurrency = 0

    def _take_fault(self, route: str | None) -> str | None:
        with self._lock:
            matching = [f for f in self._faults if f.route is None or f.route == route]
            ready = next((f for f in matching if f.after == 0), None)
            for f in matching:
                if f.after > 0:
                    f.after -= 1
            if ready is None:
                return None
            ready.times -= 1
            if ready.times <= 0:
                self._faults.remove(ready)
            return ready.kind

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _over_limit(self, now: float) -> bool:
        with self._lock:
            arrivals = self._arrivals
            arrivals.append(now)
            horizon = 3600.0 if self.max_per_hour is not None else 1.0
            while arrivals and arrivals[0] <= now - horizon:
                arrivals.popleft()
            over = False
            if self.max_per_second is not None:
                over = len(arrivals) - bisect.bisect_right(arrivals, now - 1.0) > self.max_per_second
            if self.max_per_hour is not None:
                over = over or len(arrivals) > self.max_per_hour
            if over:
                self.violations += 1
            return over

    # ------------------------------------------------------------------ serving

    def _serve(self, h: _Handler) -> None:
        arrived = time.monotonic()
        split = urlsplit(h.path)
        m = _PATH.match(split.path)
        route = m[1] if m and m[1] in ROUTES else None
        query = _Query.parse(split.query)
        rec = RequestRecord(arrived, route, split.path, query.record(), has_key=bool(query.api_key))
        with self._lock:
            self._in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self._in_flight)
            self._log.append(rec)
        try:
            self._answer(h, rec, query, route, accepts_gzip="gzip" in h.headers.get("Accept-Encoding", ""))
        except OSError:
            h.close_connection = True  # the client went away (e.g. after its own timeout)
        finally:
            self._done(rec)

    def _done(self, rec: RequestRecord) -> None:
        """Close the record before the answer leaves, so a client that got it sees a complete log."""
        with self._lock:
            if rec.finished is None:
                rec.finished = time.monotonic()
                self._in_flight -= 1

    def _answer(
        self, h: _Handler, rec: RequestRecord, query: _Query, route: str | None, accepts_gzip: bool
    ) -> None:
        def send(
            status: int, payload: bytes | dict[str, Any], headers: Mapping[str, str] | None = None
        ) -> None:
            if isinstance(payload, dict):
                # EIA pretty-prints its 403 bodies and sends everything else compact.
                text = (
                    json.dumps(payload, indent=2)
                    if status == 403
                    else json.dumps(payload, separators=(",", ":"))
                )
                body = text.encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            else:
                body = payload
            if self.gzip and accepts_gzip:
                body = gzip_module.compress(body, compresslevel=1, mtime=0)
                headers = {**(headers or {}), "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
            self._wait(self.latency)
            rec.status = status
            self._done(rec)
            h.send_body(status, body, headers)

        if self._over_limit(rec.arrived):
            rec.fault = "rate_limit"
            return send(429, RATE_LIMIT_BODY, {"Retry-After": "1"})

        fault = rec.fault = self._take_fault(route)
        if fault == "http500":
            return send(500, NOT_FOUND_BODY)
        if fault == "http503":
            return send(503, HTML_503, {"Content-Type": "text/html"})
        if fault == "http429":
            return send(429, RATE_LIMIT_BODY, {"Retry-After": "1"})
        if fault == "error200":
            return send(200, {"error": "Internal error", "code": 500})
        if fault == "http400":
            return send(400, {"error": "Invalid sort column", "code": 400})
        if fault == "invalid_json":
            return send(200, INVALID_JSON, {"Content-Type": "application/json"})
        if fault == "reset":
            self._wait(self.latency)
            self._done(rec)
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            return None
        if fault == "timeout":
            self._wait(self.timeout_sleep)

        if self.api_key is not None and not query.api_key:
            return send(403, KEY_MISSING_BODY)
        if self.api_key is not None and query.api_key != self.api_key:
            return send(403, KEY_INVALID_BODY)
        if route is None:
            return send(404, NOT_FOUND_BODY)
        try:
            body, rec.rows = self._page(route, query, grow=fault == "total_change")
        except _BadRequestError as exc:
            return send(400, {"error": str(exc), "code": 400})
        if fault == "truncated":
            rec.status = 200
            self._wait(self.latency)
            self._done(rec)
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return None
        return send(200, body, {"Content-Type": "application/json"})

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _page(self, route: str, q: _Query, *, grow: bool) -> tuple[bytes, int]:
        """Validate ``q`` and return the JSON page and how many rows it holds."""
        if q.frequency != "hourly":
            raise _BadRequestError(
                f"Invalid frequency '{q.frequency or ''}'. Valid frequencies: hourly, local-hourly."
            )
        fields = FIELDS[route]
        for column in q.data:
            if column != "value":
                raise _BadRequestError(f"Invalid data column '{column}'.")
        for facet in q.facets:
            if facet not in FACETS[route]:
                raise _BadRequestError(f"Invalid facet '{facet}'. Valid facets: {', '.join(FACETS[route])}.")
        for column, direction in q.sort:
            if column not in fields:
                raise _BadRequestError("Invalid sort column")
            if direction not in ("asc", "desc"):
                raise _BadRequestError(f"Invalid sort direction '{direction}'.")
        try:
            offset = int(q.offset) if q.offset not in (None, "") else 0
            length = int(q.length) if q.length not in (None, "") else MAX_LENGTH
        except ValueError:
            raise _BadRequestError("offset and length must be integers.") from None
        if offset < 0 or length < 0:
            raise _BadRequestError("offset and length must not be negative.")
        if length > MAX_LENGTH:
            raise _BadRequestError(f"length must be less than or equal to {MAX_LENGTH}.")
        start, end = _norm_period(q.start, "start"), _norm_period(q.end, "end")
        if grow:
            self._grow(route, q.facets, start, end)

        selected = self._select(route, q.facets, start, end, q.sort)
        total = len(selected)
        page = selected[offset : offset + length]
        if "value" not in q.data:
            page = [{k: v for k, v in r.items() if k not in ("value", "value-units")} for r in page]
        response: dict[str, Any] = {}
        if total > length:
            response["warnings"] = [INCOMPLETE_WARNING]
        response.update(
            total=str(total),
            dateFormat=DATE_FORMAT,
            frequency="hourly",
            data=page,
            description=DESCRIPTIONS[route] + _DESCRIPTION_TAIL,
        )
        envelope = {
            "response": response,
            "request": {"command": f"/v2/electricity/rto/{route}/data/", "params": q.echo},
            "apiVersion": API_VERSION,
            "ExcelAddInVersion": "2.1.0",
        }
        return json.dumps(envelope, separators=(",", ":")).encode(), len(page)

    def _select(
        self,
        route: str,
        facets: Mapping[str, list[str]],
        start: str | None,
        end: str | None,
        sort: list[tuple[str, str]],
    ) -> list[Row]:
        """Filter and sort; ties on the sort columns are shuffled anew on every call."""
        unique = set(KEYS[route]) <= {c for c, _ in sort}
        cache_key = (route, tuple(sorted((k, tuple(v)) for k, v in facets.items())), start, end, tuple(sort))
        with self._lock:
            if unique and cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return self._cache[cache_key]
            rows, periods = self._data[route]
            version = self._version
        lo = bisect.bisect_left(periods, start) if start else 0
        hi = bisect.bisect_right(periods, end) if end else len(periods)
        selected = rows[lo:hi]
        for facet, values in facets.items():
            wanted = set(values)
            selected = [r for r in selected if r[facet] in wanted]
        if not unique:
            with self._lock:
                self._random.shuffle(selected)
        for column, direction in reversed(sort):
            selected.sort(key=_sort_key(column), reverse=direction == "desc")
        if unique:
            with self._lock:
                if version == self._version:
                    self._cache[cache_key] = selected
                    while len(self._cache) > 16:
                        self._cache.popitem(last=False)
        return selected

    def _grow(self, route: str, facets: Mapping[str, list[str]], start: str | None, end: str | None) -> None:
        """Change the window's ``total`` for good.

        Adds one row inside the window under a free key: a gap, else a new code (respondent ``ZZZ``,
        an unseen fuel code); when the facets pin every key column and no hour is free, drops the
        window's last row instead.
        """
        with self._lock:
            rows, periods = self._data[route]
        lo = bisect.bisect_left(periods, start) if start else 0
        hi = bisect.bisect_right(periods, end) if end else len(periods)
        window = [r for r in rows[lo:hi] if all(r[f] in v for f, v in facets.items())]
        first = start or (periods[lo] if lo < hi else "2024-01-01T00")
        last = end or (periods[hi - 1] if lo < hi else first)
        a, b = FACETS[route]
        known = {"type": list(TYPE_NAMES), "fueltype": list(FUEL_NAMES)}.get(b, [])
        present_a, present_b = sorted({r[a] for r in window}), sorted({r[b] for r in window})
        a_values = facets.get(a) or [*present_a, "ZZZ"]
        b_values = facets.get(b) or [*present_b, *(c for c in known if c not in present_b)] or ["ZZZ"]
        taken = {(r["period"], r[a], r[b]) for r in window}
        for period, _ in _hours(first, last)[:10000]:
            for va in a_values:
                for vb in b_values:
                    if (period, va, vb) not in taken:
                        self.add_rows(route, [_synthetic_row(route, period, va, vb)])
                        return
        if window:
            victim = window[-1]
            self.drop(route, lambda r: r is victim)


def _synthetic_row(route: str, period: str, a: str, b: str) -> Row:
    """Return a row of ``route`` with facet values ``a`` and ``b`` and a plausible value."""
    names = {
        "region-data": (ba_name(a), TYPE_NAMES.get(b, b)),
        "fuel-type-data": (ba_name(a), FUEL_NAMES.get(b, b)),
        "interchange-data": (ba_name(a), ba_name(b)),
        "region-sub-ba-data": (SUBBA_NAMES.get(a, a), ba_name(b)),
    }[route]
    f = FIELDS[route]
    return {
        f[0]: period,
        f[1]: a,
        f[2]: names[0],
        f[3]: b,
        f[4]: names[1],
        "value": "42",
        "value-units": UNITS,
    }


def _check_route(route: str) -> str:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; valid: {', '.join(ROUTES)}")
    return route


def _matcher(where: RowFilter) -> Callable[[Row], bool]:
    if callable(where):
        return where
    items = dict(where).items()
    return lambda r: all(r.get(k) == v for k, v in items)
