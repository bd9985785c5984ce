"""Quality-screen benchmark: `gridpulse check` over a year of the five default BAs, all datasets.

The database is filled without timing (the loopback stub's generators, normalized and upserted
in-process, no screen); then `gridpulse check` runs as the real CLI in a child process and is timed
whole, process start included: per-series screens, consistency checks, findings stored. A second
`check` shows what re-screening an already-screened year costs (nothing new to store).
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import fresh_database, run_gridpulse
from gridpulse_cli.catalog import MVP_BAS
from gridpulse_cli.db import Store
from gridpulse_cli.normalize import normalize_rows
from testing.eia_stub import make_fuel_rows, make_interchange_rows, make_region_rows

YEAR = (datetime(2023, 1, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, tzinfo=UTC))  # inclusive hour-ending
NOW = "2024-01-02T00:00:00Z"


def fill(db_url: str) -> tuple[int, int]:
    """A year of the five default BAs' region, fuel-mix and interchange data; (series, values)."""
    store = Store.open(db_url)
    start, end = YEAR
    now = datetime.now(UTC)
    series = values = 0
    try:
        for rows, kind in (
            (make_region_rows(MVP_BAS, start, end), "region-data"),
            (make_fuel_rows(MVP_BAS, start, end), "fuel-type-data"),
            (make_interchange_rows(None, start, end), "interchange-data"),
        ):
            frame = normalize_rows(rows, kind=kind)
            with store.transaction() as conn:
                store.upsert(conn, frame, None, now)
            series += frame["series_id"].nunique()
            values += len(frame)
    finally:
        store.close()
    return series, values


def findings(db_url: str) -> int:
    store = Store.open(db_url)
    try:
        return len(store.findings(None, None, None))
    finally:
        store.close()


def main() -> None:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            db_url = fresh_database(backend, "gridpulse_bench_screen", Path(tmp))
            series, values = fill(db_url)
            env = {"GRIDPULSE_DATABASE_URL": db_url, "GRIDPULSE_NOW": NOW}
            first = run_gridpulse(["check", "--json"], env)
            again = run_gridpulse(["check", "--json"], env)
            flagged = findings(db_url)
            results.append(
                {
                    "backend": backend,
                    "series": series,
                    "values": values,
                    "seconds": round(first.seconds, 2),
                    "again_seconds": round(again.seconds, 2),
                    "findings": flagged,
                    "flagged_share": round(flagged / values, 5),
                    "peak_rss_mb": round(first.peak_rss_mb),
                }
            )
            print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
