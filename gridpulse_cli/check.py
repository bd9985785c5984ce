"""The quality screen over stored hours: `gridpulse check`, and the screen after every writing run.

Each series is read with CONTEXT on either side of the hours screened (the rolling screens look
ten days either way), screened by quality.screen_series, and its findings in those hours are made
exactly what the screen found: new ones are added, ones that no longer hold (a revised value)
are cleared, so re-running adds nothing. Values are never changed; export shows `suspect`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from gridpulse_cli.catalog import SeriesKey, parse_series_id
from gridpulse_cli.consistency import CONSISTENCY_CHECKS, BASeries, check_ba
from gridpulse_cli.ledger import recorded_run
from gridpulse_cli.quality import SERIES_CHECKS, screen_series
from gridpulse_cli.render import Column
from gridpulse_cli.text import short_hour
from gridpulse_cli.windows import HOUR, Window, format_utc

if TYPE_CHECKING:
    from threading import Event

    from gridpulse_cli.db import Store
    from gridpulse_cli.stopping import StopSignal

log = logging.getLogger(__name__)

CONTEXT = timedelta(days=14)  # read around the screened hours: the local screen looks +/-10 days
BASELINE_CONTEXT = timedelta(days=4)  # the consistency checks' usual residual: a week, centred
WRITTEN_MARGIN = timedelta(days=1)  # after a run, re-screen this far around the hours it wrote
STEP_HOURS = 21 * 24  # during a run, screen a BA once it has three weeks written (RunScreen)
# When an hour has several findings, the one `check --json` names first (the most specific):
# EIA's own verdict, then the series' own checks, then the cross-series ones.
CHECK_ORDER = ("eia-imputed", *SERIES_CHECKS, *CONSISTENCY_CHECKS)


@dataclass(frozen=True)
class Target:
    """One series and the hours of it to screen."""

    series_key: int
    series_id: str
    window: Window


@dataclass
class Finding:
    """One flagged hour; as_json is an element of `gridpulse check --json` (DESIGN's keys, plus
    `checks`: every check that flagged the hour, each with its detail)."""

    series_id: str
    period_end_utc: datetime
    checks: list[tuple[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        check, detail = self.checks[0]
        return {
            "series_id": self.series_id,
            "period_end_utc": format_utc(self.period_end_utc),
            "check": check,
            "detail": detail,
            "checks": [{"check": c, "detail": d} for c, d in self.checks],
        }

    def table_row(self) -> list[str]:
        return [self.series_id, short_hour(self.period_end_utc), "; ".join(d for _, d in self.checks)]


# `gridpulse check` in 80 columns: the detail wraps, series IDs and hours are never cut.
TABLE_COLUMNS = [Column("series_id"), Column("period_end"), Column("detail", wrap=True)]


def _rank(check: str) -> int:
    return CHECK_ORDER.index(check) if check in CHECK_ORDER else len(CHECK_ORDER)


def by_hour(rows: Iterable[tuple[str, datetime, str, str]]) -> list[Finding]:
    """Stored finding rows (series_id, hour, check, detail) as one Finding per flagged hour."""
    found: dict[tuple[str, datetime], Finding] = {}
    for series_id, period, check, detail in rows:
        finding = found.setdefault((series_id, period), Finding(series_id, period))
        finding.checks.append((check, detail))
    for finding in found.values():
        finding.checks.sort(key=lambda item: _rank(item[0]))
    return sorted(found.values(), key=lambda f: (f.series_id, f.period_end_utc))


def screen_targets(
    store: Store, targets: Sequence[Target], run_id: int | None, now: datetime, stop: Event | None = None
) -> int:
    """Screen each target's hours and store what holds there: per BA, the per-series screens
    (each series read with CONTEXT around its hours), then the consistency checks across the
    BA's series. Return how many findings are new. A set `stop` ends it between series
    (KeyboardInterrupt); what was stored by then stays."""
    index = SeriesIndex(store.all_series())
    new = 0
    for area, area_targets in _by_area(targets).items():
        span = Window(min(t.window.start for t in area_targets), max(t.window.end for t in area_targets))
        ba = index.of_area(area)
        cache = ValueCache(store)  # the BA's series in one read: a query per series costs more
        cache.prefetch([t.series_key for t in area_targets] + ba.member_keys(), span.widened(CONTEXT))
        new += _screen_series(store, area_targets, cache, run_id, now, stop)
        new += screen_consistency(store, ba, span, cache, run_id, now)
    return new


def _by_area(targets: Sequence[Target]) -> dict[str, list[Target]]:
    grouped: dict[str, list[Target]] = {}
    for target in targets:
        grouped.setdefault(parse_series_id(target.series_id).area, []).append(target)
    return grouped


def _screen_series(
    store: Store,
    targets: Sequence[Target],
    cache: ValueCache,
    run_id: int | None,
    now: datetime,
    stop: Event | None,
) -> int:
    """The per-series screens over one BA's targets, stored in one transaction."""
    results = []
    for target in targets:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt("stop requested")
        values = cache.values(target.series_key, target.window.widened(CONTEXT))
        key = parse_series_id(target.series_id)
        found = screen_series(values, key.dataset, key.counterpart)
        results.append((target, _inside(found, target.window)))
    with store.transaction() as conn:
        return sum(
            store.replace_findings(conn, t.series_key, t.window, found, run_id, now, SERIES_CHECKS)
            for t, found in results
        )


