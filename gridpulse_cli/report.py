"""Human-readable tables on stdout: rich on a terminal, plain aligned text otherwise.

Both are laid out the same way, to fit the terminal (80 columns when piped): columns holding
what an operator acts on (series IDs, counts, statuses, times) are never cut or wrapped; only
columns marked `wrap` (free text such as a detail) wrap at spaces, and long headers wrap at
hyphens. `--json` is the complete, unabridged form of every table.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gridpulse_cli.normalize import format_value
from gridpulse_cli.text import shorten

if TYPE_CHECKING:
    from rich.console import Console

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
