"""What an operator reads on stderr: error lines that fit a terminal, the progress bar, the
`backfill --gaps` summary, and log lines with structured fields and short BA lists."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from gridpulse_cli import render
from gridpulse_cli.backfill import GapFillReport
from gridpulse_cli.catalog import REGION_DATA
from gridpulse_cli.db import Store
from gridpulse_cli.engine import ChunkDone
from gridpulse_cli.errors import ExitCode
from gridpulse_cli.gaps import Gap
from gridpulse_cli.ingest import run_ingest
from gridpulse_cli.ledger import RunReport
from gridpulse_cli.logs import rich_console, setup_logging
from gridpulse_cli.planner import Chunk
from gridpulse_cli.runs import list_runs
from gridpulse_cli.windows import Window
from testing.eia_stub import EIAStub, make_region_rows
from tests.helpers import (
    NOW_TEXT,
    OPS_WINDOW,
    WINDOW_ARGS,
    Holder,
    client_for,
    closed_port,
    error_lines,
    gp,
    library_ingest,
    make_holes,
    ok,
    restored_process_state,
    serve_ops,
)

# An error line may take two 80-column terminal lines, no more.
TWO_LINES = 160
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---- error lines ----------------------------------------------------------------------------------


def test_common_failures_are_one_short_error_line(cli_env: dict[str, str], stub: EIAStub) -> None:
    stub.set_rows("region-data", make_region_rows(["PJM"], "2024-01-01T00", "2024-01-02T00", types=("D",)))
    args = ["ingest", "--ba", "PJM", "--dataset", "demand", "--from", "2024-01-01", "--to", "2024-01-02"]
    unreachable = f"http://127.0.0.1:{closed_port()}/v2"
    cases = [
        (args, {"GRIDPULSE_EIA_URL": unreachable, "GRIDPULSE_MAX_TRIES": "2"}, ExitCode.EIA_UNAVAILABLE),
        (args, {"EIA_API_KEY": "wrong-key-feedface0123456789"}, ExitCode.EIA_AUTH),
        (["runs", "--db", "postgresql://postgres@127.0.0.1:1/gridpulse"], {}, ExitCode.DATABASE),
    ]
    results = [gp(*a, env=env) for a, env, _code in cases]
    stub.fail_next("http400")
    results.append(gp(*args))
    cases.append((args, {}, ExitCode.EIA_UNAVAILABLE))

    lines = []
    for result, (_args, _env, code) in zip(results, cases, strict=True):
        assert result.returncode == code, result.stderr
        (line,) = error_lines(result.stderr)
        assert len(line) <= TWO_LINES, line
        lines.append(line)
    # ... and each still says what failed, with which value, and what to check
    assert unreachable in lines[0] and "failed 2 times" in lines[0] and "connection refused" in lines[0]
    assert "API_KEY_INVALID" in lines[1] and "EIA_API_KEY" in lines[1]
    assert "postgresql://postgres@127.0.0.1:1/gridpulse" in lines[2] and "refused" in lines[2]
    assert "HTTP 400" in lines[3] and "Invalid sort column" in lines[3]


def test_lock_give_up_fits_two_lines(sqlite_url: str, cli_env: dict[str, str]) -> None:
    with Holder(sqlite_url) as holder:
        result = gp("ingest", "--db", sqlite_url, env={"GRIDPULSE_LOCK_TIMEOUT": "1"})
    assert result.returncode == ExitCode.LOCKED
    (line,) = error_lines(result.stderr)
    host = socket.gethostname().split(".")[0]
    assert f"run {holder.run_id} (ingest, pid " in line and f" on {host}, since 01-05 00:00 UTC)" in line
    assert "GRIDPULSE_LOCK_TIMEOUT" in line
    assert len(line.replace(host, "")) <= TWO_LINES - 12, line  # room for a 12-character host name


# ---- the progress bar -----------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_the_log_console_with_labelled_times() -> None:
    stream = Terminal()
    chunk = Chunk(REGION_DATA, {"respondent": ["PJM"], "type": ["D"]}, OPS_WINDOW)
    with restored_process_state():
        setup_logging("INFO", "rich", stream=stream)
        console = rich_console()
        assert console is not None and console.file is stream
        on_chunk, stop = render.reporter("backfill")
        try:
            # logged while the bar is live (as run_backfill does when it resumes)
            logging.getLogger("gridpulse_cli.backfill").info(
                "resuming backfill abc: 3 of 10 chunks committed"
            )
            on_chunk(
                ChunkDone(chunk, 4, 10, 5000, RunReport(run_id=1, chunks=4, fetched=20_000, elapsed=2.0))
            )
            time.sleep(0.4)  # the bar redraws 10 times a second
        finally:
            stop()
    text = ANSI.sub("", stream.getvalue())
    assert "resuming backfill abc" in text  # through the bar's console, so it is drawn above the bar
    assert "4/10" in text and "20.0k rows 10.0k/s" in text
    assert "elapsed 0:00:0" in text and "eta " in text
    # every frame of the bar fits one line with room for the terminal's '^C' echo
    frames = [f for f in re.split(r"[\r\n]", text) if "━" in f]
    assert frames and all(len(f) <= console.width - 3 for f in frames), frames


# ---- backfill --gaps ------------------------------------------------------------------------------


def test_backfill_gaps_summarises_what_is_still_missing(
    sqlite_url: str, stub: EIAStub, cli_env: dict[str, str]
) -> None:
    serve_ops(stub)
    make_holes(stub)
    library_ingest(sqlite_url, stub)
    # EIA still lacks every hole: nothing is filled
    result = gp("backfill", "--gaps", *WINDOW_ARGS, "--db", sqlite_url, env={"GRIDPULSE_NOW": NOW_TEXT})
    ok(result)
    messages = [line.split(": ", 1)[1] for line in result.stderr.splitlines()]
    summary = [m for m in messages if m.startswith(("filled", "still missing", "run `"))]
    assert summary == [
        "filled 0 of 24 missing hours; 24 hours in 8 series still missing upstream",
        "still missing: PJM fuel-mix: 9 hours in 2 series, 2024-01-01T00Z..2024-01-02T01Z",
        "still missing: PJM interchange: 5 hours in 2 series, 2024-01-02T03Z..2024-01-02T22Z",
        "still missing: CISO demand: 3 hours in 1 series, 2024-01-03T10Z..2024-01-03T13Z",
        "still missing: CISO fuel-mix: 3 hours in 1 series, 2024-01-02T12Z..2024-01-02T14Z",
        "still missing: PJM demand: 3 hours in 1 series, 2024-01-02T05Z..2024-01-02T07Z",
        "still missing: and 1 more BA/dataset group",
        "run `gridpulse gaps --from 2024-01-01 --to 2024-01-05` for the full list",
    ]


def test_gap_summary_stays_short_for_hundreds_of_gaps() -> None:
    def gaps(ba: str, count: int) -> list[Gap]:
        return [
            Gap(
                f"EBA.{ba}-ALL.NG.{fuel}.H",
                f"2024-01-{day:02d}T05:00:00Z",
                f"2024-01-{day:02d}T05:00:00Z",
                1,
                "absent",
            )
            for day in range(1, 1 + count // 5)
            for fuel in ("COL", "NG", "NUC", "SUN", "WND")
        ]

    after = [g for ba in ("PJM", "CISO", "MISO", "ERCO", "SWPP", "NYIS", "ISNE") for g in gaps(ba, 35)]
    assert len(after) == 245
    report = GapFillReport(before=after + gaps("PACW", 10), after=after, run=RunReport())
    lines = report.summary_lines("gridpulse gaps")
    assert len(lines) == 8  # the verdict, 5 groups, how many more, where the full list is
    assert lines[0] == "filled 10 of 255 missing hours; 245 hours in 35 series still missing upstream"
    assert lines[1] == "still missing: CISO fuel-mix: 35 hours in 5 series, 2024-01-01T05Z..2024-01-07T05Z"
    assert lines[-2:] == [
        "still missing: and 2 more BA/dataset groups",
        "run `gridpulse gaps` for the full list",
    ]
    assert report.log_fields() == {
        "filled_hours": 10,
        "missing_hours": 255,
        "still_missing_hours": 245,
        "still_missing_series": 35,
    }


# ---- log lines ------------------------------------------------------------------------------------


def test_json_log_lines_carry_the_counts_as_fields(
    stub: EIAStub, cli_env: dict[str, str], tmp_path: Path
) -> None:
    stub.set_rows("region-data", make_region_rows(["PJM"], "2024-01-01T00", "2024-01-02T00", types=("D",)))
    args = ["--ba", "PJM", "--dataset", "demand", "--from", "2024-01-01", "--to", "2024-01-02"]
    result = gp("--log-format", "json", "ingest", *args, "--db", f"sqlite:///{tmp_path / 'j.db'}")
    ok(result)
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    (summary,) = [e for e in entries if e["message"].startswith("run 1 ok:")]
    assert summary["message"].startswith(
        "run 1 ok: 1 chunk, 24 rows fetched, 24 inserted, "
    )  # not "1 chunks"
    assert "1 request, 0 retries" in summary["message"]
    elapsed = summary.pop("elapsed_s")
    assert isinstance(elapsed, float) and elapsed >= 0
    assert {k: summary[k] for k in summary if k not in ("time", "level", "logger", "message")} == {
        "run_id": 1,
        "status": "ok",
        "chunks": 1,
        "rows_fetched": 24,
        "inserted": 24,
        "revised": 0,
        "unchanged": 0,
        "requests": 1,
        "retries": 0,
        "throttled": 0,
        "findings": 0,
    }
    (chunk,) = [e for e in entries if e["message"].startswith("chunk ")]
    assert (chunk["run_id"], chunk["chunk"], chunk["chunks"], chunk["rows"], chunk["inserted"]) == (
        1,
        1,
        1,
        24,
        24,
    )


def test_log_lines_summarise_long_ba_lists(stub: EIAStub, cli_env: dict[str, str], tmp_path: Path) -> None:
    stub.set_rows("region-data", make_region_rows(["PJM"], "2024-01-01T00", "2024-01-02T00", types=("D",)))
    args = ["--ba", "all", "--dataset", "demand", "--from", "2024-01-01", "--to", "2024-01-02"]
    raw = tmp_path / "raw.jsonl"
    ingest = gp("ingest", *args, "--db", f"sqlite:///{tmp_path / 'all.db'}")
    fetch = gp("fetch", *args, "-o", str(raw))
    ok(ingest)
    ok(fetch)
    lines = ingest.stderr.splitlines() + fetch.stderr.splitlines()
    chunk_lines = [line for line in lines if " chunk 1/1 " in line or " fetched " in line]
    assert len(chunk_lines) == 2, lines
    for line in chunk_lines:
        assert "PJM" not in line or " more " in line
        assert len(line) < 200, line
        assert " and " in line and " more " in line, line


# ---- the ledger's durations -----------------------------------------------------------------------


def test_run_durations_are_the_runs_own_elapsed_seconds(db_url: str, stub: EIAStub) -> None:
    """A float to 0.1 s on SQLite and PostgreSQL alike, even with the clock pinned (replays, tests)."""
    serve_ops(stub)
    stub.latency = 0.25
    pinned = datetime(2024, 1, 5, tzinfo=UTC)
    store = Store.open(db_url)
    try:
        run_ingest(
            store,
            client_for(stub),
            ["PJM"],
            ["demand"],
            Window(pinned.replace(day=4), pinned),
            now=lambda: pinned,
        )
        (run,) = list_runs(store, 1)
    finally:
        store.close()
    assert run.started_at_utc == run.finished_at_utc  # the pinned clock did not move ...
    assert isinstance(run.duration_s, float) and 0.2 <= run.duration_s < 20  # ... the run took time
    assert run.duration_s == round(run.duration_s, 1)
