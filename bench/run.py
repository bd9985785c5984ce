"""`make bench`: run every benchmark in fresh processes and write docs/benchmarks.md.

python -m bench.run [--rows 1000000] [--naive-rows N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from bench.common import ROOT, machine, write_section

TARGETS = {
    ("postgresql", "fresh"): "≥ 150,000 rows/s",
    ("postgresql", "identical"): "≥ 200,000 rows/s, 0 written",
    ("postgresql", "changed-1%"): "writes exactly the changed rows",
    ("sqlite", "fresh"): "≥ 250,000 rows/s",
}


def _run(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for result in results:
        print(json.dumps(result), flush=True)
    return results


def load_benchmarks(rows: int, naive_rows: int) -> None:
    results: list[dict[str, Any]] = []
    for backend in ("postgresql", "sqlite"):
        results += _run("bench.load", backend, "gridpulse", str(rows))
        results += _run("bench.load", backend, "naive", str(naive_rows))
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on this project's machine ({machine()}); "
        f"{rows:,} observations, loaded in chunks of 100,000 through `Store.upsert` (the path `ingest`, "
        "`backfill` and `load` share). Each backend's phases run in one fresh process; peak RSS is that process's.",
        "",
        "| backend | approach | phase | rows | seconds | rows/s | rows written | peak RSS MB | target |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        target = TARGETS.get((r["backend"], r["phase"]), "") if r["approach"] == "gridpulse" else ""
        lines.append(
            f"| {r['backend']} | {r['approach']} | {r['phase']} | {r['rows']:,} | {r['seconds']} | "
            f"{r['rows_per_s']:,} | {r['written']:,} | {r['peak_rss_mb']} | {target} |"
        )
    lines.append("")
    for backend in ("postgresql", "sqlite"):
        ours = next(
            r
            for r in results
            if r["backend"] == backend and r["phase"] == "fresh" and r["approach"] == "gridpulse"
        )
        naive = next(r for r in results if r["backend"] == backend and r["approach"] != "gridpulse")
        lines.append(
            f"- {backend}: fresh load is {ours['rows_per_s'] / naive['rows_per_s']:.1f}x the naive approach "
            f"({ours['rows_per_s']:,} vs {naive['rows_per_s']:,} rows/s)."
        )
    write_section("load", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--naive-rows", type=int, default=None, help="rows for the naive approach (default: --rows)"
    )
    parser.add_argument("--only", choices=["load", "backfill"], default=None)
    args = parser.parse_args()
    if args.only in (None, "load"):
        load_benchmarks(args.rows, args.naive_rows or args.rows)


if __name__ == "__main__":
    main()
