"""The run ledger: every query on `runs`, and a run's life from `running` to its outcome."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from gridpulse_cli.db import LoadCounts
from gridpulse_cli.errors import DatabaseError, GridpulseError, Interrupted
from gridpulse_cli.stopping import StopSignal
from gridpulse_cli.text import plural, short_time

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from gridpulse_cli.check import RunScreen
    from gridpulse_cli.db import Store
    from gridpulse_cli.windows import Window

log = logging.getLogger(__name__)

ABANDONED_ERROR = "ended without recording an outcome (killed, or lost the database)"


@dataclass
class RunReport:
    """What a run did; printed as the summary line and stored in the ledger."""

    run_id: int | None = None
    chunks: int = 0
    fetched: int = 0
    counts: LoadCounts = field(default_factory=LoadCounts)
    requests: int = 0
    retries: int = 0
    elapsed: float = 0.0
    status: str = "ok"
    findings: int = 0  # new quality findings in the hours the run wrote (check.RunScreen)
    throttled: int = 0  # requests EIA answered 429 / OVER_RATE_LIMIT (each retried)
    # The quality screen of the hours the run writes: the engine steps it while it waits for EIA.
    screen: RunScreen | None = field(default=None, repr=False, compare=False)

    def summary(self) -> str:
        c = self.counts
        rate = self.fetched / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"run {self.run_id} {self.status}: {plural(self.chunks, 'chunk')}, "
            f"{plural(self.fetched, 'row')} fetched, {c.inserted:,} inserted, {c.revised:,} revised, "
            f"{c.unchanged:,} unchanged; {plural(self.requests, 'request')}, "
            f"{plural(self.retries, 'retry', 'retries')}"
            + (f" ({self.throttled:,} throttled by EIA)" if self.throttled else "")
            + (f", {plural(self.findings, 'new quality finding')}" if self.findings else "")
            + f", {self.elapsed:.1f} s ({rate:,.0f} rows/s)"
        )

    def log_fields(self) -> dict[str, Any]:
        """The summary's numbers as structured log fields (`extra=`; keys in logs.LOG_FIELDS)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "chunks": self.chunks,
            "rows_fetched": self.fetched,
            "inserted": self.counts.inserted,
            "revised": self.counts.revised,
            "unchanged": self.counts.unchanged,
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "findings": self.findings,
            "elapsed_s": round(self.elapsed, 1),
        }


# ---- writing the ledger ----------------------------------------------------------------------


def start_run(
    store: Store,
    command: str,
    window: Window | None,
    bas: Sequence[str],
    datasets: Sequence[str],
    now: datetime,
) -> int:
    """Record a run as `running`; return its id."""
    params = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": store.encode_time(now),
        "ws": store.encode_time(window.start) if window else None,
        "we": store.encode_time(window.end) if window else None,
        "bas": ",".join(bas),
        "datasets": ",".join(datasets),
    }
    with store.transaction() as conn:
        result = conn.execute(
            sa.text(
                "INSERT INTO runs (command, status, started_at_utc, window_start_utc, window_end_utc, bas, "
                "datasets, pid, host) VALUES (:command, 'running', :started, :ws, :we, :bas, :datasets, "
                ":pid, :host) RETURNING run_id"
            ),
            params,
        )
        return int(result.scalar_one())


def close_abandoned_runs(store: Store, now: datetime) -> int:
    """Mark runs still 'running' as interrupted: call while holding the writer lock, when no
    other writer can be alive (they were killed without recording an outcome, e.g. SIGKILL)."""
    with store.transaction() as conn:
        result = conn.execute(
            sa.text(
                "UPDATE runs SET status = 'interrupted', finished_at_utc = :now, error = :error "
                "WHERE status = 'running'"
            ),
            {"now": store.encode_time(now), "error": ABANDONED_ERROR},
        )
        return int(result.rowcount)


