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
import sqlalchemy as sa

from gridpulse_cli.catalog import DATASETS, balancing_authorities, parse_series_id
from gridpulse_cli.report import Column
from gridpulse_cli.store import Store, series_query
from gridpulse_cli.text import short_hour
from gridpulse_cli.windows import HOUR, Window, floor_hour, format_utc

NEW_SERIES_AFTER = timedelta(days=7)
_HOUR_NS = 3_600_000_000_000


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
            short_hour(_utc(self.first_missing)),
            short_hour(_utc(self.last_missing)),
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


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def stored_series(
    store: Store, bas: Sequence[str] | None, datasets: Sequence[str] | None
) -> list[SeriesSpan]:
    """Series of the selected BAs and datasets with the first and last hour stored for each."""
    params: dict[str, Any] = {}
    stmt = series_query(
        "SELECT s.series_key, s.series_id, s.dataset, s.area, min(o.period_end_utc), max(o.period_end_utc) "
        "FROM series s JOIN observations o ON o.series_key = s.series_key WHERE 1 = 1",
        params,
        bas,
        datasets,
        " GROUP BY s.series_key, s.series_id, s.dataset, s.area ORDER BY s.series_id",
    )
    with store.engine.connect() as conn:
        return [
            SeriesSpan(int(r[0]), r[1], r[2], r[3], _utc(r[4]), _utc(r[5]))
            for r in conn.execute(stmt, params)
        ]


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


def _hours(
    store: Store, conn: sa.Connection, series_key: int, window: Window
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Stored hours (as hour numbers) of one series in a window: with a value, and null."""
    rows = conn.execute(
        sa.text(
            "SELECT period_end_utc, value_mwh IS NULL FROM observations WHERE series_key = :k "
            "AND period_end_utc >= :start AND period_end_utc < :end"
        ),
        {"k": series_key, "start": store.ts(window.start), "end": store.ts(window.end)},
    ).all()
    if not rows:
        empty = np.array([], dtype=np.int64)
        return empty, empty
    periods = pd.to_datetime([r[0] for r in rows], utc=True).as_unit("ns").asi8 // _HOUR_NS
    nulls = np.array([bool(r[1]) for r in rows])
    return periods[~nulls], periods[nulls]


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
    with store.engine.connect() as conn:
        for span in spans:
            expected = expected_window(span, groups[(span.dataset, span.area)], window, now)
            if expected is None:
                continue
            present, nulls = _hours(store, conn, span.series_key, expected)
            first_hour = int(pd.Timestamp(expected.start).as_unit("ns").value // _HOUR_NS)
            all_hours = np.arange(first_hour, first_hour + expected.hours, dtype=np.int64)
            absent = np.setdiff1d(all_hours, np.concatenate([present, nulls]), assume_unique=False)
            found = [(a, b, "absent") for a, b in _runs(absent)]
            found += [(a, b, "null value") for a, b in _runs(np.sort(nulls))]
            for run_first, run_last, reason in sorted(found):
                gaps.append(
                    Gap(span.series_id, _stamp(run_first), _stamp(run_last), run_last - run_first + 1, reason)
                )
    return gaps


def gap_windows(gaps: Sequence[Gap]) -> list[tuple[str, str, Window]]:
    """(dataset, area, window) to re-fetch: each series' runs merged per dataset and BA.

    Windows that touch or overlap are merged, so a gap shared by many series of one BA is one
    request, not one per series.
    """
    by_group: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for gap in gaps:
        key = parse_series_id(gap.series_id)
        start = _utc(gap.first_missing)
        end = _utc(gap.last_missing) + HOUR
        by_group.setdefault((key.dataset, key.area), []).append((start, end))
    merged: list[tuple[str, str, Window]] = []
    for (dataset, area), spans in sorted(by_group.items()):
        spans.sort()
        current_start, current_end = spans[0]
        for start, end in spans[1:]:
            if start <= current_end:
                current_end = max(current_end, end)
            else:
                merged.append((dataset, area, Window(current_start, current_end)))
                current_start, current_end = start, end
        merged.append((dataset, area, Window(current_start, current_end)))
    return merged
