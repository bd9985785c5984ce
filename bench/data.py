"""Deterministic synthetic observations, generated chunk by chunk so memory stays flat."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from gridpulse_cli.catalog import MVP_BAS

FUELS = ("COL", "NG", "NUC", "OIL", "OTH", "SUN", "WAT", "WND")
START = pd.Timestamp("2023-01-01T01:00:00Z")


def series_list(count: int) -> list[tuple[str, str, str, str]]:
    """(series_id, dataset, area, counterpart) for `count` plausible series."""
    out: list[tuple[str, str, str, str]] = []
    i = 0
    while len(out) < count:
        ba = f"{MVP_BAS[i % len(MVP_BAS)]}{i // len(MVP_BAS) or ''}"
        for suffix, dataset in (
            ("D", "demand"),
            ("DF", "forecast"),
            ("NG", "generation"),
            ("TI", "total-interchange"),
        ):
            out.append((f"EBA.{ba}-ALL.{suffix}.H", dataset, ba, ""))
        out.extend((f"EBA.{ba}-ALL.NG.{fuel}.H", "fuel-mix", ba, fuel) for fuel in FUELS)
        i += 1
    return out[:count]


def observation_chunks(
    rows: int, chunk_rows: int = 100_000, series: int = 120, changed_fraction: float = 0.0
) -> Iterator[pd.DataFrame]:
    """Yield `rows` observations (series-major) in chunks; `changed_fraction` alters that share of values."""
    names = series_list(series)
    hours = -(-rows // series)
    for start in range(0, rows, chunk_rows):
        index = np.arange(start, min(rows, start + chunk_rows))
        s_idx, h_idx = index // hours, index % hours
        rng = np.random.default_rng(start)
        values = np.round(rng.normal(1000, 300, len(index)))
        if changed_fraction:
            values = np.where(index % int(1 / changed_fraction) == 0, values + 1, values)
        frame = pd.DataFrame(
            {
                "series_id": [names[i][0] for i in s_idx],
                "period_end_utc": START + pd.to_timedelta(h_idx, unit="h"),
                "value_mwh": values,
                "quality_flag": "good",
                "dataset": [names[i][1] for i in s_idx],
                "area": [names[i][2] for i in s_idx],
                "counterpart": [names[i][3] for i in s_idx],
            }
        )
        yield frame