def add_run_progress(conn: Connection, run_id: int | None, fetched: int, counts: LoadCounts) -> None:
    """Add committed work to a running run's counts, inside that work's transaction."""
    if run_id is None:
        return
    conn.execute(
        sa.text(
            "UPDATE runs SET rows_fetched = rows_fetched + :fetched, "
            "rows_inserted = rows_inserted + :inserted, rows_revised = rows_revised + :revised, "
            "rows_unchanged = rows_unchanged + :unchanged WHERE run_id = :run_id"
        ),
        {"fetched": fetched, **_count_params(counts), "run_id": run_id},
    )


def finish_run(
    store: Store,
    run_id: int,
    status: str,
    now: datetime,
    *,
    fetched: int = 0,
    counts: LoadCounts | None = None,
    requests: int = 0,
    retries: int = 0,
    error: str | None = None,
    elapsed_s: float | None = None,
    findings: int = 0,
    throttled: int = 0,
) -> None:
    """Record how a run ended (`elapsed_s`: its own monotonic-clock duration)."""
    params = {
        "status": status,
        "finished": store.encode_time(now),
        "fetched": fetched,
        **_count_params(counts or LoadCounts()),
        "requests": requests,
        "retries": retries,
        "error": error,
        "elapsed": elapsed_s,
        "findings": findings,
        "throttled": throttled,
        "run_id": run_id,
    }
    with store.transaction() as conn:
        conn.execute(
            sa.text(
                "UPDATE runs SET status = :status, finished_at_utc = :finished, rows_fetched = :fetched, "
                "rows_inserted = :inserted, rows_revised = :revised, rows_unchanged = :unchanged, "
                "requests = :requests, retries = :retries, error = :error, elapsed_s = :elapsed, "
                "findings = :findings, throttled = :throttled WHERE run_id = :run_id"
            ),
            params,
        )


def _count_params(counts: LoadCounts) -> dict[str, int]:
    return {"inserted": counts.inserted, "revised": counts.revised, "unchanged": counts.unchanged}


# ---- a recorded run ----------------------------------------------------------------------------


@contextmanager
def recorded_run(
    store: Store,
    command: str,
    window: Window | None,
    bas: Sequence[str],
    datasets: Sequence[str],
    now: Callable[[], datetime],
    stop: StopSignal | None,
    interrupted: Callable[[RunReport], str],
) -> Iterator[tuple[RunReport, threading.Event]]:
    """A run in the ledger, from `running` to ok, failed (a GridpulseError) or interrupted.

    From before the ledger row exists until its outcome is recorded, a signal only sets the
    yielded event (the block polls it between commits); once the outcome is recorded, a signal
    changes nothing. An interrupt is re-raised as Interrupted with the message `interrupted` makes.
    """
    stop = stop or StopSignal()  # a private one nobody signals: library callers and tests
    with stop.polling() as requested:
        report = RunReport(run_id=start_run(store, command, window, bas, datasets, now()))
        store.written.clear()  # from here on: the hours this run writes, screened as it goes and at its end
        report.screen = _run_screen(store, report, now)
        started = time.monotonic()
        try:
            yield report, requested
        except (GridpulseError, KeyboardInterrupt) as exc:
            stopped = isinstance(exc, KeyboardInterrupt | Interrupted)
            report.status = "interrupted" if stopped else "failed"
            report.elapsed = time.monotonic() - started
            message = interrupted(report) if stopped else str(exc) or type(exc).__name__
            _record_failure(store, report, now(), message)  # the ledger says what the operator saw
            stop.finish()
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(message) from None
            raise
        report.findings += _screen_written(report)
        report.elapsed = time.monotonic() - started
        record_finish(store, report, now())
        stop.finish()


def _run_screen(store: Store, report: RunReport, now: Callable[[], datetime]) -> RunScreen:
    from gridpulse_cli.check import RunScreen  # check imports this module

    return RunScreen(store, report.run_id, now)


def _screen_written(report: RunReport) -> int:
    """The rest of the quality screen over the hours the run wrote (signals only set the stop
    event here); the run's new findings. A failure does not fail the run, whose data is
    committed: it is logged, and `gridpulse check` redoes it."""
    if report.screen is None:
        return 0
    try:
        return report.screen.finish()
    except GridpulseError as exc:
        log.warning(
            "run %s: the quality screen failed (%s); run `gridpulse check` to redo it", report.run_id, exc
        )
        return 0


