"""What people read: tables on stdout, progress of a chunked run, and the commands' summaries.

Tables: rich on a terminal, plain aligned text otherwise, laid out the same way to fit the
terminal (80 columns when piped): columns holding what an operator acts on (series IDs, counts,
statuses, times) are never cut or wrapped; only columns marked `wrap` (free text such as a
detail) wrap at spaces, and long headers wrap at hyphens. `--json` is the complete, unabridged
form of every table.

Progress: a rich bar on a terminal, log lines otherwise. The bar draws on the rich log handler's
own console, so a line logged while it is live ("resuming backfill …") is printed above it rather
than through it, and it stays a few columns short of the terminal's width, so the `^C` the
terminal echoes cannot push it onto a second line (which would leave a stale copy behind).

Only light modules are imported here (rich when a terminal asks for it): `gaps`, `runs` and
`revisions` import Column from here.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import typer

from gridpulse_cli.files import format_value
from gridpulse_cli.logs import rich_console
from gridpulse_cli.text import compact_count, plural, shorten

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from gridpulse_cli.backfill import GapFillReport
    from gridpulse_cli.engine import ChunkDone, ProgressCallback
    from gridpulse_cli.gaps import Gap
    from gridpulse_cli.health import HealthReport
    from gridpulse_cli.ledger import RunReport
    from gridpulse_cli.revisions import Revision
    from gridpulse_cli.runs import Run
    from gridpulse_cli.status import StatusLine
    from gridpulse_cli.windows import Window

log = logging.getLogger("gridpulse")  # the commands' own lines: `... INFO gridpulse: run 1 ok: ...`
progress_log = logging.getLogger("gridpulse_cli.progress")  # per-chunk lines, named as before

# ---- tables ----------------------------------------------------------------------------------

GAP = 2  # spaces between columns
WRAP_MIN = 16  # a wrapping column is not squeezed narrower than this (unless its words are shorter)


@dataclass(frozen=True)
class Column:
    """A table column: header, alignment, and whether its cells may wrap to fit the width."""

    header: str
    align: Literal["left", "right"] = "left"
    wrap: bool = False


def format_optional(value: float | None) -> str:
    return "" if value is None else format_value(float(value))


def _style(cell: str, styles: Mapping[str, str] | None) -> str:
    """Colour a cell by its whole text or its first word ('late 3h' -> styles['late'])."""
    if not styles:
        return ""
    return styles.get(cell) or styles.get(cell.split(" ", 1)[0], "")


def _as_column(spec: str | Column) -> Column:
    # Plain header strings (callers that do not say) may wrap at spaces: robust, nothing is cut.
    return spec if isinstance(spec, Column) else Column(spec, wrap=True)


def _longest_word(text: str, hyphens: bool) -> int:
    parts = text.replace("-", "- ").split() if hyphens else text.split()
    return max((len(part) for part in parts), default=0)


def column_widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """Each column's width so the table fits `width` if it can: wrapping columns, then long
    headers, give way (widest first); other columns keep their longest cell."""
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    minimum = []
    for i, column in enumerate(columns):
        cells = [r[i] for r in rows]
        if column.wrap:
            cell_min = min(max((_longest_word(c, False) for c in cells), default=0), WRAP_MIN)
        else:
            cell_min = max((len(c) for c in cells), default=0)
        minimum.append(max(1, cell_min, _longest_word(column.header, True)))
    widths = list(natural)
    excess = sum(widths) + GAP * (len(widths) - 1) - width
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if w > minimum[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def _lines(text: str, width: int, wrap: bool, hyphens: bool = False) -> list[str]:
    if not wrap or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=hyphens, break_long_words=True) or [""]


def layout(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> tuple[list[int], list[list[str]], list[list[list[str]]]]:
    """Column widths, header lines per column, and cell lines per row and column."""
    widths = column_widths(columns, rows, width)
    headers = [_lines(c.header, w, True, hyphens=True) for c, w in zip(columns, widths, strict=True)]
    cells = [
        [_lines(cell, w, c.wrap) for cell, c, w in zip(row, columns, widths, strict=True)] for row in rows
    ]
    return widths, headers, cells


def print_table(
    headers: Sequence[str | Column],
    rows: Sequence[Sequence[str]],
    title: str = "",
    styles: Mapping[str, str] | None = None,
    *,
    notes: Sequence[str] = (),
    console: Console | None = None,
    width: int | None = None,
) -> None:
    """Print a table, then `notes` (one line each, shortened to fit).

    Rich (cells coloured by `styles`, e.g. {"fail": "red"}) on a terminal or on `console`;
    plain aligned columns when piped, `width` (default: $COLUMNS, else 80) wide.
    """
    columns = [_as_column(h) for h in headers]
    console = console or _terminal_console()
    if console is not None:
        _print_rich(console, columns, rows, title, styles, notes)
        return
    width = width or shutil.get_terminal_size((80, 24)).columns
    widths, header_lines, cell_lines = layout(columns, rows, width)
    if title:
        print(title)
    tallest = max(len(lines) for lines in header_lines)
    header_lines = [[""] * (tallest - len(lines)) + lines for lines in header_lines]  # bottom-aligned
    for block in [header_lines, *cell_lines]:
        for k in range(max(len(lines) for lines in block)):
            parts = []
            for lines, column, w in zip(block, columns, widths, strict=True):
                text = lines[k] if k < len(lines) else ""
                parts.append(text.rjust(w) if column.align == "right" else text.ljust(w))
            print((" " * GAP).join(parts).rstrip())
    for note in notes:
        print(shorten(note, width))


def _terminal_console() -> Console | None:
    """A rich console on stdout when stdout is a terminal; None when piped."""
    if not sys.stdout.isatty():
        return None
    from rich.console import Console

    return Console()


def _print_rich(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    title: str,
    styles: Mapping[str, str] | None,
    notes: Sequence[str],
) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    widths, header_lines, cell_lines = layout(columns, rows, console.width)
    # No outer edge, one space of padding on the right and a blank divider: GAP columns apart.
    table = Table(
        title=title or None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for column, w, header in zip(columns, widths, header_lines, strict=True):
        table.add_column("\n".join(header), width=w, justify=column.align, overflow="fold")
    for row, row_lines in zip(rows, cell_lines, strict=True):
        table.add_row(
            *(
                Text("\n".join(cell), style=_style(text, styles))
                for text, cell in zip(row, row_lines, strict=True)
            )
        )
    console.print(table)
    for note in notes:
        console.print(Text(shorten(note, console.width)), soft_wrap=True)


# ---- progress --------------------------------------------------------------------------------

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
        progress_log.info(
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


# ---- what the commands print ------------------------------------------------------------------

HEALTH_STYLES = {
    "ok": "green",
    "warn": "yellow",
    "fail": "bold red",
    "fresh": "green",
    "late": "yellow",
    "stale": "bold red",
    "never": "bold red",
}
RUN_STYLES = {"ok": "green", "failed": "bold red", "interrupted": "yellow", "running": "cyan"}


class AsJson(Protocol):
    def as_json(self) -> Any: ...


def print_json(items: Sequence[AsJson]) -> None:
    """`--json`: every item in full, as one JSON array."""
    typer.echo(json.dumps([item.as_json() for item in items], indent=1))


def print_health(report: HealthReport) -> None:
    """The checks, then the freshness of each watched BA and dataset."""
    print_table(
        ["check", "status", "detail"],
        [[c.name, c.status, c.detail] for c in report.summary_checks()],
        title=f"health: {report.status}",
        styles=HEALTH_STYLES,
    )
    headers, grid = report.freshness_grid()
    if grid:
        print_table(headers, grid, title="freshness of the watched set", styles=HEALTH_STYLES)


def print_runs(found: Sequence[Run]) -> None:
    """The run ledger, newest first, with each failed run's error below the table."""
    from gridpulse_cli.runs import TABLE_COLUMNS

    print_table(
        TABLE_COLUMNS,
        [r.table_row() for r in found],
        title=f"last {plural(len(found), 'run')} (times UTC)",
        styles=RUN_STYLES,
        notes=[f"run {r.run_id}: {r.error}" for r in found if r.error],
    )


