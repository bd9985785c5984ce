"""`gridpulse load` benchmark: a 333,478-row observation CSV through the real CLI, next to the naive loader.

The CSV is what `normalize`/`export` write: five BAs' 12 series each (demand, forecast, generation,
total interchange, eight fuels) over about seven and a half months. `gridpulse load FILE` runs in a
fresh child process, so its time includes interpreter start and imports; the naive loader
(pandas read_csv + to_datetime + to_sql(multi) + ON CONFLICT) runs in this process, timed from
reading the file. Prints one JSON object per backend and approach.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import fresh_database, peak_rss_mb, run_gridpulse, stored_rows
from bench.data import observation_chunks
from bench.load import CHUNK_ROWS, naive_write
from gridpulse_cli.db import Store
from gridpulse_cli.files import write_observations_csv

ROWS = 333_478
SERIES = 60  # 5 BAs x (D, DF, NG, TI + 8 fuels)


def write_csv(path: Path, rows: int = ROWS) -> None:
    """The benchmark's observation CSV, written chunk by chunk as `export` would."""
    with path.open("w", newline="") as out:
        for number, chunk in enumerate(observation_chunks(rows, CHUNK_ROWS, series=SERIES)):
            write_observations_csv(chunk, out, header=number == 0)


def cli_load(backend: str, path: Path, workdir: Path) -> dict[str, Any]:
    """`gridpulse load FILE` into a fresh database, whole process timed."""
    db = fresh_database(backend, "gridpulse_bench_cli_load", workdir)
    run = run_gridpulse(["load", str(path)], {"GRIDPULSE_DATABASE_URL": db})
    stored = stored_rows(db)
    if stored != ROWS:
        raise RuntimeError(f"gridpulse load stored {stored} rows, expected {ROWS}")
    return {
        "seconds": round(run.seconds, 2),
        "rows_per_s": round(ROWS / run.seconds),
        "peak_rss_mb": round(run.peak_rss_mb),
    }


def naive_load(backend: str, path: Path, workdir: Path) -> dict[str, Any]:
    """The naive loader on the same file, in this process (no interpreter start to pay)."""
    store = Store.open(fresh_database(backend, "gridpulse_bench_cli_naive", workdir))
    started = time.perf_counter()
    frame = pd.read_csv(path, keep_default_na=False, na_values={"value": [""]}, dtype={"counterpart": str})
    frame = frame.rename(columns={"value": "value_mwh"})
    frame["period_end_utc"] = pd.to_datetime(frame["period_end_utc"], format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    with store.engine.begin() as conn:
        keys = store.series_keys(conn, frame, datetime.now(UTC))
    written = sum(
        naive_write(store, backend, frame.iloc[i : i + CHUNK_ROWS], keys)
        for i in range(0, len(frame), CHUNK_ROWS)
    )
    elapsed = time.perf_counter() - started
    store.close()
    if written != ROWS:
        raise RuntimeError(f"the naive loader wrote {written} rows, expected {ROWS}")
    return {
        "seconds": round(elapsed, 2),
        "rows_per_s": round(ROWS / elapsed),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> None:
    backends = sys.argv[1:] or ["postgresql", "sqlite"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / "observations.csv"
        write_csv(path)
        size_mb = round(path.stat().st_size / 1e6, 1)
        # gridpulse first on every backend, the naive loads last (they leave PostgreSQL busy for a while)
        for approach, load in (
            ("gridpulse load (CLI)", cli_load),
            ("naive to_sql(multi) + ON CONFLICT", naive_load),
        ):
            for backend in backends:
                result = {"backend": backend, "approach": approach, "rows": ROWS, "file_mb": size_mb}
                print(json.dumps({**result, **load(backend, path, workdir)}), flush=True)


if __name__ == "__main__":
    main()
