"""Bulk-file benchmark: a six-month BALANCE file (~300,000 rows x 42 columns) through the CLI,
quality screen included."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from bench.common import fresh_database, run_gridpulse, stored_rows
from testing.bulk import write_balance_file


def load_file(backend: str, path: Path, workdir: Path) -> dict[str, Any]:
    db = fresh_database(backend, "gridpulse_bench_bulk", workdir)
    run = run_gridpulse(["backfill", "--from-file", str(path)], {"GRIDPULSE_DATABASE_URL": db})
    stored = stored_rows(db)
    return {
        "backend": backend,
        "seconds": round(run.seconds, 1),
        "observations": stored,
        "rows_per_s": round(stored / run.seconds),
        "peak_rss_mb": round(run.peak_rss_mb),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / "EIA930_BALANCE_2021_Jan_Jun.csv"
        # 299,736 rows: a six-month file for 69 BAs, varying like a real one (a flat file would be
        # one identical run per series, flagged hour by hour by the quality screen)
        write_balance_file(path, bas=69, hours=4344, varied=True)
        lines = sum(1 for _ in path.open()) - 1
        for backend in ("postgresql", "sqlite"):
            result = {
                "file_rows": lines,
                "file_mb": round(path.stat().st_size / 1e6, 1),
                **load_file(backend, path, workdir),
            }
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
