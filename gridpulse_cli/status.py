"""What is stored, per BA and dataset: series, first and last hour, observations, the share of
hours without a value, the share the quality screen flagged, and the newest run that wrote any.

Missing share: hours with no value (stored as missing, or absent) between each series' first and
last stored hour, over all such hours. Suspect share: flagged hours (the `findings` table of the
quality screen, when the database has one) over stored observations. Watched pairs (GRIDPULSE_BA x
GRIDPULSE_DATASETS that EIA publishes) are listed even when nothing is stored; everything else
stored is history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gridpulse_cli.catalog import DATASETS, SHORT_NAMES
from gridpulse_cli.db import Store
from gridpulse_cli.render import Column
from gridpulse_cli.windows import HOUR, format_utc

TABLE_COLUMNS = [
    Column("BA"),
    Column("dataset"),
    Column("series", "right"),
    Column("since"),
    Column("last hour"),
    Column("obs", "right"),
    Column("miss", "right"),
    Column("susp", "right"),
    Column("run", "right"),
]


@dataclass(frozen=True)
class StatusLine:
    """One stored (or watched) BA and dataset."""

    area: str
    dataset: str
    watched: bool
    series: int = 0
    first: datetime | None = None
    last: datetime | None = None
    observations: int = 0
    expected_hours: int = 0  # hours between each series' first and last stored hour, summed
    missing_hours: int = 0
    suspect_hours: int = 0
    newest_run: int | None = None

    @property
    def missing_share(self) -> float:
        return self.missing_hours / self.expected_hours if self.expected_hours else 0.0

    @property
    def suspect_share(self) -> float:
        return self.suspect_hours / self.observations if self.observations else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "ba": self.area,
            "dataset": self.dataset,
            "watched": self.watched,
            "series": self.series,
            "first_hour": None if self.first is None else format_utc(self.first),
            "last_hour": None if self.last is None else format_utc(self.last),
            "observations": self.observations,
            "missing_share": round(self.missing_share, 6),
            "suspect_share": round(self.suspect_share, 6),
            "newest_run": self.newest_run,
        }

    def table_row(self) -> list[str]:
        from gridpulse_cli.text import compact_count, short_hour

        return [
            self.area,
            SHORT_NAMES.get(self.dataset, self.dataset),
            str(self.series),
            "-" if self.first is None else self.first.strftime("%Y-%m-%d"),
            "-" if self.last is None else short_hour(self.last),
            compact_count(self.observations),
            share_text(self.missing_share) if self.series else "-",
            share_text(self.suspect_share) if self.series else "-",
            "-" if self.newest_run is None else str(self.newest_run),
        ]


def share_text(share: float) -> str:
    """0%, 0.1%, 4.2%, 100%: never '0%' for a share above zero, never '100%' below one."""
    if share <= 0:
        return "0%"
    if share >= 1:
        return "100%"
    percent = share * 100
    return f"{min(max(percent, 0.1), 99.9):.1f}%" if percent < 99.95 else "99.9%"


def store_status(
    store: Store,
    watched_bas: Sequence[str],
    watched_datasets: Sequence[str],
    now: datetime,
    bas: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> list[StatusLine]:
    """Watched pairs first (in the watched order), then history, by BA and dataset."""
    from gridpulse_cli.health import publishes

    suspect = store.suspect_counts()
    stored = {
        (area, dataset): line
        for (area, dataset), line in _aggregate(store.status_rows(bas, datasets), suspect).items()
    }
    watched = [
        (a, d)
        for a in watched_bas
        for d in watched_datasets
        if (bas is None or a in bas) and (datasets is None or d in datasets) and publishes(a, d, now)
    ]
    lines = [_watched(stored.get(key), key) for key in watched]
    seen = set(watched)
    lines += [line for key, line in sorted(stored.items(), key=_order) if key not in seen]
    return lines


def _order(item: tuple[tuple[str, str], StatusLine]) -> tuple[str, int]:
    (area, dataset), _ = item
    names = list(DATASETS)
    return area, names.index(dataset) if dataset in names else len(names)


def _watched(line: StatusLine | None, key: tuple[str, str]) -> StatusLine:
    if line is None:
        return StatusLine(key[0], key[1], watched=True)
    return StatusLine(**{**line.__dict__, "watched": True})


def _aggregate(rows: Sequence[Any], suspect: dict[tuple[str, str], int]) -> dict[tuple[str, str], StatusLine]:
    """Per-series rows (area, dataset, first, last, observations, missing, newest run) → one line
    per (area, dataset)."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for area, dataset, first, last, count, nulls, run in rows:
        span = int((last - first) / HOUR) + 1
        t = totals.setdefault(
            (area, dataset),
            {"series": 0, "first": first, "last": last, "obs": 0, "exp": 0, "miss": 0, "run": None},
        )
        t["series"] += 1
        t["first"], t["last"] = min(t["first"], first), max(t["last"], last)
        t["obs"] += count
        t["exp"] += span
        t["miss"] += nulls + (span - count)
        t["run"] = run if t["run"] is None else max(t["run"], run or 0)
    return {
        key: StatusLine(
            key[0],
            key[1],
            False,
            t["series"],
            t["first"],
            t["last"],
            t["obs"],
            t["exp"],
            t["miss"],
            suspect.get(key, 0),
            t["run"],
        )
        for key, t in totals.items()
    }
