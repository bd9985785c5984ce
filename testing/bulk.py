"""EIA's six-month bulk CSV files: the real excerpts in data/bulk and a full-size file generator."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

BULK_DATA = Path(__file__).resolve().parent / "data" / "bulk"
AEC = BULK_DATA / "EIA930_BALANCE_2020_Jul_Dec-AEC-9rows.csv"  # real excerpt, pre-2024-H2 layout


def header_of(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def imputed_copy(target: Path, source: Path, imputed: dict[tuple[int, str], str]) -> Path:
    """A copy of a BALANCE file where EIA imputed: {(data row, measure): value} fills the row's
    "<measure> (Imputed)" and "<measure> (Adjusted)" cells (data row 1 is the file's 2nd line;
    measure as in the header, e.g. "Demand (MW)"; value as EIA writes it, e.g. "1,234")."""
    lines = source.read_text().splitlines(keepends=True)
    columns = header_of(source)
    for (row, measure), value in imputed.items():
        cells = next(csv.reader([lines[row]]))
        for suffix in (" (Imputed)", " (Adjusted)"):
            cells[columns.index(measure + suffix)] = value
        lines[row] = ",".join(f'"{c}"' if "," in c else c for c in cells) + "\n"
    target.write_text("".join(lines))
    return target


def write_balance_file(path: Path, bas: int, hours: int) -> None:
    """A BALANCE file in EIA's real format: the AEC header, quoted thousands, 12-hour UTC stamps.

    Every third BA repeats AEC's first row (8 series), every third has EIA-imputed demand (8 series,
    one with an `eia-imputed` hour) and every third is generation-only (no demand or forecast: 6
    series).
    """
    header_line, first = AEC.read_text().splitlines()[:2]
    columns = header_of(AEC)
    cells = next(csv.reader([first]))
    imputed = list(cells)
    imputed[columns.index("Demand (MW) (Imputed)")] = "1,234"
    generation_only = list(cells)
    for name in ("Demand Forecast (MW)", "Demand (MW)", "Demand (MW) (Adjusted)"):
        generation_only[columns.index(name)] = ""

    def body(values: list[str]) -> str:
        return ",".join(f'"{v}"' if "," in v else v for v in values[5:])

    bodies = [body(cells), body(imputed), body(generation_only)]
    stamps = pd.date_range("2021-01-01T06:00:00Z", periods=hours, freq="h")
    texts = [f"{t:%m/%d/%Y} {t.hour % 12 or 12}:00:00 {'AM' if t.hour < 12 else 'PM'}" for t in stamps]

    def lines() -> Iterator[str]:
        yield header_line + "\n"
        for text in texts:
            date = text.split()[0]
            for b in range(bas):
                yield f"B{b:03d},{date},1,{text},{text},{bodies[b % 3]}\n"

    with path.open("w") as f:
        f.writelines(lines())
