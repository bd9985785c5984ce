"""The run ledger as a timeline: what ran, over which window, what it did, how it ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridpulse_cli.db import Store
from gridpulse_cli.ledger import RunRow, recent_runs
from gridpulse_cli.render import Column
from gridpulse_cli.text import compact_count, human_duration, short_time
from gridpulse_cli.windows import format_utc


class Run(RunRow):
    """One ledger row as `gridpulse runs` shows it."""

    @property
    def duration_s(self) -> float | None:
        """Seconds, to 0.1 s, as a float on every backend: the run's own measure when it recorded
        one (v3+), else the ledger's timestamps (a run killed before recording its outcome)."""
        if self.elapsed_s is not None:
            return round(self.elapsed_s, 1)
        if self.finished_at_utc:
            return round((self.finished_at_utc - self.started_at_utc).total_seconds(), 1)
        return None

    def as_json(self) -> dict[str, Any]:
        """The `runs --json` object: times as 2024-01-01T05:00:00Z under their documented keys."""
        out = {**self._asdict(), "duration_s": self.duration_s}
        for key in ("started_at", "finished_at", "window_start", "window_end"):
            moment = out.pop(f"{key}_utc")
            out[key] = None if moment is None else format_utc(moment)
        return {name: out[name] for name in JSON_KEYS}

    def table_row(self) -> list[str]:
        """The row under TABLE_COLUMNS: short times and compact counts (--json has them all)."""
        return [
            str(self.run_id),
            short_command(self.command),
            self.status,
            short_time(self.started_at_utc),
            "" if self.duration_s is None else human_duration(self.duration_s),
            compact_count(self.rows_fetched),
            compact_count(self.rows_inserted),
            compact_count(self.rows_revised),
        ]


# The keys of `runs --json`, in order (README: "runs --json").
JSON_KEYS = (
    "run_id",
    "command",
    "status",
    "started_at",
    "finished_at",
    "duration_s",
    "window_start",
    "window_end",
    "bas",
    "datasets",
    "rows_fetched",
    "rows_inserted",
    "rows_revised",
    "rows_unchanged",
    "requests",
    "retries",
    "throttled",
    "findings",
    "error",
)

# What `gridpulse runs` shows in 80 columns; the window, BAs, other counts and the full error are in
# --json, and each error is a line under the table.
TABLE_COLUMNS = [
    Column("run", align="right"),
    Column("command", wrap=True),
    Column("status"),
    Column("started"),
    Column("took", align="right"),
    Column("fetched", align="right"),
    Column("inserted", align="right"),
    Column("revised", align="right"),
]


def short_command(command: str) -> str:
    """The ledger's command, short enough for the table: `backfill --gaps` as `backfill gaps`,
    `load /long/path/obs.csv` as `load obs.csv`."""
    verb, _, rest = command.partition(" ")
    if verb == "load" and rest:
        return f"load {Path(rest).name or rest}"
    return command.replace(" --", " ")


def list_runs(store: Store, last: int = 20) -> list[Run]:
    """The newest `last` runs, newest first."""
    return [Run(*row) for row in recent_runs(store, last)]
