"""What an operator reads: `runs`, `gaps`, `revisions` and `health` tables in 80 columns (on a
terminal, with rich, and piped, as plain text), and the wording helpers behind every count.

The commands run in-process (CliRunner) on a SQLite database the library filled from the stub;
the terminal is a rich Console forced to 80 columns, the pipe is COLUMNS=80.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gridpulse_cli import render
from gridpulse_cli.cli import app
from gridpulse_cli.db import LoadCounts, Store
from gridpulse_cli.ledger import finish_run, start_run
from gridpulse_cli.render import Column, column_widths, print_table
from gridpulse_cli.text import compact_count, human_duration, plural, short_list, shorten
from testing.eia_stub import EIAStub
from tests.helpers import (
    EXPECTED_GAPS,
    NOW,
    NOW_TEXT,
    OPS_WINDOW,
    library_ingest,
    make_holes,
    restored_process_state,
    serve_ops,
)

WIDTH = 80


@pytest.fixture
def ops_db(stub: EIAStub, tmp_path: Path) -> str:
    """Four days of PJM and CISO data with EXPECTED_GAPS' holes, 48 revised values, and runs with
    the longest command, status, counts and error the table has to show."""
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    serve_ops(stub)
    make_holes(stub)
    library_ingest(url, stub)
    revised = stub.revise(
        "region-data",
        lambda r: r["respondent"] == "PJM" and r["period"].startswith("2024-01-03"),
        lambda r: str(float(r["value"]) + 0.5),
    )
    assert revised == 24
    revised += stub.revise(
        "fuel-type-data",
        lambda r: (
            r["respondent"] == "CISO" and r["fueltype"] == "SUN" and r["period"].startswith("2024-01-03")
        ),
        lambda r: str(-float(r["value"]) - 1234.5),
    )
    assert revised == 48
    library_ingest(url, stub)
    store = Store.open(url)
    try:
        run = start_run(store, "backfill --gaps", OPS_WINDOW, ["PJM", "CISO"], ["fuel-mix"], NOW)
        finish_run(
            store,
            run,
            "interrupted",
            NOW + timedelta(minutes=2, seconds=5),
            fetched=1_234_567,
            counts=LoadCounts(inserted=987_654, revised=12_345, unchanged=234_568),
            requests=250,
            error="interrupted after 3 committed chunks (run 3); committed chunks are kept, re-run to continue",
        )
        run = start_run(store, "ingest", OPS_WINDOW, ["PJM"], ["demand"], NOW)
        finish_run(
            store,
            run,
            "failed",
            NOW + timedelta(seconds=3),
            error="EIA rejected the request (HTTP 400): " + "x" * 120,
        )
    finally:
        store.close()
    return url


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    with restored_process_state():
        yield CliRunner()


def terminal(monkeypatch: pytest.MonkeyPatch) -> Console:
    """An 80-column terminal for print_table (as if stdout were a TTY)."""
    console = Console(width=WIDTH, force_terminal=True, record=True, file=io.StringIO())
    monkeypatch.setattr(render, "_terminal_console", lambda: console)
    return console


def output(runner: CliRunner, *args: str, console: Console | None = None, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"GRIDPULSE_NOW": NOW_TEXT, "COLUMNS": str(WIDTH)})
    assert result.exit_code == code, result.output
    text = console.export_text(styles=False) if console else result.stdout
    lines = text.splitlines()
    assert lines and all(len(line.rstrip()) <= WIDTH for line in lines), "\n" + text
    return text


def cells(text: str) -> set[str]:
    """Every whitespace-separated word of a table (what a reader sees, whole)."""
    return set(re.split(r"\s+", text))


# ---- runs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_runs_table_fits_80_columns_without_cutting_numbers(
    ops_db: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    console = terminal(monkeypatch) if where == "terminal" else None
    text = output(runner, "runs", "--db", ops_db, console=console)
    lines = text.splitlines()
    assert lines[0].startswith("last 4 runs")
    row = next(line for line in lines if line.split()[:1] == ["3"])
    # run, command, status, started (MM-DD HH:MM UTC), took, fetched, inserted, revised
    assert row.split() == [
        "3",
        "backfill",
        "gaps",
        "interrupted",
        "01-05",
        "00:00",
        "2m05s",
        "1.2M",
        "988k",
        "12.3k",
    ]
    assert {"1", "2", "4", "ok", "failed", "ingest", "backfill"} <= cells(text)
    # each error is one line under the table, shortened to fit
    notes = [line for line in lines if re.match(r"run \d+: ", line)]
    assert [n.split(":")[0] for n in notes] == ["run 4", "run 3"]
    assert notes[0].startswith("run 4: EIA rejected the request (HTTP 400): xxx") and notes[0].endswith("…")
    assert notes[1].startswith("run 3: interrupted after 3 committed chunks (run 3);")


def test_runs_json_keeps_every_field(ops_db: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["runs", "--json", "--db", ops_db])
    assert result.exit_code == 0, result.output
    assert '"error": "EIA rejected the request (HTTP 400): ' + "x" * 120 + '"' in result.stdout
    assert '"rows_fetched": 1234567' in result.stdout and '"rows_unchanged": 234568' in result.stdout


# ---- gaps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_gaps_table_fits_80_columns_with_whole_series_ids(
    ops_db: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    console = terminal(monkeypatch) if where == "terminal" else None
    text = output(
        runner, "gaps", "--from", "2024-01-01", "--to", "2024-01-05", "--db", ops_db, console=console
    )
    assert text.splitlines()[0].startswith(f"{len(EXPECTED_GAPS)} gaps, ")
    for gap in EXPECTED_GAPS:
        first = gap["first_missing"].replace(":00:00Z", "Z")
        last = gap["last_missing"].replace(":00:00Z", "Z")
        assert re.search(
            rf"^{re.escape(gap['series_id'])}\s+{first}\s+{last}\s+{gap['hours']}\s+{gap['reason']}\s*$",
            text,
            re.MULTILINE,
        ), (gap, text)


# ---- revisions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_revisions_table_fits_80_columns(
    ops_db: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    console = terminal(monkeypatch) if where == "terminal" else None
    text = output(runner, "revisions", "--db", ops_db, console=console)
    assert text.splitlines()[0].startswith("48 revisions")
    words = cells(text)
    assert {"EBA.PJM-ALL.D.H", "EBA.CISO-ALL.NG.SUN.H", "2024-01-03T05Z"} <= words
    assert any(w.startswith("-") and w.endswith(".5") and len(w) >= 7 for w in words)  # whole values


def test_revisions_title_says_how_many_exist_when_limited(ops_db: str, runner: CliRunner) -> None:
    text = output(runner, "revisions", "--limit", "5", "--db", ops_db)
    assert text.splitlines()[0].startswith("5 of 48 revisions")
    assert len([line for line in text.splitlines() if line.startswith("EBA.")]) == 5
    text = output(runner, "revisions", "--limit", "48", "--db", ops_db)
    assert text.splitlines()[0].startswith("48 revisions")


# ---- health -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_health_tables_fit_80_columns(
    ops_db: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    console = terminal(monkeypatch) if where == "terminal" else None
    result = runner.invoke(app, ["health", "--json", "--db", ops_db], env={"GRIDPULSE_NOW": NOW_TEXT})
    code = result.exit_code  # health's verdict on this data is not the point here; its layout is
    text = output(runner, "health", "--db", ops_db, console=console, code=code)
    assert {"PJM", "CISO", "database", "runs"} <= cells(text)


# ---- the layout itself --------------------------------------------------------------------------


def test_only_wrapping_columns_and_long_headers_give_way() -> None:
    columns = [Column("series_id"), Column("total-interchange"), Column("detail", wrap=True)]
    rows = [["EBA.CISO-ALL.NG.SUN.H", "fresh", "a detail of many words " * 4]]
    assert column_widths(columns, rows, 80) == [21, 17, 38]  # the detail wraps first
    # then, widest first, the header (down to its longest part after a hyphen) and the detail (down
    # to its longest word); the series ID never gives way
    assert column_widths(columns, rows, 46) == [21, len("interchange"), 10]
    assert column_widths(columns, rows, 30) == [21, len("interchange"), len("detail")]
    # nothing can give way: the table is wider than asked, and nothing is cut
    assert column_widths([Column("a"), Column("b")], [["x" * 50, "y" * 50]], 80) == [50, 50]


def test_plain_table_wraps_a_long_detail_under_its_column(capsys: pytest.CaptureFixture[str]) -> None:
    detail = "3 consecutive unsuccessful runs; last: run 7 (ingest) failed: EIA API unavailable"
    print_table(["check", "status", "detail"], [["runs", "fail", detail]], width=50)
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 50 for line in lines)
    assert lines[1].startswith("runs   fail    3 consecutive")
    assert all(line.startswith(" " * 15) for line in lines[2:])
    assert " ".join(" ".join(line.split()) for line in lines[1:]).endswith(detail)


# ---- wording ------------------------------------------------------------------------------------


def test_plural() -> None:
    assert [plural(n, "chunk") for n in (0, 1, 2, 1620)] == [
        "0 chunks",
        "1 chunk",
        "2 chunks",
        "1,620 chunks",
    ]
    assert plural(1, "series", "series") == "1 series" and plural(1, "retry", "retries") == "1 retry"
    assert plural(3, "retry", "retries") == "3 retries"


def test_short_list_summarises_long_ba_lists() -> None:
    assert short_list(["PJM", "CISO", "MISO", "ERCO", "SWPP"]) == "PJM,CISO,MISO,ERCO,SWPP"
    assert short_list([f"B{i}" for i in range(60)]) == "B0,B1,B2 and 57 more"


def test_compact_counts_durations_and_shortening() -> None:
    assert [compact_count(n) for n in (0, 999, 1000, 12_345, 99_949, 123_456, 1_234_567)] == [
        "0",
        "999",
        "1.0k",
        "12.3k",
        "99.9k",
        "123k",
        "1.2M",
    ]
    assert [human_duration(s) for s in (0.04, 3.45, 42.4, 125, 3720, 97_200)] == [
        "0.0s",
        "3.5s",
        "42s",
        "2m05s",
        "1h02m",
        "1d03h",
    ]
    assert shorten("a  b\nc", 10) == "a b c" and shorten("abcdefghij", 5) == "abcd…"