def _record_failure(store: Store, report: RunReport, now: datetime, error: str) -> None:
    """Record a failed or interrupted run; if the database itself is gone, say so and go on
    (the original error is the one to report; the next writer closes the run)."""
    try:
        record_finish(store, report, now, error=error)
    except DatabaseError as exc:
        log.warning("could not record run %s as %s: %s", report.run_id, report.status, exc)


def record_finish(store: Store, report: RunReport, now: datetime, error: str | None = None) -> None:
    """Write the run's outcome and counts to its ledger row."""
    if report.run_id is None:
        return
    finish_run(
        store,
        report.run_id,
        report.status,
        now,
        fetched=report.fetched,
        counts=report.counts,
        requests=report.requests,
        retries=report.retries,
        error=error,
        elapsed_s=report.elapsed,
        findings=report.findings,
        throttled=report.throttled,
    )


# ---- reading the ledger ------------------------------------------------------------------------


class RunRow(NamedTuple):
    """One ledger row as stored (times as aware UTC datetimes)."""

    run_id: int
    command: str
    status: str
    started_at_utc: datetime
    finished_at_utc: datetime | None
    window_start_utc: datetime | None
    window_end_utc: datetime | None
    bas: str
    datasets: str
    rows_fetched: int
    rows_inserted: int
    rows_revised: int
    rows_unchanged: int
    requests: int
    retries: int
    error: str | None
    elapsed_s: float | None
    findings: int
    throttled: int


def recent_runs(store: Store, last: int = 20) -> list[RunRow]:
    """The newest `last` runs, newest first."""
    rows = store.read(
        "SELECT run_id, command, status, started_at_utc, finished_at_utc, window_start_utc, "
        "window_end_utc, bas, datasets, rows_fetched, rows_inserted, rows_revised, rows_unchanged, "
        "requests, retries, error, elapsed_s, findings, throttled FROM runs ORDER BY run_id DESC LIMIT :n",
        {"n": last},
    )
    return [_run_row(store, r) for r in rows]


def _run_row(store: Store, r: Any) -> RunRow:
    started = store.decode_time(r[3])
    assert started is not None  # NOT NULL
    return RunRow(
        run_id=int(r[0]),
        command=r[1],
        status=r[2],
        started_at_utc=started,
        finished_at_utc=store.decode_time(r[4]),
        window_start_utc=store.decode_time(r[5]),
        window_end_utc=store.decode_time(r[6]),
        bas=r[7],
        datasets=r[8],
        rows_fetched=int(r[9]),
        rows_inserted=int(r[10]),
        rows_revised=int(r[11]),
        rows_unchanged=int(r[12]),
        requests=int(r[13]),
        retries=int(r[14]),
        error=r[15],
        elapsed_s=None if r[16] is None else float(r[16]),
        findings=int(r[17] or 0),
        throttled=int(r[18] or 0),
    )


def finished_outcomes(store: Store, last: int = 20) -> list[tuple[int, str, str, str | None]]:
    """(run_id, command, status, error) of the newest `last` runs that ended, newest first."""
    rows = store.read(
        "SELECT run_id, command, status, error FROM runs WHERE status <> 'running' ORDER BY run_id DESC LIMIT :n",
        {"n": last},
    )
    return [(int(r[0]), r[1], r[2], r[3]) for r in rows]


def describe_running(store: Store) -> str:
    """Who holds the writer lock, from the ledger's newest running run."""
    try:
        rows = store.read(
            "SELECT run_id, command, pid, host, started_at_utc FROM runs WHERE status = 'running' "
            "ORDER BY run_id DESC LIMIT 1"
        )
    except sa.exc.SQLAlchemyError:
        rows = []
    if not rows:
        return "another gridpulse process"
    row = rows[0]
    started = store.decode_time(row[4])
    since = short_time(started) if started else "?"
    host = str(row[3] or "?").split(".")[0]  # the short name: the error line stays within two lines
    return f"run {row[0]} ({row[1]}, pid {row[2]} on {host}, since {since} UTC)"
