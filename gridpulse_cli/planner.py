"""Chunk plans: which requests (route, facets, time slice) fetch a window, a backfill or the gaps.

A chunk is one route, one facet set and one time slice; it is fetched completely and committed
atomically, so a re-run simply repeats the chunks that did not commit. Plans are sized in pages
(catalog.PAGE_SIZE rows) from catalog.rows_per_hour. Imports nothing heavy: `fetch` plans too.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
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
    active_span,
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


# ---- packing: as many areas and hours per request as fill one page --------------------------

Need = tuple[str, int]  # (area, estimated rows per hour on the route)


def _first_fit(needs: Sequence[Need], capacity: int) -> list[list[Need]] | None:
    """Areas into bins of `capacity` rows per hour, largest first (None: one area alone is over)."""
    bins: list[list[Need]] = []
    loads: list[int] = []
    for need in sorted(needs, key=lambda n: (-n[1], n[0])):
        if need[1] > capacity:
            return None
        for i, load in enumerate(loads):
            if load + need[1] <= capacity:
                bins[i].append(need)
                loads[i] += need[1]
                break
        else:
            bins.append([need])
            loads.append(need[1])
    return bins


def _spans(hours: int) -> list[int]:
    """Candidate hours per request: for each whole number of rows per hour a page holds, the
    longest span at that capacity (longer spans first), none beyond the window."""
    return sorted({min(hours, PAGE_SIZE // rows) for rows in range(1, PAGE_SIZE + 1)}, reverse=True)


def pack(needs: Sequence[Need], hours: int) -> list[tuple[list[str], int]]:
    """Groups of areas, each with its hours per request, fetching `hours` in the fewest requests
    (by the estimates): every span's bin packing is costed, each bin then takes as many hours as
    its own rows per hour leave room for."""
    best: tuple[int, list[tuple[list[str], int]]] | None = None
    for span in _spans(hours):
        bins = _first_fit(needs, PAGE_SIZE // span)
        if bins is None:
            continue
        groups = [
            (sorted(area for area, _ in b), min(hours, PAGE_SIZE // sum(rows for _, rows in b))) for b in bins
        ]
        cost = sum(math.ceil(hours / group_hours) for _, group_hours in groups)
        if best is None or cost < best[0]:
            best = (cost, groups)
    if best is None:  # more than a page per hour for one area: an hour per request, paging does the rest
        return [([area], 1) for area, _ in sorted(needs)]
    return sorted(best[1])


def _even_split(window: Window, hours: int) -> list[Window]:
    """The fewest slices of at most `hours`, as even as whole hours allow (no stub of a last slice)."""
    count = math.ceil(window.hours / max(1, hours))
    return split_window(window, math.ceil(window.hours / max(1, count)))


def _segments(areas: Sequence[str], window: Window) -> list[tuple[Window, list[str]]]:
    """The window cut where an area starts or stops publishing, each part with its active areas."""
    spans = {area: active_span(area) for area in areas}
    cuts = {window.start, window.end}
    for first, last in spans.values():
        cuts |= {t for t in (first, last) if t is not None and window.start < t < window.end}
    edges = sorted(cuts)
    parts = []
    for start, end in itertools.pairwise(edges):
        active = [
            a
            for a, (first, last) in spans.items()
            if (first is None or first < end) and (last is None or last > start)
        ]
        if active:
            parts.append((Window(start, end), active))
    return parts


def route_chunks(
    route: Route, type_codes: Sequence[str], areas: Sequence[str], window: Window
) -> list[Chunk]:
    """Page-sized chunks of several areas each for one route over a window (clipped to the
    route's history and to each area's active span; areas with nothing to publish left out)."""
    start = max(window.start, route.history_start)
    if start >= window.end:
        return []
    chunks: list[Chunk] = []
    for part, active in _segments(sorted(set(areas)), Window(start, window.end)):
        needs = [(area, rows_per_hour(route.name, area, type_codes)) for area in active]
        for group, hours in pack([n for n in needs if n[1] > 0], part.hours):
            facets = _facets(route, group, type_codes)
            chunks.extend(Chunk(route, facets, piece) for piece in _even_split(part, hours))
    return chunks


def _page_hours(route: Route, areas: Sequence[str], type_codes: Sequence[str]) -> int:
    """How many hours of these areas fit one full page (at least one hour)."""
    per_hour = sum(rows_per_hour(route.name, area, type_codes) for area in areas)
    return max(1, PAGE_SIZE // max(1, per_hour))


# ---- ingest and backfill: packed page-sized chunks, oldest first --------------------------------


def plan_chunks(bas: Sequence[str], datasets: Sequence[str], window: Window) -> list[Chunk]:
    """Every route of the datasets over the window, in requests packed to one page each."""
    chunks = [c for route, types in routes_for(datasets) for c in route_chunks(route, types, bas, window)]
    # Interleave routes and BAs over time so a partial backfill is useful everywhere at once.
    chunks.sort(key=lambda c: c.window.start)
    return chunks


def plan_backfill(bas: Sequence[str], datasets: Sequence[str], window: Window) -> list[Chunk]:
    """The backfill's plan: the same for the same arguments (BA order aside), so resume is exact."""
    return plan_chunks(sorted(set(bas)), datasets, window)


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
    """As few page-sized requests as cover every gap: each BA's windows merged per route (bridging
    hours when the span still fits a page), then the BAs sharing a window packed together."""
    windows: dict[tuple[str, str], list[Window]] = {}
    types: dict[tuple[str, str], set[str]] = {}
    for dataset_name, area, window in gap_windows(gaps):
        dataset = DATASETS[dataset_name]
        key = (dataset.route.name, area)
        windows.setdefault(key, []).append(window)
        if dataset.type_code:
            types.setdefault(key, set()).add(dataset.type_code)
    shared: dict[tuple[str, tuple[str, ...], Window], list[str]] = {}
    for (route_name, area), parts in sorted(windows.items()):
        type_codes = tuple(sorted(types.get((route_name, area), set())))
        hours = _page_hours(ROUTES[route_name], [area], type_codes)
        for merged in merge_windows(parts, within_hours=hours):
            shared.setdefault((route_name, type_codes, merged), []).append(area)
    return [
        chunk
        for (route_name, type_codes, merged), areas in sorted(
            shared.items(), key=lambda i: (i[0][0], i[0][1], i[0][2].start)
        )
        for chunk in route_chunks(ROUTES[route_name], type_codes, areas, merged)
    ]
