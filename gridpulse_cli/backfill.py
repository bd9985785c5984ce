"""Backfill: a long range of history, per BA and route, in page-sized chunks, resumable.

Each chunk is one BA, one route and a time slice expected to fit one 5,000-row page, so chunks
can be fetched concurrently (one request each, under the shared rate limit) and committed one by
one. Committed chunks are recorded in `backfill_chunks` with the plan they belong to; running the
same backfill again skips them, `--restart` forgets them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gridpulse_cli.catalog import DATASETS, REGION_DATA, ROUTES, neighbours, parse_series_id, routes_for
from gridpulse_cli.eia import PAGE_SIZE, EIAClient
from gridpulse_cli.gaps import Gap, find_gaps, gap_windows
from gridpulse_cli.pipeline import Chunk, ProgressCallback, RunReport, run_recorded
from gridpulse_cli.stopping import StopSignal
from gridpulse_cli.store import Store
from gridpulse_cli.text import plural, short_hour
from gridpulse_cli.windows import Window, format_utc, split_window

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4
_SUBBA_ROWS_PER_HOUR = 25  # the largest parents publish ~20 subregions


def rows_per_hour(route_name: str, ba: str, type_codes: Sequence[str]) -> int:
    """An upper estimate of rows per hour for one BA on one route (sizes chunks to one page)."""
    if route_name == REGION_DATA.name:
        return max(1, len(type_codes))
    if route_name == "fuel-type-data":
        return 10  # 8 classic fuels + storage codes since 2024; a second page is fetched if needed
    if route_name == "interchange-data":
        return max(4, len(neighbours(ba)) + 1)
    return _SUBBA_ROWS_PER_HOUR


def plan_backfill(bas: Sequence[str], datasets: Sequence[str], window: Window) -> list[Chunk]:
    """Chunks of one BA, one route and about one page of hours each, oldest first per series."""
    chunks: list[Chunk] = []
    for route, types in routes_for(datasets):
        route_name = route.name
        start = max(window.start, route.history_start)
        if start >= window.end:
            continue
        for ba in bas:
            facets = {route.area_facet: [ba]}
            if route is REGION_DATA:
                facets["type"] = list(types)
            hours = max(1, PAGE_SIZE // rows_per_hour(route_name, ba, types))
            chunks.extend(
                Chunk(route, facets, part) for part in split_window(Window(start, window.end), hours)
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


def run_backfill(
    store: Store,
    client: EIAClient,
    bas: Sequence[str],
    datasets: Sequence[str],
    window: Window,
    *,
    end_as_given: str,
    workers: int = DEFAULT_WORKERS,
    restart: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: ProgressCallback | None = None,
    stop: StopSignal | None = None,
) -> RunReport:
    """Fetch and load every chunk of the range not already committed by this same backfill."""
    key = plan_key(bas, datasets, window.start, end_as_given)
    chunks = plan_backfill(bas, datasets, window)
    if restart:
        store.forget_plan(key)
    done = store.committed_chunks(key)
    todo = [c for c in chunks if chunk_key(c) not in done]
    if done:
        log.info(
            "resuming backfill %s: %d of %s already committed",
            key,
            len(chunks) - len(todo),
            plural(len(chunks), "chunk"),
        )
    return run_recorded(
        store,
        client,
        "backfill",
        bas,
        datasets,
        window,
        todo,
        workers=workers,
        now=now,
        progress=progress,
        ledger=lambda c: (chunk_key(c), key),
        stop=stop,
    )


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
        facets = {route.area_facet: [area]}
        if route is REGION_DATA:
            facets["type"] = type_codes
        hours = max(1, PAGE_SIZE // rows_per_hour(route_name, area, type_codes))
        for merged in merge_windows(parts, within_hours=hours):
            chunks.extend(Chunk(route, facets, part) for part in split_window(merged, hours))
    return chunks


def merge_windows(windows: Sequence[Window], within_hours: int = 0) -> list[Window]:
    """Union of windows; also bridge the hours between two windows when the joined span still
    fits `within_hours` (one page): one request for scattered gaps beats one request per gap."""
    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: w.start):
        if merged and (
            window.start <= merged[-1].end or (window.end - merged[-1].start) <= timedelta(hours=within_hours)
        ):
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


@dataclass
class GapFillReport:
    """What `backfill --gaps` found, fetched, filled and could not fill."""

    before: list[Gap]
    after: list[Gap]
    run: RunReport | None

    @property
    def filled_hours(self) -> int:
        return sum(g.hours for g in self.before) - sum(g.hours for g in self.after)

    def log_fields(self) -> dict[str, int]:
        """The summary's numbers as structured log fields (keys in logs.LOG_FIELDS)."""
        return {
            "filled_hours": self.filled_hours,
            "missing_hours": sum(g.hours for g in self.before),
            "still_missing_hours": sum(g.hours for g in self.after),
            "still_missing_series": len({g.series_id for g in self.after}),
        }

    def summary_lines(self, full_list: str, examples: int = 5) -> list[str]:
        """What was filled; what is still missing, grouped by BA and dataset, largest first (at
        most `examples` groups: a month of gaps is hundreds of runs); where the full list is."""
        fields = self.log_fields()
        first = f"filled {self.filled_hours:,} of {plural(fields['missing_hours'], 'missing hour')}"
        if not self.after:
            return [first]
        first += (
            f"; {plural(fields['still_missing_hours'], 'hour')} in "
            f"{plural(fields['still_missing_series'], 'series', 'series')} still missing upstream"
        )
        groups: dict[tuple[str, str], list[Gap]] = {}
        for gap in self.after:
            key = parse_series_id(gap.series_id)
            groups.setdefault((key.area, key.dataset), []).append(gap)
        ranked = sorted(groups.items(), key=lambda item: (-sum(g.hours for g in item[1]), item[0]))
        lines = [first]
        for (area, dataset), gaps in ranked[:examples]:
            series = len({g.series_id for g in gaps})
            start, end = min(g.first_missing for g in gaps), max(g.last_missing for g in gaps)
            lines.append(
                f"still missing: {area} {dataset}: {plural(sum(g.hours for g in gaps), 'hour')} in "
                f"{plural(series, 'series', 'series')}, {_short(start)}..{_short(end)}"
            )
        if len(ranked) > examples:
            lines.append(f"still missing: and {plural(len(ranked) - examples, 'more BA/dataset group')}")
        lines.append(f"run `{full_list}` for the full list")
        return lines


def _short(stamp: str) -> str:
    """'2024-03-02T08:00:00Z' as '2024-03-02T08Z'."""
    return short_hour(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))


def run_gap_backfill(
    store: Store,
    client: EIAClient,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    window: Window,
    *,
    workers: int = DEFAULT_WORKERS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: ProgressCallback | None = None,
    stop: StopSignal | None = None,
) -> GapFillReport:
    """Re-fetch exactly the gap windows, then say what was filled and what EIA still lacks."""
    before = find_gaps(store, bas, datasets, window, now())
    if not before:
        return GapFillReport(before, [], None)
    chunks = plan_gap_chunks(before)
    areas = sorted({parse_series_id(g.series_id).area for g in before})
    names = sorted({parse_series_id(g.series_id).dataset for g in before})
    run = run_recorded(
        store,
        client,
        "backfill --gaps",
        areas,
        names,
        window,
        chunks,
        workers=workers,
        now=now,
        progress=progress,
        stop=stop,
    )
    after = find_gaps(store, bas, datasets, window, now())
    return GapFillReport(before, after, run)
