"""vcrpy set-up for replaying the real EIA responses kept in ``cassettes/``.

The cassettes were recorded by other clients (see ``cassettes/README.md``), so their query strings
differ from ours: they sort on ``period`` only, send bare dates (``start=2023-01-01``), leave out
``offset``/``length``/``frequency``, and the key was removed. gridpulse sorts on the full key,
sends ``YYYY-MM-DDTHH`` bounds, ``offset``, ``length`` and ``api_key``. The ``eia_query`` matcher
compares what decides *which rows* EIA returns and ignores the rest:

- path (``match_on`` also checks method, scheme, host and port),
- ``frequency`` (missing = ``hourly``, the rto routes' ``defaultFrequency`` in
  ``eia-samples/metadata-fuel-type-data-apiv2.1.8-2024-12.json``),
- ``facets[...][]`` compared as sets of (facet, value),
- ``start``/``end`` with a bare date meaning ``T00`` (EIA's own rule),
- ``offset`` (missing = 0) and ``length`` (missing = 5000),
- ignoring ``sort[...]``, ``data[...]`` and ``api_key``.

Playback only (``record_mode="none"``): an unmatched request raises
``CannotOverwriteExistingCassetteException``, it never reaches the network.

Compressed bodies: vcrpy 9 with urllib3 2 hands its stub response straight to requests, bypassing
urllib3's content decoder, so a stored ``Content-Encoding: gzip`` body would reach the client still
compressed (the live API path is decoded by urllib3). ``decode_compressed_response=True`` makes vcrpy
gunzip such bodies when it loads the cassette (the file on disk stays compressed, as recorded).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import vcr

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
BASE_URL = "https://api.eia.gov/v2"  # the cassettes were recorded against the real API

_FACET = re.compile(r"^facets\[([^\]]*)\]\[\]$")
_IGNORED = re.compile(r"^(sort\[\d+\]\[(column|direction)\]|data\[\d+\]|api_key)$")
DEFAULT_FREQUENCY = "hourly"
DEFAULT_OFFSET = 0
DEFAULT_LENGTH = 5000


def _period(value: str | None) -> str | None:
    if not value:
        return None
    return value if "T" in value else f"{value}T00"


def _int(value: str | None, default: int) -> int | str:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        return value  # compared as given; a malformed value only matches itself


def eia_query_key(uri: str) -> dict[str, Any]:
    """What in an EIA data request decides the rows returned, normalised for comparison."""
    scalars: dict[str, str] = {}
    facets: set[tuple[str, str]] = set()
    other: set[tuple[str, str]] = set()
    for name, value in parse_qsl(urlsplit(uri).query, keep_blank_values=True):
        if m := _FACET.match(name):
            facets.add((m[1], value))
        elif _IGNORED.match(name):
            continue
        elif name in ("frequency", "start", "end", "offset", "length"):
            scalars[name] = value
        else:
            other.add((name, value))
    return {
        "frequency": scalars.get("frequency") or DEFAULT_FREQUENCY,
        "facets": facets,
        "start": _period(scalars.get("start")),
        "end": _period(scalars.get("end")),
        "offset": _int(scalars.get("offset"), DEFAULT_OFFSET),
        "length": _int(scalars.get("length"), DEFAULT_LENGTH),
        "other": other,
    }


def eia_query(r1: Any, r2: Any) -> None:
    """vcrpy matcher: raise AssertionError naming the first field that differs."""
    a, b = eia_query_key(r1.uri), eia_query_key(r2.uri)
    for field in a:
        if a[field] != b[field]:
            raise AssertionError(f"{field}: {a[field]!r} != {b[field]!r}")


def eia_vcr() -> vcr.VCR:
    """A playback-only VCR for the EIA cassettes."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=["method", "scheme", "host", "port", "path", "eia_query"],
        filter_query_parameters=["api_key"],
        decode_compressed_response=True,  # see "Compressed bodies" above
    )
    recorder.register_matcher("eia_query", eia_query)
    return recorder


def use_eia_cassette(name: str, *, allow_playback_repeats: bool = False) -> Any:
    """Context manager replaying ``cassettes/<name>``; yields the vcrpy Cassette."""
    if not (CASSETTES / name).is_file():
        raise FileNotFoundError(f"no cassette {name} in {CASSETTES}")
    return eia_vcr().use_cassette(name, allow_playback_repeats=allow_playback_repeats)
