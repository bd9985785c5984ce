"""Human-readable tables on stdout: rich on a terminal, plain aligned text otherwise."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from gridpulse_cli.normalize import format_value


def format_optional(value: float | None) -> str:
    return "" if value is None else format_value(float(value))


def _style(cell: str, styles: Mapping[str, str] | None) -> str:
    """Colour a cell by its whole text or its first word ('late 3h' -> styles['late'])."""
    if not styles:
        return ""
    return styles.get(cell) or styles.get(cell.split(" ", 1)[0], "")


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    title: str = "",
    styles: Mapping[str, str] | None = None,
) -> None:
    """Print a table: rich (cells coloured by `styles`, e.g. {"fail": "red"}) on a terminal,
    plain aligned columns when piped."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*headers, title=title or None, title_justify="left")
        for row in rows:
            table.add_row(*(Text(cell, style=_style(cell, styles)) for cell in row))
        Console().print(table)
        return
    if title:
        print(title)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
