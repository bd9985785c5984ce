"""Chunk plans: which requests (route, facets, time slice) fetch a window, a backfill or the gaps.

A chunk is one route, one facet set and one time slice; it is fetched completely and committed
atomically, so a re-run simply repeats the chunks that did not commit. Plans are sized in pages
(catalog.PAGE_SIZE rows) from catalog.rows_per_hour. Imports nothing heavy: `fetch` plans too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gridpulse_cli.catalog import (
    DATASETS,
    PAGE_SIZE,
    REGION_DATA,
    ROUTES,
    Route,
    parse_series_id,
    routes_for,
    rows_per_hour,
)
from gridpulse_cli.text import short_list
from gridpulse_cli.windows import HOUR, Window, format_utc, parse_utc, split_window

if TYPE_CHECKING:
    from gridpulse_cli.gaps import Gap


@dataclass(frozen=True)
class Chunk:
    """One unit of fetching and committing."""

    route: Route
    facets: dict[str, list[str]]
    window: Window

    def describe(self) -> str:
        areas = short_list(self.facets.get(self.route.area_facet, []))  # `--ba all`: not 60 codes
        return f"{self.route.name} {areas} {self.window}"


def _facets(route: Route, areas: Sequence[str], type_codes: Sequence[str]) -> dict[str, list[str]]:
    facets = {route.area_facet: list(areas)}
    if route is REGION_DATA:
        facets["type"] = list(type_codes)
    return facets


def _page_hours(route: Route, areas: Sequence[str], type_codes: Sequence[str], pages: int = 1) -> int:
    """How many hours of these areas fit `pages` full pages (at least one hour)."""
    per_hour = sum(rows_per_hour(route.name, area, type_codes) for area in areas)
    return max(1, pages * PAGE_SIZE // max(1, per_hour))


# ---- ingest: every BA in one request per route and time slice -----------------------------------


def plan_chunks(
    bas: Sequence[str], datasets: Sequence[str], window: Window, pages_per_chunk: int = 4
) -> list[Chunk]:
    """Split a request into route/time-slice chunks of about `pages_per_chunk` full pages."""
    chunks: list[Chunk] = []
    for route, type_codes in routes_for(datasets):
        facets = _facets(route, bas, type_codes)
        hours = _page_hours(route, bas, type_codes, pages_per_chunk)
        chunks.extend(Chunk(route, facets, part) for part in split_window(window, hours))
    return chunks


# ---- backfill: one BA, one route and one page per chunk, resumable ------------------------------


def plan_backfill(bas: Sequence[str], datasets: Sequence[str], window: Window) -> list[Chunk]:
    """Chunks of one BA, one route and about one page of hours each, oldest first per series."""
    chunks: list[Chunk] = []
    for route, types in routes_for(datasets):
        start = max(window.start, route.history_start)
        if start >= window.end:
            continue
        for ba in bas:
            hours = _page_hours(route, [ba], types)
            chunks.extend(
                Chunk(route, _facets(route, [ba], types), part)
                for part in split_window(Window(start, window.end), hours)
            )
    # Interleave routes and BAs over time so a partial backfill is useful everywhere at once.
    chunks.sort(key=lambda c: c.window.start)
    return chunks


def chunk_key(chunk: Chunk) -> str:
    """A stable identity for a chunk: route, facets and window."""
    text = json.dumps(
        [
            chunk.route.name,
            sorted((k, sorted(v)) for k, v in chunk.facets.items()),
            format_utc(chunk.window.start),
            format_utc(chunk.window.end),
        ]
    )
    return hashlib.sha1(text.encode()).hexdigest()


def plan_key(bas: Sequence[str], datasets: Sequence[str], start: datetime, end: str) -> str:
    """Identity of a backfill request, so a re-run with the same arguments resumes it.

    `end` is the `--to` as given ("now" when omitted), so an open-ended backfill resumes too.
    """
    text = json.dumps([sorted(bas), sorted(datasets), format_utc(start), end])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# ---- gaps: exactly the missing hours, merged into as few requests as cover them ----------------


def merge_windows(windows: Sequence[Window], within_hours: int = 0) -> list[Window]:
    """Union of windows (those that touch or overlap become one); also bridge the hours between
    two windows when the joined span still fits `within_hours` (one page): one request for
    scattered gaps beats one request per gap."""
    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: w.start):
        if merged and (
            window.start <= merged[-1].end or (window.end - merged[-1].start) <= timedelta(hours=within_hours)
        ):
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


def gap_windows(gaps: Sequence[Gap]) -> list[tuple[str, str, Window]]:
    """(dataset, area, window) to re-fetch: each series' runs merged per dataset and BA.

    Windows that touch or overlap are merged, so a gap shared by many series of one BA is one
    request, not one per series.
    """
    by_group: dict[tuple[str, str], list[Window]] = {}
    for gap in gaps:
        key = parse_series_id(gap.series_id)
        window = Window(parse_utc(gap.first_missing), parse_utc(gap.last_missing) + HOUR)
        by_group.setdefault((key.dataset, key.area), []).append(window)
    return [
        (dataset, area, merged)
        for (dataset, area), windows in sorted(by_group.items())
        for merged in merge_windows(windows)
    ]


def plan_gap_chunks(gaps: Sequence[Gap]) -> list[Chunk]:
    """As few page-sized requests as cover every gap: windows merged per route and BA."""
    windows: dict[tuple[str, str], list[Window]] = {}
    types: dict[tuple[str, str], set[str]] = {}
    for dataset_name, area, window in gap_windows(gaps):
        dataset = DATASETS[dataset_name]
        key = (dataset.route.name, area)
        windows.setdefault(key, []).append(window)
        if dataset.type_code:
            types.setdefault(key, set()).add(dataset.type_code)
    chunks: list[Chunk] = []
    for (route_name, area), parts in sorted(windows.items()):
        route = ROUTES[route_name]
        type_codes = sorted(types.get((route_name, area), set()))
        facets = _facets(route, [area], type_codes)
        hours = _page_hours(route, [area], type_codes)
        for merged in merge_windows(parts, within_hours=hours):
            chunks.extend(Chunk(route, facets, part) for part in split_window(merged, hours))
    return chunks
