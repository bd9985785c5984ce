"""What the command line does with bad or hostile input (issue 8, defects 6-8).

- Reading commands never create, migrate or write a database (SQLite or PostgreSQL).
- A usage error (unknown option or command, missing or bad value) is one `gridpulse: error:` line.
- Out-of-range times and durations, windows before EIA-930 began, non-UTF-8 input, over-long codes
  and megabyte-long values are one short error line and a documented exit code, never a crash.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from gridpulse_cli.cli import app
from gridpulse_cli.db import Store
from gridpulse_cli.db.schema import SCHEMA_VERSION
from gridpulse_cli.errors import ExitCode, InputFormatError, one_line, quote
from gridpulse_cli.files import Utf8Reader
from tests.helpers import (
    GP,
    ROOT,
    restored_process_state,
    v1_database,
)

NOW = "2024-06-01T00:00:00Z"
CSV_HEAD = "series_id,period_end_utc,value,quality_flag\n"
CSV_ROW = "EBA.PJM-ALL.D.H,2024-01-01T01:00:00Z,90000,good\n"
RAW_ROW = '{"period":"2024-01-01T01","respondent":"PJM","type":"D","value":"5"}\n'
HUGE = "A" * 5_000_000
LINE_LIMIT = 300  # characters in the one error line, whatever the input quoted


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def base_env(tmp_path: Path) -> dict[str, str | None]:
    """A private HOME, no database configured, a pinned clock, and an EIA URL nothing listens on
    (none of these inputs may reach EIA: if one did, it would fail, not touch the network)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": None,
        "GRIDPULSE_DATABASE_URL": None,
        "GRIDPULSE_LOG_LEVEL": None,
        "GRIDPULSE_ENV_FILE": None,
        "GRIDPULSE_BA": None,
        "GRIDPULSE_DATASETS": None,
        "GRIDPULSE_NOW": NOW,
        "EIA_API_KEY": "test-key-input-cases",
        "GRIDPULSE_EIA_URL": "http://127.0.0.1:9/v2",
        "GRIDPULSE_MAX_TRIES": "1",
    }


def invoke(args: list[str], env: dict[str, str | None], stdin: bytes = b"") -> Result:
    """Run the app in-process (CliRunner takes the same path as the console script)."""
    with restored_process_state():
        result = CliRunner().invoke(app, args, input=stdin, env=env)
    stderr = result.stderr
    if not isinstance(result.exception, SystemExit | None):
        stderr += f"\nTraceback (in-process): {result.exception!r}"
    return Result(result.exit_code, result.stdout, stderr)


def run_process(args: list[str], env: dict[str, str | None], stdin: bytes = b"") -> Result:
    """Run `python -m gridpulse_cli` with real stdin bytes (the locale's decoding, not CliRunner's)."""
    full = dict(os.environ)
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    done = subprocess.run(
        [*GP, *args], env=full, input=stdin, capture_output=True, cwd=ROOT, timeout=120, check=False
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode(errors="replace"))


def assert_one_error_line(
    result: Result, code: int, mentions: tuple[str, ...] = (), limit: int = LINE_LIMIT
) -> str:
    assert result.code == code, f"exit {result.code}, expected {code}: {result.stderr[:2000]}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("gridpulse: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[:2000]
    assert all(len(line) <= limit for line in lines), [len(line) for line in lines]
    for word in mentions:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    return errors[0]


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# ---- defect 6: reading never creates or migrates -------------------------------------------------

READERS = [["export"], ["gaps"], ["runs"], ["revisions"], ["export", "--since", "24h", "--ba", "PJM"]]


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c))
def test_reading_a_mistyped_sqlite_path_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "typo" / "deeper" / "gridpulse.db"
    result = invoke([*command, "--db", str(db)], base_env(tmp_path))
    assert_one_error_line(
        result, ExitCode.DATABASE, (f"no gridpulse database at {db}", "GRIDPULSE_DATABASE_URL")
    )
    assert result.stdout == ""
    assert not (tmp_path / "typo").exists()


