"""Progress of a chunked run (ingest, backfill): a rich bar on a terminal, log lines otherwise.

The bar draws on the rich log handler's own console, so a line logged while it is live
("resuming backfill …") is printed above it rather than through it, and it stays a few columns
short of the terminal's width, so the `^C` the terminal echoes cannot push it onto a second line
(which would leave a stale copy of the bar behind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gridpulse_cli.logs import rich_console
from gridpulse_cli.pipeline import ChunkDone, ProgressCallback
from gridpulse_cli.text import compact_count, plural

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

log = logging.getLogger(__name__)

SPARE_COLUMNS = 3  # room for the terminal's '^C' echo after the bar


def chunk_fields(event: ChunkDone) -> dict[str, Any]:
    """A progress line's numbers as structured log fields (keys in logs.LOG_FIELDS)."""
    report = event.report
    return {
        "run_id": report.run_id,
        "chunk": event.index,
        "chunks": event.total,
        "rows": event.rows,
        "rows_fetched": report.fetched,
        "inserted": report.counts.inserted,
        "revised": report.counts.revised,
        "elapsed_s": round(report.elapsed, 1),
    }


def reporter(label: str, every_seconds: float = 0.0) -> tuple[ProgressCallback, Callable[[], None]]:
    """(callback for each committed chunk, stop): a bar when logs are rich on a terminal at INFO;
    otherwise a log line per chunk, at most every `every_seconds` (and always the last one)."""
    console = rich_console()
    if console is None or not console.is_terminal or logging.getLogger().level > logging.INFO:
        return _log_lines(every_seconds), lambda: None
    return _bar(console, label)


def _log_lines(every_seconds: float) -> ProgressCallback:
    last = [0.0]

    def log_chunk(event: ChunkDone) -> None:
        moment = time.monotonic()
        if event.index < event.total and moment - last[0] < every_seconds:
            return
        last[0] = moment
        log.info(
            "chunk %d/%d %s: %s (%s inserted, %s revised so far)",
            event.index,
            event.total,
            event.chunk.describe(),
            plural(event.rows, "row"),
            f"{event.report.counts.inserted:,}",
            f"{event.report.counts.revised:,}",
            extra=chunk_fields(event),
        )

    return log_chunk


def _bar(console: Console, label: str) -> tuple[ProgressCallback, Callable[[], None]]:
    from rich.constrain import Constrain
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    class ShortOfTheEdge(Progress):
        def get_renderables(self) -> Iterable[RenderableType]:
            yield Constrain(self.make_tasks_table(self.tasks), console.width - SPARE_COLUMNS)

    progress = ShortOfTheEdge(
        TextColumn(f"[bold]{label}"),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=4)),  # what the rest leaves
        MofNCompleteColumn(),
        TextColumn("{task.fields[throughput]}"),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        expand=True,
    )
    task = progress.add_task(label, total=None, throughput="")
    progress.start()

    def update(event: ChunkDone) -> None:
        report = event.report
        rate = report.fetched / report.elapsed if report.elapsed else 0.0
        throughput = f"{compact_count(report.fetched)} rows {compact_count(round(rate))}/s"
        progress.update(task, total=event.total, completed=event.index, throughput=throughput)

    return update, progress.stop