def _inside(found: pd.DataFrame, window: Window) -> pd.DataFrame:
    if found.empty:  # the usual case, and comparing an empty object column is not free
        return found
    return found[(found["period_end_utc"] >= window.start) & (found["period_end_utc"] < window.end)]


class ValueCache:
    """Series values read once per BA: the per-series screens and the consistency checks share them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._held: dict[int, tuple[Window, pd.Series]] = {}

    def prefetch(self, keys: Sequence[int], window: Window) -> None:
        for key, values in self.store.series_values_many(sorted(set(keys)), window).items():
            self._held[key] = (window, values)

    def values(self, key: int, window: Window) -> pd.Series:
        held = self._held.get(key)
        if held is None or not held[0].covers(window):
            held = (window, self.store.series_values_many([key], window)[key])
            self._held[key] = held
        values = held[1]
        return values[(values.index >= window.start) & (values.index < window.end)]


class SeriesIndex:
    """Every stored series by (dataset, area, counterpart): finds a BA's related series."""

    def __init__(self, rows: Iterable[tuple[int, str]]) -> None:
        self._by_area: dict[str, list[tuple[SeriesKey, int]]] = {}
        for key, series_id in rows:
            try:
                parsed = parse_series_id(series_id)
            except ValueError:  # a series ID this version does not know: not related to anything
                continue
            self._by_area.setdefault(parsed.area, []).append((parsed, key))

    def of_area(self, area: str) -> BASeries:
        ba = BASeries(area)
        for parsed, key in self._by_area.get(area, []):
            if parsed.dataset == "fuel-mix":
                ba.fuels[parsed.counterpart] = key
            elif parsed.dataset == "interchange":
                ba.outward[parsed.counterpart] = key
            elif parsed.dataset != "subregion-demand":
                ba.region[parsed.dataset] = key
        for neighbour in ba.outward:
            for parsed, key in self._by_area.get(neighbour, []):
                if parsed.dataset == "interchange" and parsed.counterpart == area:
                    ba.inward[neighbour] = key
        return ba


def screen_consistency(
    store: Store, ba: BASeries, span: Window, cache: ValueCache, run_id: int | None, now: datetime
) -> int:
    """The consistency checks of one BA over `span` (read with BASELINE_CONTEXT around it), stored
    on the series they are attached to in one transaction; return how many findings are new."""
    context = span.widened(BASELINE_CONTEXT)
    hours = pd.date_range(context.start, context.end - HOUR, freq="h")
    keys = ba.member_keys()
    values = {key: cache.values(key, context).reindex(hours) for key in keys}
    flagged = store.finding_hours(keys, context, excluding=CONSISTENCY_CHECKS)
    explained = {key: hours.isin(found) for key, found in flagged.items()}
    found = check_ba(ba, values, explained)
    with store.transaction() as conn:
        return sum(
            store.replace_findings(conn, key, span, _inside(frame, span), run_id, now, CONSISTENCY_CHECKS)
            for key, frame in found.items()
        )


