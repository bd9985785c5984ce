"""Shared benchmark plumbing: fresh databases, peak RSS, the results file."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"
PG_ADMIN = os.environ.get("GRIDPULSE_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    VmHWM rather than ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_database(backend: str, name: str, workdir: Path) -> str:
    """A new empty database URL for one benchmark run."""
    if backend == "sqlite":
        path = workdir / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def write_section(marker: str, body: str) -> None:
    """Replace the text between <!-- bench:MARKER --> and <!-- /bench:MARKER --> in docs/benchmarks.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    start, end = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


# Runs the real CLI as the `gridpulse` executable does (gridpulse_cli.entry: it ends with os._exit,
# skipping the interpreter's teardown) and prints its peak RSS on the way out. VmHWM, not
# ru_maxrss: ru_maxrss survives exec and would report the benchmark harness's own peak.
_CHILD = (
    "import os, sys; from gridpulse_cli import entry; sys.argv = ['gridpulse'] + sys.argv[1:]; "
    "hwm = lambda: next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')); "
    "os._exit = lambda code, _exit=os._exit: (print('PEAK_RSS_KB', hwm(), file=sys.stderr, flush=True), "
    "_exit(code)); entry.main()"
)


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss_mb: float
    stderr: str


def timed_process(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run one whole process from the repository root; its result and wall seconds. Raises if it fails."""
    started = time.perf_counter()
    proc = subprocess.run(
        command, env={**os.environ, **(env or {})}, cwd=ROOT, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[-3:])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc, elapsed


def run_gridpulse(args: list[str], env: dict[str, str]) -> ChildRun:
    """`gridpulse ARGS` in a fresh process (plain logs); raises if it fails."""
    proc, elapsed = timed_process([sys.executable, "-c", _CHILD, "--log-format", "plain", *args], env)
    rss = next(
        (int(line.split()[1]) / 1024 for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")),
        0.0,
    )
    return ChildRun(elapsed, rss, proc.stderr)


def stored_rows(db_url: str) -> int:
    """How many observations a benchmark database holds."""
    from gridpulse_cli.db import Store

    store = Store.open(db_url)
    with store.engine.connect() as conn:
        count = int(conn.exec_driver_sql("SELECT count(*) FROM observations").scalar_one())
    store.close()
    return count