def print_gaps(found: Sequence[Gap], window: Window) -> None:
    from gridpulse_cli.gaps import TABLE_COLUMNS

    missing = plural(sum(g.hours for g in found), "missing hour")
    title = f"{plural(len(found), 'gap')}, {missing} in {window}"
    print_table(TABLE_COLUMNS, [g.table_row() for g in found], title=title)


def print_status(lines: Sequence[StatusLine]) -> None:
    """What is stored: the watched set, then history (each a table; shares of hours, times UTC)."""
    from gridpulse_cli.status import TABLE_COLUMNS

    watched = [line.table_row() for line in lines if line.watched]
    history = [line.table_row() for line in lines if not line.watched]
    if watched:
        print_table(TABLE_COLUMNS, watched, title="watched (GRIDPULSE_BA x GRIDPULSE_DATASETS), times UTC")
    if history:
        print_table(TABLE_COLUMNS, history, title="history (stored, not watched)")
    if not lines:
        print("nothing stored")


def print_revisions(found: Sequence[Revision], total: int) -> None:
    """The revisions found; the title says when `--limit` left some out."""
    from gridpulse_cli.revisions import TABLE_COLUMNS

    shown = (
        f"{len(found):,} of {plural(total, 'revision')}" if total > len(found) else plural(total, "revision")
    )
    print_table(TABLE_COLUMNS, [r.table_row() for r in found], title=f"{shown} (times UTC)")


def log_summary(report: RunReport) -> None:
    """The run's summary line; with --log-format json its numbers are fields of the line too."""
    log.info(report.summary(), extra=report.log_fields())


def log_gap_fill(result: GapFillReport, window: Window, full_list: str) -> None:
    """`backfill --gaps`: the run's summary, what it filled, what is still missing and where the
    full list is (`full_list`, the `gridpulse gaps` command for the same selection)."""
    if result.run is None:
        log.info("no gaps in %s: nothing to fetch", window)
        return
    log_summary(result.run)
    first, *rest = result.summary_lines(full_list)
    log.info(first, extra=result.log_fields())
    for line in rest:
        log.info(line)


def gaps_command(
    ba: Sequence[str] | None,
    dataset: Sequence[str] | None,
    since: str | None,
    start: str | None,
    end: str | None,
) -> str:
    """The `gridpulse gaps` line that lists the same selection in full."""
    words = ["gridpulse gaps"]
    for option, values in (("--ba", ba), ("--dataset", dataset)):
        if values:
            words.append(f"{option} {','.join(values)}")
    for option, value in (("--since", since), ("--from", start), ("--to", end)):
        if value:
            words.append(f"{option} {value}")
    return " ".join(words)
