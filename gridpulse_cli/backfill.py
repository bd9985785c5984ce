"""`gridpulse backfill` and `backfill --gaps`: history and the missing hours, resumable.

Each backfill chunk (planner.plan_backfill) is one route, several BAs and a time slice packed to
fill one 5,000-row page, so chunks can be fetched concurrently (one request each, under the shared
rate limit) and committed one by one. Committed chunks are recorded in `backfill_chunks` with the plan
they belong to; running the same backfill again skips them, `--restart` forgets them. `--gaps`
re-fetches exactly the gap windows (planner.plan_gap_chunks) and says what is still missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridpulse_cli.catalog import parse_series_id
from gridpulse_cli.engine import Now, ProgressCallback, RunOptions, run_recorded, utc_now
from gridpulse_cli.gaps import Gap, find_gaps
from gridpulse_cli.ledger import RunReport
from gridpulse_cli.planner import chunk_key, plan_backfill, plan_gap_chunks, plan_key
from gridpulse_cli.text import plural, short_hour
from gridpulse_cli.windows import parse_utc

if TYPE_CHECKING:
    from gridpulse_cli.db import Store
    from gridpulse_cli.eia import EIAClient
    from gridpulse_cli.stopping import StopSignal
    from gridpulse_cli.windows import Window

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4


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
    now: Now = utc_now,
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
    options = RunOptions(workers, now, progress, stop)
    return run_recorded(
        store, client, "backfill", bas, datasets, window, todo, options, lambda c: (chunk_key(c), key)
    )


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
    return short_hour(parse_utc(stamp))


def run_gap_backfill(
    store: Store,
    client: EIAClient,
    bas: Sequence[str] | None,
    datasets: Sequence[str] | None,
    window: Window,
    *,
    workers: int = DEFAULT_WORKERS,
    now: Now = utc_now,
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
    options = RunOptions(workers, now, progress, stop)
    run = run_recorded(store, client, "backfill --gaps", areas, names, window, chunks, options)
    after = find_gaps(store, bas, datasets, window, now())
    return GapFillReport(before, after, run)