def stored_targets(
    store: Store, window: Window | None, bas: Sequence[str] | None, datasets: Sequence[str] | None
) -> list[Target]:
    """The stored series of the selection, each with its stored hours inside the window."""
    targets = []
    for key, series_id, _dataset, _area, first, last in store.series_spans(bas, datasets):
        start, end = first, last + HOUR
        if window is not None:
            start, end = max(start, window.start), min(end, window.end)
        if start < end:
            targets.append(Target(key, series_id, Window(start, end)))
    return targets


def written_targets(store: Store, keys: Iterable[int] | None = None) -> list[Target]:
    """The hours the store wrote since its `written` record was last cleared (a run's hours), of
    these series (default: all), each with a day either side: a new neighbour can make or unmake
    a spike there."""
    chosen = sorted(store.written if keys is None else keys)
    names = store.series_names(chosen)
    targets = []
    for key in chosen:
        if key in names and key in store.written:
            first, last = store.written[key]
            start = pd.Timestamp(first).to_pydatetime() - WRITTEN_MARGIN
            window = Window(start, pd.Timestamp(last).to_pydatetime() + HOUR + WRITTEN_MARGIN)
            targets.append(Target(key, names[key][0], window))
    return targets


class RunScreen:
    """The screen of the hours one writing run writes, done BA by BA while the run waits for EIA
    (`step`) and finished when it ends (`finish`), so a long backfill does not pay for screening
    a year of data after its last request.

    A step takes a BA once one of its series has STEP_HOURS written and not yet screened, screens
    those hours (with the usual context and a day's margin) and forgets them; hours written after
    are screened by a later step or by `finish`.
    """

    def __init__(self, store: Store, run_id: int | None, now: Callable[[], datetime]) -> None:
        self.store, self.run_id, self.now = store, run_id, now
        self.found = 0
        self._areas: dict[int, str] = {}  # series_key -> BA, learnt as series are written

    def step(self, stop: Event | None = None) -> bool:
        """Screen the BA with the longest unscreened written stretch, if it is long enough;
        return whether one was screened."""
        longest: dict[str, float] = {}
        for key, area in self._area_of(list(self.store.written)).items():
            first, last = self.store.written[key]
            hours = (pd.Timestamp(last) - pd.Timestamp(first)) / pd.Timedelta(HOUR)
            longest[area] = max(longest.get(area, 0.0), hours)
        ready = [area for area, hours in longest.items() if hours >= STEP_HOURS]
        if not ready:
            return False
        area = max(ready, key=lambda a: longest[a])
        self._screen([k for k, a in self._areas.items() if a == area and k in self.store.written], stop)
        return True

    def finish(self) -> int:
        """Screen every written hour not screened yet; return the run's new findings."""
        self._screen(list(self.store.written), None)
        return self.found

    def _screen(self, keys: list[int], stop: Event | None) -> None:
        targets = written_targets(self.store, keys)
        if targets:
            new = screen_targets(self.store, targets, self.run_id, self.now(), stop)
            self.found += new
            log.debug("run %s: screened %d series, %d new findings", self.run_id, len(targets), new)
        for key in keys:  # only once screened: a failed step leaves its hours to `finish`
            self.store.written.pop(key, None)

    def _area_of(self, keys: list[int]) -> dict[int, str]:
        unknown = [k for k in keys if k not in self._areas]
        if unknown:
            for key, (series_id, _dataset, _area) in self.store.series_names(unknown).items():
                self._areas[key] = parse_series_id(series_id).area
        return {k: self._areas[k] for k in keys if k in self._areas}


def run_check(
    store: Store,
    window: Window | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    *,
    now: Callable[[], datetime],
    stop: StopSignal | None = None,
) -> list[Finding]:
    """`gridpulse check`: screen the selection's stored hours as a run in the ledger (its
    `findings` counts the new ones), store the findings, return every flagged hour of the
    selection (one Finding per hour). An interrupt keeps the series screened so far."""
    targets = stored_targets(store, window, bas, datasets)
    message = "interrupted; the series screened so far keep their findings (re-run to finish)"
    with recorded_run(store, "check", window, bas or [], datasets or [], now, stop, lambda _: message) as (
        report,
        requested,
    ):
        report.chunks = len(targets)
        report.findings = screen_targets(store, targets, report.run_id, now(), requested)
    return by_hour(store.findings(window, bas, datasets))
