"""The run ledger as a timeline: what ran, over which window, what it did, how it ended."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gridpulse_cli.report import Column
from gridpulse_cli.store import TIME_FORMAT, Store
from gridpulse_cli.text import compact_count, human_duration, short_time


@dataclass(frozen=True)
class Run:
    """One row of `gridpulse runs --json`."""

    run_id: int
    command: str
    status: str
    started_at: str
    finished_at: str | None
    duration_s: float | None
    window_start: str | None
    window_end: str | None
    bas: str
    datasets: str
    rows_fetched: int
    rows_inserted: int
    rows_revised: int
    rows_unchanged: int
    requests: int
    retries: int
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def table_row(self) -> list[str]:
        """The row under TABLE_COLUMNS: short times and compact counts (--json has them all)."""
        started = _moment(self.started_at)
        return [
            str(self.run_id),
            short_command(self.command),
            self.status,
            short_time(started) if started else "",
            "" if self.duration_s is None else human_duration(self.duration_s),
            compact_count(self.rows_fetched),
            compact_count(self.rows_inserted),
            compact_count(self.rows_revised),
        ]


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


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    moment = _moment(value)
    return moment.strftime(TIME_FORMAT) if moment else None


def _duration(elapsed_s: Any, started: datetime | None, finished: datetime | None) -> float | None:
    """Seconds, to 0.1 s, as a float on every backend: the run's own measure when it recorded one
    (v3+), else the ledger's timestamps (a run killed before recording its outcome)."""
    if elapsed_s is not None:
        return round(float(elapsed_s), 1)
    if started and finished:
        return round((finished - started).total_seconds(), 1)
    return None


def list_runs(store: Store, last: int = 20) -> list[Run]:
    """The newest `last` runs, newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT run_id, command, status, started_at_utc, finished_at_utc, window_start_utc, "
                "window_end_utc, bas, datasets, rows_fetched, rows_inserted, rows_revised, rows_unchanged, "
                "requests, retries, error, elapsed_s FROM runs ORDER BY run_id DESC LIMIT :n"
            ),
            {"n": last},
        ).all()
    runs = []
    for r in rows:
        started, finished = _moment(r[3]), _moment(r[4])
        runs.append(
            Run(
                run_id=int(r[0]),
                command=r[1],
                status=r[2],
                started_at=_text(r[3]) or "",
                finished_at=_text(r[4]),
                duration_s=_duration(r[16], started, finished),
                window_start=_text(r[5]),
                window_end=_text(r[6]),
                bas=r[7],
                datasets=r[8],
                rows_fetched=int(r[9]),
                rows_inserted=int(r[10]),
                rows_revised=int(r[11]),
                rows_unchanged=int(r[12]),
                requests=int(r[13]),
                retries=int(r[14]),
                error=r[15],
            )
        )
    return runs
