"""Revision history: every value EIA changed after gridpulse first stored it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gridpulse_cli.db import Store
from gridpulse_cli.render import Column, format_optional
from gridpulse_cli.text import short_hour
from gridpulse_cli.windows import format_utc


@dataclass(frozen=True)
class Revision:
    """One changed value; as_json is the object of `gridpulse revisions --json` (DESIGN's keys)."""

    series_id: str
    period_end_utc: datetime
    old_value_mwh: float | None
    new_value_mwh: float | None
    changed_at_utc: datetime
    run_id: int | None
    old_quality_flag: str
    new_quality_flag: str

    def as_json(self) -> dict[str, Any]:
        return {
            "series_id": self.series_id,
            "period_end_utc": format_utc(self.period_end_utc),
            "old_value": self.old_value_mwh,
            "new_value": self.new_value_mwh,
            "changed_at": format_utc(self.changed_at_utc),
            "run_id": self.run_id,
            "old_quality_flag": self.old_quality_flag,
            "new_quality_flag": self.new_quality_flag,
        }

    def table_row(self) -> list[str]:
        """The row under TABLE_COLUMNS: the hour as 2024-01-01T05Z, the change to the minute."""
        return [
            self.series_id,
            short_hour(self.period_end_utc),
            format_optional(self.old_value_mwh),
            format_optional(self.new_value_mwh),
            self.changed_at_utc.strftime("%Y-%m-%d %H:%M"),
            "" if self.run_id is None else str(self.run_id),
        ]


# `gridpulse revisions` in 80 columns: series IDs and values are never cut (the change time may
# wrap after its date).
TABLE_COLUMNS = [
    Column("series_id"),
    Column("period_end"),
    Column("old", align="right"),
    Column("new", align="right"),
    Column("changed", wrap=True),
    Column("run", align="right"),
]


def list_revisions(
    store: Store,
    changed_since: datetime | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    limit: int | None = None,
) -> list[Revision]:
    """Return revisions, oldest change first, optionally only those changed since a moment."""
    return [Revision(*row) for row in store.revisions(changed_since, bas, datasets, limit)]


def count_revisions(
    store: Store,
    changed_since: datetime | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """How many revisions `list_revisions` would return without a limit."""
    return store.count_revisions(changed_since, bas, datasets)
