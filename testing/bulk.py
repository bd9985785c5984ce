"""EIA's six-month bulk CSV files: the real excerpts in data/bulk and a full-size file generator."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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


def write_balance_file(path: Path, bas: int, hours: int, varied: bool = False) -> None:
    """A BALANCE file in EIA's real format: the AEC header, quoted thousands, 12-hour UTC stamps.

    Every third BA repeats AEC's first row (8 series), every third has EIA-imputed demand (8 series,
    one with an `eia-imputed` hour) and every third is generation-only (no demand or forecast: 6
    series). Flat by default: every hour the same values (each load-like series is one long
    identical run, which the quality screen flags hour by hour). `varied` scales each BA-hour's
    row by a daily cycle and 1% noise (AEC x 100: a 50 GW BA; identities such as demand = net
    generation - interchange still hold), and EIA imputes 1% of the imputing BAs' hours: what a
    real file looks like to the screen.
    """
    header_line, first = AEC.read_text().splitlines()[:2]
    columns = header_of(AEC)
    cells = next(csv.reader([first]))
    imputed = list(cells)
    imputed[columns.index("Demand (MW) (Imputed)")] = "1,234"
    generation_only = list(cells)
    for name in ("Demand Forecast (MW)", "Demand (MW)", "Demand (MW) (Adjusted)"):
        generation_only[columns.index(name)] = ""
    templates = [cells, imputed, generation_only]
    stamps = pd.date_range("2021-01-01T06:00:00Z", periods=hours, freq="h")
    texts = [f"{t:%m/%d/%Y} {t.hour % 12 or 12}:00:00 {'AM' if t.hour < 12 else 'PM'}" for t in stamps]
    bodies = _VariedBodies(templates) if varied else None

    def lines() -> Iterator[str]:
        yield header_line + "\n"
        for h, text in enumerate(texts):
            date = text.split()[0]
            for b in range(bas):
                body = _body(templates[b % 3]) if bodies is None else bodies.at(b, h)
                yield f"B{b:03d},{date},1,{text},{text},{body}\n"

    with path.open("w") as f:
        f.writelines(lines())


def _body(values: list[str]) -> str:
    return ",".join(f'"{v}"' if "," in v else v for v in values[5:])


class _VariedBodies:
    """Row bodies of write_balance_file(varied=True): each template scaled by a quantised
    factor (cached per level: a six-month file needs a few thousand distinct bodies)."""

    SCALE, LEVELS = 100, 10_000  # AEC x 100; factors in steps of 1/10,000

    def __init__(self, templates: list[list[str]]) -> None:
        self.templates = templates
        self.cache: dict[tuple[int, int, bool], str] = {}
        self.rng = np.random.default_rng(0)

    def at(self, ba: int, hour: int) -> str:
        kind = ba % 3
        cycle = 1 + 0.15 * np.sin(2 * np.pi * ((hour + 3 * ba) % 24) / 24)
        level = round((cycle + 0.01 * self.rng.standard_normal()) * self.LEVELS)
        imputing = kind == 1 and (hour * 7 + ba) % 100 == 0
        key = (0 if kind == 1 else kind, level, imputing)
        if key not in self.cache:
            template = self.templates[1 if imputing else key[0]]
            self.cache[key] = _body(
                [self._scaled(v, level) for v in template[:5]]
                + [self._scaled(v, level) for v in template[5:]]
            )
        return self.cache[key]

    def _scaled(self, value: str, level: int) -> str:
        if not value or not value.replace(",", "").isdigit():
            return value
        return f"{round(int(value.replace(',', '')) * self.SCALE * level / self.LEVELS):,}"
