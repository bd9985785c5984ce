"""Gaps: hours that should exist and don't (or were published without a value).

"Should exist" for a stored series means every hour in the window that is
- due: older than the dataset's publication lag (catalog.Dataset.lag), so today's interchange,
  which EIA publishes two days late, is not a gap yet;
- within the BA's life (EIA's activation and retirement dates);
- within the series' own life: a series that first appears (a new fuel code, a new
  interconnection) more than a week after its BA's other series of that dataset starts there,
  and one that stops more than a week before them ends there. Closer than that, a missing
  start or end is reported as a gap.
Missing hours are coalesced into runs per series and reason (`absent` or `null value`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from gridpulse_cli.catalog import DATASETS, balancing_authorities
from gridpulse_cli.db import Store
from gridpulse_cli.render import Column
from gridpulse_cli.text import short_hour
from gridpulse_cli.windows import HOUR, HOUR_NS, Window, floor_hour, format_utc, parse_utc

NEW_SERIES_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class Gap:
    """A run of missing hours in one series (the JSON shape of `gridpulse gaps --json`)."""

    series_id: str
    first_missing: str
    last_missing: str
    hours: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def table_row(self) -> list[str]:
        """The row under TABLE_COLUMNS: hours as 2024-03-02T08Z, so the series ID always fits."""
        return [
            self.series_id,
            short_hour(parse_utc(self.first_missing)),
            short_hour(parse_utc(self.last_missing)),
            f"{self.hours:,}",
            self.reason,
        ]


# `gridpulse gaps` in 80 columns: series IDs, hours and counts are never cut.
TABLE_COLUMNS = [
    Column("series_id"),
    Column("first_missing"),
    Column("last_missing"),
    Column("hours", align="right"),
    Column("reason"),
]


@dataclass(frozen=True)
class SeriesSpan:
    series_key: int
    series_id: str
    dataset: str
    area: str
    first: datetime
    last: datetime


def stored_series(
    store: Store, bas: Sequence[str] | None, datasets: Sequence[str] | None
) -> list[SeriesSpan]:
    """Series of the selected BAs and datasets with the first and last hour stored for each."""
    return [SeriesSpan(*row) for row in store.series_spans(bas, datasets)]


def _day_start(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def expected_window(
    span: SeriesSpan, group: tuple[datetime, datetime], window: Window, now: datetime
) -> Window | None:
    """The hours this series should have within `window` (see the module docstring)."""
    start, end = window.start, window.end
    due_end = floor_hour(now - DATASETS[span.dataset].lag) + HOUR
    end = min(end, due_end)
    group_first, group_last = group
    start = max(start, span.first if span.first - group_first > NEW_SERIES_AFTER else group_first)
    if group_last - span.last > NEW_SERIES_AFTER:
        end = min(end, span.last + HOUR)
    ba = balancing_authorities().get(span.area)
    if ba is not None:
        activated, retired = _day_start(ba.activation_date), _day_start(ba.retirement_date)
        if activated:
            start = max(start, activated + HOUR)
        if retired:
            end = min(end, retired + HOUR)
    return Window(start, end) if start < end else None


def _hour_numbers(periods: pd.DatetimeIndex, nulls: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
    """Stored hours (as hour numbers) of one series: with a value, and null."""
    if len(periods) == 0:
        empty = np.array([], dtype=np.int64)
        return empty, empty
    numbers = periods.as_unit("ns").asi8 // HOUR_NS
    return numbers[~nulls], numbers[nulls]


def _runs(hours: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    """Consecutive hour numbers coalesced into (first, last) runs."""
    if len(hours) == 0:
        return []
    breaks = np.flatnonzero(np.diff(hours) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(hours) - 1]])
    return [(int(hours[a]), int(hours[b])) for a, b in zip(starts, ends, strict=True)]


def _stamp(hour_number: int) -> str:
    return format_utc(datetime.fromtimestamp(hour_number * 3600, tz=UTC))


def find_gaps(
    store: Store,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    window: Window,
    now: datetime,
) -> list[Gap]:
    """Every run of missing hours in the selected series, sorted by series then time."""
    spans = stored_series(store, bas, datasets)
    groups: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for span in spans:
        first, last = groups.get((span.dataset, span.area), (span.first, span.last))
        groups[(span.dataset, span.area)] = (min(first, span.first), max(last, span.last))
    gaps: list[Gap] = []
    wanted = [(span, expected_window(span, groups[(span.dataset, span.area)], window, now)) for span in spans]
    due = [(span, expected) for span, expected in wanted if expected is not None]
    stored = store.iter_stored_hours([(span.series_key, expected) for span, expected in due])
    for (span, expected), (periods, null_flags) in zip(due, stored, strict=True):
        present, nulls = _hour_numbers(periods, null_flags)
        first_hour = int(pd.Timestamp(expected.start).as_unit("ns").value // HOUR_NS)
        all_hours = np.arange(first_hour, first_hour + expected.hours, dtype=np.int64)
        absent = np.setdiff1d(all_hours, np.concatenate([present, nulls]), assume_unique=False)
        found = [(a, b, "absent") for a, b in _runs(absent)]
        found += [(a, b, "null value") for a, b in _runs(np.sort(nulls))]
        for run_first, run_last, reason in sorted(found):
            gaps.append(
                Gap(span.series_id, _stamp(run_first), _stamp(run_last), run_last - run_first + 1, reason)
            )
    return gaps