def test_reading_the_default_database_before_any_ingest_creates_nothing(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    result = invoke(["export"], env)
    assert_one_error_line(result, ExitCode.DATABASE, ("no gridpulse database at",))
    assert not (Path(str(env["HOME"])) / ".local").exists()


def test_health_without_a_database_is_a_failed_check_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "typo" / "gridpulse.db"
    result = invoke(["health", "--json", "--db", str(db)], base_env(tmp_path))
    assert result.code == ExitCode.CHECK_FAILED, result.stderr
    assert '"name": "database"' in result.stdout and "no gridpulse database at" in result.stdout
    assert not (tmp_path / "typo").exists()


def test_reading_a_file_that_is_not_a_gridpulse_database_leaves_it_as_it_was(tmp_path: Path) -> None:
    empty, other = tmp_path / "empty.db", tmp_path / "other.db"
    empty.touch()
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = other.read_bytes()
    for db in (empty, other):
        for command in (["export"], ["runs"]):
            result = invoke([*command, "--db", str(db)], base_env(tmp_path))
            assert_one_error_line(result, ExitCode.DATABASE, (f"no gridpulse database at {db}",))
    assert empty.stat().st_size == 0
    assert other.read_bytes() == before  # not even switched to WAL
    assert tables(other) == {"notes"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["empty.db", "other.db"]


def test_readers_refuse_an_older_schema_and_leave_it_for_migrate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "old.db"
    v1_database(f"sqlite:///{db}", monkeypatch)
    for command in (["export"], ["gaps"], ["runs"], ["revisions"]):
        result = invoke([*command, "--db", str(db)], base_env(tmp_path))
        assert_one_error_line(result, ExitCode.DATABASE, ("schema version 1", "gridpulse migrate"))
    health = invoke(["health", "--json", "--db", str(db)], base_env(tmp_path))
    assert health.code == ExitCode.CHECK_FAILED and "gridpulse migrate" in health.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM gridpulse_schema").fetchone() == (1,)

    assert invoke(["migrate", "--db", str(db)], base_env(tmp_path)).code == 0
    exported = invoke(["export", "--db", str(db)], base_env(tmp_path))
    assert exported.code == 0, exported.stderr
    assert "EBA.CISO-ALL.D.H,2024-01-01T05:00:00Z,25055,good" in exported.stdout


def test_writers_still_create_the_database_and_its_folder(tmp_path: Path) -> None:
    db = tmp_path / "new" / "folder" / "gridpulse.db"
    loaded = invoke(["load", "--db", str(db)], base_env(tmp_path), (CSV_HEAD + CSV_ROW).encode())
    assert loaded.code == 0, loaded.stderr
    assert "observations" in tables(db)
    exported = invoke(["export", "--db", str(db), "--since", "7305d"], base_env(tmp_path))
    assert exported.code == 0, exported.stderr  # readers accept a --since reaching before 2015
    assert CSV_ROW.strip() in exported.stdout


@pytest.mark.postgres
def test_reading_an_empty_postgresql_database_runs_no_ddl(tmp_path: Path, pg_url: str) -> None:
    url = "postgresql://" + pg_url.split("://", 1)[1]
    for command in READERS:
        result = invoke([*command, "--db", url], base_env(tmp_path))
        assert_one_error_line(result, ExitCode.DATABASE, ("no gridpulse database at postgresql",))
    health = invoke(["health", "--json", "--db", url], base_env(tmp_path))
    assert health.code == ExitCode.CHECK_FAILED and "no gridpulse database" in health.stdout
    engine = sa.create_engine(pg_url)
    try:
        assert sa.inspect(engine).get_table_names() == []  # not one table in the fresh schema
    finally:
        engine.dispose()
    assert not (tmp_path / "home" / ".local").exists()


def test_a_read_only_store_cannot_write(db_url: str) -> None:
    Store.open(db_url).close()
    store = Store.open(db_url, read_only=True)
    try:
        with store.engine.connect() as conn:
            assert store.schema_version(conn) == SCHEMA_VERSION
            with pytest.raises(sa.exc.SQLAlchemyError, match=r"read-?only"):
                conn.exec_driver_sql("CREATE TABLE intruder (x INTEGER)")
    finally:
        store.close()


# ---- defect 7: usage errors are one line -------------------------------------------------------

USAGE_ERRORS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "unknown-option": (["export", "--frm", "2024-01-01"], ("No such option: --frm", "did you mean --format or --from?")),
    "unknown-global-option": (["--verbose", "export"], ("--verbose",)),
    "unknown-command": (["exprot"], ("exprot", "export")),
    "missing-value": (["export", "--from"], ("--from", "requires an argument")),
    "missing-value-last": (["export", "--ba"], ("--ba",)),
    "workers-too-low": (["backfill", "--from", "2024-01-01", "--workers", "0"], ("--workers",)),
    "workers-too-high": (["backfill", "--from", "2024-01-01", "--workers", "99"], ("--workers",)),
    "not-a-number": (["runs", "--last", "ten"], ("--last",)),
    "too-big-for-sql": (["runs", "--last", "99999999999999999999"], ("--last",)),
    "limit-too-big-for-sql": (["revisions", "--limit", "9223372036854775808"], ("--limit",)),
    "extra-argument": (["ingest", "now"], ("now",)),
    "huge-option": (["export", "--" + "x" * 100_000], ("No such option",)),
    "bad-log-format": (["--log-format", "yaml\nmore", "export"], ("'yaml\\nmore'",)),
}


@pytest.mark.parametrize("name", USAGE_ERRORS)
def test_usage_errors_are_one_line(tmp_path: Path, name: str) -> None:
    args, mentions = USAGE_ERRORS[name]
    result = invoke(args, base_env(tmp_path))
    line = assert_one_error_line(result, ExitCode.USAGE, mentions)
    assert "Usage:" not in result.stderr and "Try '" not in result.stderr, line
    assert result.stdout == ""


def test_usage_error_as_a_real_process(tmp_path: Path) -> None:
    result = run_process(["export", "--frm", "2024-01-01"], base_env(tmp_path))
    assert result.stderr == "gridpulse: error: No such option: --frm (did you mean --format or --from?)\n"
    assert result.code == ExitCode.USAGE


def test_help_version_and_bare_command_are_unchanged(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    bare = invoke([], env)
    assert bare.code == ExitCode.USAGE and "Usage: " in bare.stderr and "Commands" in bare.stderr
    for args in (["--help"], ["-h"], ["export", "--help"]):
        shown = invoke(args, env)
        assert shown.code == 0 and shown.stdout.startswith("Usage: "), (args, shown.stderr)
    version = invoke(["--version"], env)
    assert version.code == 0 and version.stdout.startswith("gridpulse ")


# ---- defect 8: inputs that crashed --------------------------------------------------------------


@dataclass
class Case:
    args: list[str]
    code: ExitCode
    mentions: tuple[str, ...] = ()
    stdin: bytes = b""
    files: dict[str, bytes] = field(default_factory=dict)
    env: dict[str, str | None] = field(default_factory=dict)
    limit: int = LINE_LIMIT
    process: bool = False  # also as a real process: stdin is the locale's, not CliRunner's
    failed_run: bool = False  # the database records the run `failed`, nothing loaded


BAD_UTF8_CSV = (CSV_HEAD + CSV_ROW).encode() + b"EBA.PJM-ALL.D.H,2024-01-01T02:00:00Z,5,go\xffod\n"
BAD_UTF8_RAW = RAW_ROW.encode() + RAW_ROW.encode().replace(b"PJM", b"PJ\xe9M")
UNKNOWN_BA_LIMIT = 1100  # the unknown-BA error lists every valid code (~700 characters) by design

CASES: dict[str, Case] = {
    "since-overflow": Case(["export", "--since", "99999999999999999999d"], ExitCode.USAGE, ("20 years",)),
    "since-overflow-ingest": Case(["ingest", "--since", "99999999999999999999d"], ExitCode.USAGE),
    "since-thousands-of-digits": Case(["gaps", "--since", "9" * 6000 + "h"], ExitCode.USAGE, ("20 years",)),
    "since-27-years": Case(["revisions", "--since", "10000d"], ExitCode.USAGE, ("10000d", "7305d")),
    "to-year-9999": Case(
        ["export", "--from", "2024-01-01", "--to", "9999-12-31T23"],
        ExitCode.USAGE,
        ("'9999-12-31T23'", "2015-07-01T00", "2100-01-01T00"),
    ),
    "to-year-9999-ingest": Case(
        ["ingest", "--from", "2024-01-01", "--to", "9999-12-31T23"], ExitCode.USAGE, ("9999-12-31T23",)
    ),
    "from-year-1-fetch": Case(
        ["fetch", "--from", "0001-01-01"], ExitCode.USAGE, ("'0001-01-01'", "2015-07-01T00"), process=True
    ),
    "from-before-eia930-ingest": Case(
        ["ingest", "--from", "2015-06-30T23"], ExitCode.USAGE, ("2015-07-01T00",)
    ),
    "from-before-eia930-backfill": Case(
        ["backfill", "--from", "2010-01-01"], ExitCode.USAGE, ("2015-07-01T00",)
    ),
    "since-before-eia930-backfill": Case(
        ["backfill", "--since", "1000w"], ExitCode.USAGE, ("2015-07-01T00",)
    ),
    "since-before-eia930-fetch": Case(["fetch", "--since", "7305d"], ExitCode.USAGE, ("2015-07-01T00",)),
    "from-year-1-export": Case(["export", "--from", "0001-01-01"], ExitCode.USAGE, ("0001-01-01",)),
    "huge-from": Case(["gaps", "--from", HUGE[:100_000]], ExitCode.USAGE, ("(100,000 characters)",)),
    "huge-ba": Case(
        ["export", "--ba", HUGE[:100_000]], ExitCode.USAGE, ("(100,000 characters)",), limit=UNKNOWN_BA_LIMIT
    ),
    "ba-with-newline": Case(
        ["export", "--ba", "PJM\nrm -rf"], ExitCode.USAGE, ("'PJM\\nrm -rf'",), limit=UNKNOWN_BA_LIMIT
    ),
    "now-year-9999": Case(
        ["export"], ExitCode.CONFIG, ("GRIDPULSE_NOW",), env={"GRIDPULSE_NOW": "9999-12-31T23:30:00Z"}
    ),
    "infinite-tries": Case(
        ["ingest"], ExitCode.CONFIG, ("GRIDPULSE_MAX_TRIES",), env={"GRIDPULSE_MAX_TRIES": "inf"}
    ),
    "load-stdin-not-utf8": Case(
        ["load", "--db", "{dir}/gp.db"],
        ExitCode.BAD_INPUT,
        ("<stdin>:3:", "not UTF-8", "byte offset 133"),
        stdin=BAD_UTF8_CSV,
        process=True,
        failed_run=True,
    ),
    "load-file-not-utf8": Case(
        ["load", "--db", "{dir}/gp.db", "{dir}/obs.csv"],
        ExitCode.BAD_INPUT,
        ("obs.csv:3:", "not UTF-8", "byte offset 133"),
        files={"obs.csv": BAD_UTF8_CSV},
        failed_run=True,
    ),
    "normalize-stdin-not-utf8": Case(
        ["normalize"], ExitCode.BAD_INPUT, ("<stdin>:2:", "not UTF-8"), stdin=BAD_UTF8_RAW, process=True
    ),
    "normalize-file-not-utf8": Case(
        ["normalize", "{dir}/raw.jsonl"],
        ExitCode.BAD_INPUT,
        ("raw.jsonl:2:",),
        files={"raw.jsonl": BAD_UTF8_RAW},
    ),
    "load-huge-series-id": Case(
        ["load", "--db", "{dir}/gp.db"],
        ExitCode.BAD_INPUT,
        ("<stdin>:3:", "longer than 64", "(5,000,012 characters)"),
        stdin=(CSV_HEAD + CSV_ROW + f"EBA.{HUGE}-ALL.D.H,2024-01-01T02:00:00Z,5,good\n").encode(),
        failed_run=True,
    ),
    "load-long-ba-code": Case(
        ["load", "--db", "{dir}/gp.db"],
        ExitCode.BAD_INPUT,
        ("<stdin>:2:", "EBA.ABCDEFGHIJKLMNOPQ-ALL.D.H"),
        stdin=(CSV_HEAD + "EBA.ABCDEFGHIJKLMNOPQ-ALL.D.H,2024-01-01T02:00:00Z,5,good\n").encode(),
        failed_run=True,
    ),
    "load-huge-value": Case(
        ["load", "--db", "{dir}/gp.db"],
        ExitCode.BAD_INPUT,
        ("<stdin>:2:", "value", "(5,000,000 characters)"),
        stdin=(CSV_HEAD + f"EBA.PJM-ALL.D.H,2024-01-01T02:00:00Z,{HUGE},good\n").encode(),
        failed_run=True,
    ),
    "load-huge-header": Case(
        ["load", "--db", "{dir}/gp.db"],
        ExitCode.BAD_INPUT,
        ("header",),
        stdin=(HUGE + "," + CSV_HEAD + CSV_ROW).encode(),
        failed_run=True,
    ),
    "normalize-huge-respondent": Case(
        ["normalize"],
        ExitCode.BAD_INPUT,
        ("<stdin>:2:", "respondent", "(5,000,000 characters)"),
        stdin=(RAW_ROW + RAW_ROW.replace("PJM", HUGE)).encode(),
    ),
    "normalize-long-fuel-code": Case(
        ["normalize"],
        ExitCode.BAD_INPUT,
        ("<stdin>:1:", "fueltype 'NUCLEARFISSIONPLANT'"),
        stdin=b'{"period":"2024-01-01T01","respondent":"PJM","fueltype":"NUCLEARFISSIONPLANT","value":"5"}\n',
    ),
    "normalize-code-with-punctuation": Case(
        ["normalize"],
        ExitCode.BAD_INPUT,
        ("<stdin>:1:", "subba 'PG&E'"),
        stdin=b'{"period":"2024-01-01T01","parent":"CISO","subba":"PG&E","value":"5"}\n',
    ),
    "normalize-huge-period": Case(
        ["normalize"],
        ExitCode.BAD_INPUT,
        ("period", "(5,000,000 characters)"),
        stdin=RAW_ROW.replace("2024-01-01T01", HUGE).encode(),
    ),
}


def _prepare(case: Case, tmp_path: Path) -> tuple[list[str], dict[str, str | None]]:
    for name, data in case.files.items():
        (tmp_path / name).write_bytes(data)
    return [a.replace("{dir}", str(tmp_path)) for a in case.args], {**base_env(tmp_path), **case.env}


def _check(case: Case, result: Result, tmp_path: Path) -> None:
    assert_one_error_line(result, case.code, case.mentions, case.limit)
    assert result.stdout == ""
    db = tmp_path / "gp.db"
    if case.failed_run:
        with sqlite3.connect(db) as conn:
            assert [s for (s,) in conn.execute("SELECT status FROM runs")] == ["failed"]
            assert conn.execute("SELECT count(*) FROM observations").fetchone() == (0,)
            (error,) = conn.execute("SELECT error FROM runs").fetchone()
            assert len(error) <= LINE_LIMIT, len(error)
    else:
        assert not db.exists()


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_short_error_line(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    args, env = _prepare(case, tmp_path)
    _check(case, invoke(args, env, case.stdin), tmp_path)


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.process])
def test_bad_input_as_a_real_process(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    args, env = _prepare(case, tmp_path)
    _check(case, run_process(args, {**env, "LC_ALL": "C", "PYTHONIOENCODING": None}, case.stdin), tmp_path)


def test_stdin_and_a_file_fail_alike_on_the_same_bytes(tmp_path: Path) -> None:
    (tmp_path / "obs.csv").write_bytes(BAD_UTF8_CSV)
    env = base_env(tmp_path)
    piped = invoke(["load", "--db", str(tmp_path / "a.db")], env, BAD_UTF8_CSV)
    named = invoke(["load", "--db", str(tmp_path / "b.db"), str(tmp_path / "obs.csv")], env)
    assert piped.code == named.code == ExitCode.BAD_INPUT
    assert piped.stderr.replace("<stdin>", "X") == named.stderr.replace(str(tmp_path / "obs.csv"), "X")


# ---- the pieces ------------------------------------------------------------------------------------


def test_quote_shows_at_most_the_limit_on_one_line() -> None:
    assert quote("PJM") == "'PJM'"
    assert quote("a\nb\x00") == "'a\\nb\\x00'"
    long = quote("x" * 5_000_000)
    assert long == "'" + "x" * 100 + "…' (5,000,000 characters)"
    assert len(quote("\x00" * 1000)) < 130
    assert one_line("first\nsecond") == "first\\nsecond"
    assert len(one_line("y" * 10**7)) < 1040


@pytest.mark.parametrize("position", [0, 1, 4095, 65535, 65536, 65537, 200_000])
def test_utf8_reader_names_the_line_and_byte_offset(position: int) -> None:
    good = ("ab\ncé\n" * 40_000).encode()
    cut = good[:position].decode("utf-8", errors="ignore").encode()  # on a character boundary
    bad = cut + b"\xff" + good[len(cut) :]
    line = cut.count(b"\n") + 1
    for read in (lambda r: r.read(), lambda r: list(r), lambda r: [r.read(1000) for _ in range(400)]):
        with pytest.raises(InputFormatError, match=rf"^in:{line}: .*byte 0xff at byte offset {len(cut)}\)"):
            read(Utf8Reader(io.BytesIO(bad), "in"))
    assert Utf8Reader(io.BytesIO(good), "in").read() == good.decode()
