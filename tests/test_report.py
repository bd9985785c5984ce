"""`gridpulse report`: one self-contained HTML file, drawn by headless Chromium with no network.

The Chromium checks skip only when no `chromium` is installed here; CI (.ci/run) installs it.
Set GRIDPULSE_REPORT_SCREENSHOT=docs/report.png to keep the screenshot (the README shows it).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from gridpulse_cli.catalog import DATASETS, MVP_BAS
from gridpulse_cli.db import Store
from gridpulse_cli.ingest import run_ingest
from gridpulse_cli.windows import Window
from testing.eia_stub import EIAStub
from tests.helpers import NOW_TEXT as OPS_NOW
from tests.helpers import WATCHED, client_for, gp, library_ingest, ok, serve_all, serve_ops, utc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NOW = "2024-01-08T00:00:00Z"
WINDOW = Window(utc(2024, 1, 1), utc(2024, 1, 8))
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (CI installs Debian's)")


def fill(db_url: str, stub: EIAStub) -> None:
    """A week of the five MVP BAs from the loopback stub (4% missing values), and two findings."""
    serve_all(stub, "2024-01-01T00", "2024-01-07T23")
    store = Store.open(db_url)
    try:
        run_ingest(
            store, client_for(stub), MVP_BAS, DATASETS, WINDOW, now=lambda: datetime(2024, 1, 8, tzinfo=UTC)
        )
        with store.transaction() as conn:
            key = conn.exec_driver_sql(
                "SELECT series_key FROM series WHERE series_id = 'EBA.PJM-ALL.D.H'"
            ).scalar()
            for hour in (5, 6):
                conn.execute(
                    sa.text("INSERT INTO findings VALUES (:k, :t, 'spike', 'test finding', :t, NULL)"),
                    {"k": key, "t": store.encode_time(utc(2024, 1, 3, hour))},
                )
    finally:
        store.close()


@pytest.fixture
def report(sqlite_url: str, stub: EIAStub, tmp_path: Path) -> Path:
    fill(sqlite_url, stub)
    path = tmp_path / "report.html"
    started = time.monotonic()
    ok(
        gp(
            "report",
            "--since",
            "7d",
            "-o",
            str(path),
            env={"GRIDPULSE_DATABASE_URL": sqlite_url, "GRIDPULSE_NOW": NOW},
        )
    )
    assert (
        time.monotonic() - started < 30
    )  # a week here; 30 days x 5 BAs builds in seconds too (docs/report.md)
    return path


def test_report_is_one_file_that_asks_nothing_of_the_network(report: Path) -> None:
    page = report.read_text()
    assert report.stat().st_size < 3_500_000  # a week of the five BAs; plotly.js packed (1.9 MB)
    umask = os.umask(0o022)
    os.umask(umask)
    assert report.stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any file the user writes
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=[\"']?(https?:)?//", page, re.I)
    assert page.count("Plotly.newPlot") >= 1 + 1 + 5 * 3  # coverage, runs, 3 charts per BA
    for section in (
        "Coverage",
        "Freshness of the watched set",
        "Runs",
        "Revisions",
        "Quality findings",
        "Lineage",
    ):
        assert f"<h2>{section}</h2>" in page
    assert "test finding" in page and "region-data" in page


def test_report_builds_on_sqlite_and_postgresql(db_url: str, stub: EIAStub, tmp_path: Path) -> None:
    serve_ops(stub)
    library_ingest(db_url, stub)
    path = tmp_path / "ops.html"
    env = {"GRIDPULSE_DATABASE_URL": db_url, "GRIDPULSE_NOW": OPS_NOW, **WATCHED}
    ok(gp("report", "--from", "2024-01-01", "--to", "2024-01-05", "-o", str(path), env=env))
    page = path.read_text()
    assert '<h2 id="ba-PJM">PJM</h2>' in page and '<h2 id="ba-CISO">CISO</h2>' in page
    assert "EBA.PJM-MISO.ID.H" in page and "interchange-data" in page  # lineage of an interchange series


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with every host name unresolvable: a request leaving the file fails (and logs)."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=15000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_errors(stderr: str) -> list[str]:
    """The page's JavaScript errors and failed loads, as Chromium logs its console to stderr."""
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and re.search(r"Uncaught|Error|Failed to load|net::ERR", line)
    ]


def png_distinct_bytes(path: Path) -> int:
    """How many different byte values the PNG's pixel data holds (a blank page: a handful)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


@needs_chromium
def test_chromium_draws_every_chart_without_errors_or_requests(report: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    assert dom.stdout.count('class="main-svg"') >= 2 * (2 + 5 * 3)  # plotly draws 2 SVG layers per chart
    assert 'class="hm"' in dom.stdout or "heatmaplayer" in dom.stdout  # the coverage heatmap
    assert dom.stdout.count("scatterlayer") >= 5 * 3
    shot = tmp_path / "report.png"
    screenshot = chromium(f"--screenshot={shot}", "--window-size=1400,3400", report.as_uri())
    assert screenshot.returncode == 0 and shot.exists(), screenshot.stderr[-2000:]
    assert console_errors(screenshot.stderr) == []
    assert png_distinct_bytes(shot) > 64
    if keep := os.environ.get("GRIDPULSE_REPORT_SCREENSHOT"):
        shutil.copy(shot, keep)


@needs_chromium
def test_the_console_check_sees_a_script_error_and_a_blocked_request(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        '<html><body><img src="https://example.com/x.png"><script>nosuchfunction()</script></body></html>'
    )
    result = chromium("--dump-dom", page.as_uri())
    errors = console_errors(result.stderr)
    assert any("nosuchfunction" in line for line in errors), result.stderr[-2000:]
