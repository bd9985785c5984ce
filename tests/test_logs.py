"""Logging: plain and JSON formats, levels, and --quiet."""

from __future__ import annotations

import json
import re
from pathlib import Path

from testing.eia_stub import EIAStub, make_region_rows
from tests.helpers import TIME_RE, in_parallel, ok

PLAIN_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .+$"
)


def test_log_formats_levels_and_quiet(stub: EIAStub, cli_env: dict[str, str], tmp_path: Path) -> None:
    stub.set_rows("region-data", make_region_rows(["PJM"], "2024-01-01T00", "2024-01-02T00", types=("D",)))
    args = ["--ba", "PJM", "--dataset", "demand", "--from", "2024-01-01", "--to", "2024-01-02"]

    def db(name: str) -> list[str]:
        return ["--db", f"sqlite:///{tmp_path / name}.db"]

    as_json, quiet, warning, plain = in_parallel(
        (["--log-format", "json", "ingest", *args, *db("json")], {}),
        (["-q", "ingest", *args, *db("quiet")], {}),
        (["ingest", *args, *db("warning")], {"GRIDPULSE_LOG_LEVEL": "WARNING"}),
        (["ingest", *args, *db("plain")], {}),
    )
    for result in (as_json, quiet, warning, plain):
        assert ok(result) == ""  # data to stdout, logs to stderr: ingest writes no data

    lines = as_json.stderr.splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert TIME_RE.match(entry["time"])
    assert any(e["level"] == "info" and e["message"].startswith("run 1 ok:") for e in entries), entries

    assert quiet.stderr == ""
    assert warning.stderr == ""

    lines = plain.stderr.splitlines()
    assert lines and all(PLAIN_LINE.match(line) for line in lines), plain.stderr
    assert "\x1b[" not in plain.stderr
    assert any(" INFO gridpulse: run 1 ok:" in line for line in lines), plain.stderr
