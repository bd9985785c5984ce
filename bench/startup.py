"""Start-up benchmark: `gridpulse --version`, `--help` and a cron-sized `ingest --since 24h`.

Each figure is the wall time of a whole `gridpulse` process (interpreter start, imports, the
command), best of N runs. The ingest runs against the loopback EIA stub (served from this process
at zero latency) into a fresh SQLite file. Prints one JSON object per measurement.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import timed_process
from gridpulse_cli.catalog import DATASETS, MVP_BAS
from testing.eia_stub import EIAStub, make_fuel_rows, make_interchange_rows, make_region_rows, make_subba_rows

KEY = "bench-key-not-secret"
NOW = datetime(2024, 6, 1, tzinfo=UTC)
RUNS = 5


def gridpulse_command() -> list[str]:
    """The installed `gridpulse` console script (what cron runs), else `python -m gridpulse_cli`."""
    script = Path(sys.executable).with_name("gridpulse")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gridpulse_cli"]


def wall_time(args: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds for one whole `gridpulse ARGS` process; raises if it fails."""
    return timed_process([*gridpulse_command(), *args], env)[1]


def serve_recent(stub: EIAStub) -> None:
    """Three days of every route's rows for the five MVP BAs, ending at NOW."""
    start, end = NOW - timedelta(days=3), NOW
    stub.set_rows("region-data", make_region_rows(MVP_BAS, start, end))
    stub.set_rows("fuel-type-data", make_fuel_rows(MVP_BAS, start, end))
    stub.set_rows("interchange-data", make_interchange_rows(None, start, end))
    stub.set_rows("region-sub-ba-data", make_subba_rows(None, start, end))


def ingest_env(stub: EIAStub, db_path: Path) -> dict[str, str]:
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return {
        "EIA_API_KEY": KEY,
        "GRIDPULSE_EIA_URL": stub.url,
        "GRIDPULSE_DATABASE_URL": f"sqlite:///{db_path}",
        "GRIDPULSE_NOW": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "GRIDPULSE_MAX_RPS": "1000",
    }


def main() -> None:
    for args in (["--version"], ["--help"]):
        best = min(wall_time(args) for _ in range(RUNS))
        print(
            json.dumps({"command": " ".join(["gridpulse", *args]), "seconds": round(best, 3), "runs": RUNS})
        )
    ingest = ["ingest", "--since", "24h", "--ba", ",".join(MVP_BAS), "--dataset", ",".join(DATASETS)]
    with tempfile.TemporaryDirectory() as tmp, EIAStub(api_key=KEY) as stub:
        serve_recent(stub)
        db_path = Path(tmp) / "ingest.db"
        # a fresh database each run: the figure includes creating the schema
        best = min(wall_time(ingest, ingest_env(stub, db_path)) for _ in range(RUNS))
        requests = sum(1 for r in stub.requests if r.route) // RUNS
    command = f"gridpulse ingest --since 24h (5 BAs, all {len(DATASETS)} datasets)"
    print(json.dumps({"command": command, "seconds": round(best, 3), "runs": RUNS, "requests": requests}))


if __name__ == "__main__":
    main()
