"""Load benchmark: 1M observations, fresh / identical / 1%-changed, plus the naive to_sql path.

Each scenario set runs in its own process (`python -m bench.load BACKEND MODE ROWS`) so peak RSS
is that of the load alone. Prints one JSON object per phase.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from bench.common import fresh_database, peak_rss_mb
from bench.data import observation_chunks
from gridpulse_cli.db import LoadCounts, Store

CHUNK_ROWS = 100_000


def gridpulse_phases(backend: str, rows: int, workdir: Path) -> None:
    """Fresh load, identical re-load and 1%-changed re-load through Store.upsert (what every command uses)."""
    store = Store.open(fresh_database(backend, "gridpulse_bench_load", workdir))
    for phase, changed in (("fresh", 0.0), ("identical", 0.0), ("changed-1%", 0.01)):
        counts = LoadCounts()
        elapsed = 0.0  # only the load is timed, not generating the synthetic chunks
        for chunk in observation_chunks(rows, CHUNK_ROWS, changed_fraction=changed):
            started = time.perf_counter()
            with store.transaction() as conn:
                counts += store.upsert(conn, chunk, None, datetime.now(UTC))
            elapsed += time.perf_counter() - started
        print(
            json.dumps(
                {
                    "backend": backend,
                    "approach": "gridpulse",
                    "phase": phase,
                    "rows": rows,
                    "seconds": round(elapsed, 2),
                    "rows_per_s": round(rows / elapsed),
                    "written": counts.inserted + counts.revised,
                    "revised": counts.revised,
                    "peak_rss_mb": round(peak_rss_mb()),
                }
            ),
            flush=True,
        )
    store.close()


def naive_statement(backend: str) -> str:
    """The naive approach's INSERT … ON CONFLICT from its to_sql temp table."""
    period = "period_end_utc::timestamptz" if backend == "postgresql" else "period_end_utc"
    now = "now()" if backend == "postgresql" else "'2026-01-01T00:00:00Z'"
    return (
        "INSERT INTO observations (series_key, period_end_utc, value_mwh, quality_flag, first_seen_utc, "
        f"last_changed_utc) SELECT series_key, {period}, value_mwh, quality_flag, {now}, {now} FROM naive_tmp "
        "WHERE true ON CONFLICT (series_key, period_end_utc) DO UPDATE SET value_mwh = excluded.value_mwh, "
        "quality_flag = excluded.quality_flag"
    )


def naive_write(store: Store, backend: str, chunk: pd.DataFrame, keys: dict[str, int]) -> int:
    """One chunk the naive way: DataFrame.to_sql(method="multi") into a temp table, then ON CONFLICT."""
    frame = pd.DataFrame(
        {
            "series_key": chunk["series_id"].map(keys),
            "period_end_utc": chunk["period_end_utc"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value_mwh": chunk["value_mwh"],
            "quality_flag": chunk["quality_flag"],
        }
    )
    with store.engine.begin() as conn:
        frame.to_sql(
            "naive_tmp",
            conn,
            if_exists="replace",
            index=False,
            method="multi",
            chunksize=1000 if backend == "postgresql" else 200,
        )
        written = int(conn.execute(sa.text(naive_statement(backend))).rowcount)
        conn.exec_driver_sql("DROP TABLE naive_tmp")
    return written


def naive_phase(backend: str, rows: int, workdir: Path) -> None:
    """The original design: DataFrame.to_sql(method="multi") into a temp table, then INSERT … ON CONFLICT."""
    store = Store.open(fresh_database(backend, "gridpulse_bench_naive", workdir))
    with store.engine.begin() as conn:
        keys = store.series_keys(
            conn, pd.concat(list(observation_chunks(rows, CHUNK_ROWS))), datetime.now(UTC)
        )
    written = 0
    elapsed = 0.0
    for chunk in observation_chunks(rows, CHUNK_ROWS):
        started = time.perf_counter()
        written += naive_write(store, backend, chunk, keys)
        elapsed += time.perf_counter() - started
    print(
        json.dumps(
            {
                "backend": backend,
                "approach": "naive to_sql(multi) + ON CONFLICT",
                "phase": "fresh",
                "rows": rows,
                "seconds": round(elapsed, 2),
                "rows_per_s": round(rows / elapsed),
                "written": written,
                "revised": 0,
                "peak_rss_mb": round(peak_rss_mb()),
            }
        ),
        flush=True,
    )
    store.close()


def main() -> None:
    backend, mode, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        (gridpulse_phases if mode == "gridpulse" else naive_phase)(backend, rows, Path(tmp))


if __name__ == "__main__":
    main()
