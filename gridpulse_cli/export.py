"""Observations out of the database as CSV (series_id, period_end_utc, value, quality_flag, …)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import IO

from gridpulse_cli.db import Store
from gridpulse_cli.files import CSV_COLUMNS, format_value
from gridpulse_cli.windows import Window


def export_csv(
    store: Store,
    out: IO[str],
    window: Window | None,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
) -> int:
    """Write stored observations sorted by series_id then time; return the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for batch in store.iter_observations(window, bas, datasets):
        writer.writerows(
            (
                sid,
                period,
                "" if value is None else format_value(float(value)),
                flag,
                dataset,
                area,
                counterpart,
            )
            for sid, period, value, flag, dataset, area, counterpart in batch
        )
        count += len(batch)
    return count
