"""Bulk-file benchmark: a six-month BALANCE file (~300,000 rows x 42 columns) through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, fresh_database
from gridpulse_cli.store import Store
from tests.test_bulkfiles import write_balance_file

SCRIPT = (
    "import sys, atexit; from gridpulse_cli.cli import main; sys.argv = ['gridpulse'] + sys.argv[1:]; "
    "hwm = lambda: next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')); "
    "atexit.register(lambda: print('PEAK_RSS_KB', hwm(), file=sys.stderr)); main()"
)


def load_file(backend: str, path: Path, workdir: Path) -> dict[str, Any]:
    db = fresh_database(backend, "gridpulse_bench_bulk", workdir)
    env = dict(os.environ, GRIDPULSE_DATABASE_URL=db)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, "--log-format", "plain", "backfill", "--from-file", str(path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    rss = next(
        int(line.split()[1]) / 1024 for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")
    )
    store = Store.open(db)
    with store.engine.connect() as conn:
        stored = int(conn.exec_driver_sql("SELECT count(*) FROM observations").scalar_one())
    store.close()
    return {
        "backend": backend,
        "seconds": round(elapsed, 1),
        "observations": stored,
        "rows_per_s": round(stored / elapsed),
        "peak_rss_mb": round(rss),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / "EIA930_BALANCE_2021_Jan_Jun.csv"
        write_balance_file(path, bas=69, hours=4344)  # 299,736 rows: a six-month file for 69 BAs
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
