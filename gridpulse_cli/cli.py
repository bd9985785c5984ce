"""The `gridpulse` command line: parse options, call one library function, report.

Errors are GridpulseError subclasses; they become one line on stderr and the exit code their
class names (see errors.ExitCode and the README), here and nowhere else.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, ParamSpec, TypeVar

import sqlalchemy as sa
import typer

from gridpulse_cli import __version__
from gridpulse_cli.backfill import DEFAULT_WORKERS, run_backfill, run_gap_backfill
from gridpulse_cli.catalog import resolve_bas, resolve_datasets
from gridpulse_cli.config import Settings, load_settings
from gridpulse_cli.eia import EIAClient, RateLimiter
from gridpulse_cli.errors import (
    DatabaseError,
    ExitCode,
    GridpulseError,
    InputFormatError,
    UsageError,
)
from gridpulse_cli.export import export_csv
from gridpulse_cli.gaps import find_gaps
from gridpulse_cli.health import run_health
from gridpulse_cli.lock import writer_lock
from gridpulse_cli.logs import LOG_FORMATS, setup_logging
from gridpulse_cli.normalize import normalize_rows, read_raw_rows, write_observations_csv
from gridpulse_cli.pipeline import ChunkDone, iter_raw_rows, plan_chunks, run_ingest, run_load
from gridpulse_cli.redact import redact
from gridpulse_cli.report import format_optional, print_table
from gridpulse_cli.revisions import list_revisions
from gridpulse_cli.runs import list_runs
from gridpulse_cli.store import Store, describe_db_error
from gridpulse_cli.windows import format_utc, parse_duration, resolve_window

log = logging.getLogger("gridpulse")

app = typer.Typer(
    name="gridpulse",
    help="Keep a database of EIA-930 hourly grid data complete and current.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ---- shared options ------------------------------------------------------------------------

BaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ba",
        metavar="BA",
        help="EIA BA codes or aliases (CAISO, ERCOT, SPP, NYISO, ISO-NE), comma-separated or "
        "repeated, or 'all'. Default: PJM,CISO,MISO,ERCO,SWPP.",
    ),
]
DatasetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset",
        metavar="DATASET",
        help="demand, forecast, generation, total-interchange, fuel-mix, interchange, "
        "subregion-demand (comma-separated or repeated). Default: all.",
    ),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", metavar="DURATION", help="Window ending now: 24h, 7d, 2w.")
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="TIME",
        help="Window start, UTC hour ending: YYYY-MM-DD or YYYY-MM-DDTHH (inclusive).",
    ),
]
ToOption = Annotated[
    str | None,
    typer.Option("--to", metavar="TIME", help="Window end, UTC hour ending (exclusive). Default: now."),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL (postgresql://… or sqlite:///PATH) or a SQLite file path. "
        "Default: $GRIDPULSE_DATABASE_URL, else ~/.local/share/gridpulse/gridpulse.db.",
    ),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
]
StoredBaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ba", metavar="BA", help="Only these BAs (codes, aliases, 'all'). Default: every stored BA."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")]
InputArgument = Annotated[
    str, typer.Argument(help="Input file; '-' or nothing reads stdin.", show_default=False)
]

P = ParamSpec("P")
R = TypeVar("R")


def _now() -> datetime:
    """Now, or GRIDPULSE_NOW when set (to replay a past moment, or in tests)."""
    return load_settings(os.environ).now_override or datetime.now(UTC)


def _settings(db: str | None = None) -> Settings:
    return load_settings(os.environ, db)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every failure into one stderr line and its documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        secret = os.environ.get("EIA_API_KEY")
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except GridpulseError as exc:
            _fail(redact(str(exc), secret), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.INTERRUPTED)
        except sa.exc.SQLAlchemyError as exc:
            _fail(f"database error: {redact(describe_db_error(exc), secret)}", ExitCode.DATABASE)
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (e.g. `| head`): not an error worth a line
            raise typer.Exit(0) from None
        except Exception as exc:
            log.debug("internal error", exc_info=True)
            _fail(
                f"internal error: {type(exc).__name__}: {redact(str(exc), secret)} "
                "(GRIDPULSE_LOG_LEVEL=DEBUG shows the traceback)",
                ExitCode.INTERNAL,
            )
        raise AssertionError("unreachable")

    return wrapper


def _fail(message: str, code: ExitCode) -> None:
    typer.echo(f"gridpulse: error: {message}", err=True)
    raise typer.Exit(int(code))


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a file written atomically (no partial file is left on failure)."""
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    directory = path.resolve().parent
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed into place
            "w", dir=directory, prefix=f".{path.name}.", suffix=".tmp", delete=False, newline=""
        )
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with handle:
            yield handle
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


@contextmanager
def _input(name: str) -> Iterator[tuple[IO[str], str]]:
    if name in ("", "-"):
        if sys.stdin.isatty():
            raise UsageError("no input: give a FILE or pipe data into stdin")
        yield sys.stdin, "<stdin>"
        return
    try:
        with open(name, encoding="utf-8", newline="") as handle:
            yield handle, name
    except FileNotFoundError:
        raise InputFormatError(f"input file {name} does not exist") from None
    except IsADirectoryError:
        raise InputFormatError(f"input {name} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise InputFormatError(f"input file {name} is not UTF-8 text") from None


def _stored_selection(
    ba: list[str] | None, dataset: list[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """`--ba`/`--dataset` for the reading commands: None (everything stored) when not given."""
    return (resolve_bas(ba, default=()) if ba else None, resolve_datasets(dataset) if dataset else None)


def _client(settings: Settings) -> EIAClient:
    return EIAClient(
        settings.eia_url,
        settings.require_api_key(),
        limiter=RateLimiter(settings.max_requests_per_second, settings.max_requests_per_hour),
        timeout=settings.timeout_seconds,
        max_tries=settings.max_tries,
        retry_base=settings.retry_base_seconds,
    )


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings.database_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _writer(settings: Settings) -> Iterator[Store]:
    """The store, with this process as its only writer (waits up to GRIDPULSE_LOCK_TIMEOUT)."""
    with _store(settings) as store, writer_lock(store, settings.lock_timeout_seconds):
        abandoned = store.close_abandoned_runs(_now())
        if abandoned:
            log.warning("marked %d run(s) left 'running' by a killed process as interrupted", abandoned)
        yield store


def _progress_reporter(
    total_label: str, every_seconds: float = 0.0
) -> tuple[Callable[[ChunkDone], None], Callable[[], None]]:
    """A rich progress bar on a terminal; otherwise a log line per chunk, at most every N seconds."""
    if not sys.stderr.isatty() or logging.getLogger().level > logging.INFO:
        last = [0.0]

        def log_chunk(event: ChunkDone) -> None:
            moment = time.monotonic()
            if event.index < event.total and moment - last[0] < every_seconds:
                return
            last[0] = moment
            log.info(
                "chunk %d/%d %s: %d rows (%d inserted, %d revised so far)",
                event.index,
                event.total,
                event.chunk.describe(),
                event.rows,
                event.report.counts.inserted,
                event.report.counts.revised,
            )

        return log_chunk, lambda: None

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn(f"[bold]{total_label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]:,} rows · {task.fields[rate]:,.0f} rows/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    task = progress.add_task(total_label, total=None, rows=0, rate=0.0)
    progress.start()

    def update(event: ChunkDone) -> None:
        report = event.report
        rate = report.fetched / report.elapsed if report.elapsed else 0.0
        progress.update(task, total=event.total, completed=event.index, rows=report.fetched, rate=rate)

    return update, progress.stop


def _install_signal_handlers() -> None:
    """SIGTERM stops like Ctrl-C: the chunk in flight rolls back, the run is recorded interrupted."""

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)


# ---- commands --------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gridpulse {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            help="DEBUG, INFO, WARNING, ERROR. Default: $GRIDPULSE_LOG_LEVEL or INFO.",
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="FORMAT",
            help="auto (rich on a terminal, plain otherwise), plain, json, rich.",
        ),
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log errors only.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Keep a database of EIA-930 hourly grid data complete and current."""
    del version
    level = "ERROR" if quiet else (log_level or os.environ.get("GRIDPULSE_LOG_LEVEL") or "INFO")
    if log_format not in LOG_FORMATS:
        typer.echo(
            f"gridpulse: error: unknown --log-format '{log_format}'; valid: {', '.join(LOG_FORMATS)}",
            err=True,
        )
        raise typer.Exit(int(ExitCode.USAGE))
    if logging.getLevelName(level.upper()) == f"Level {level.upper()}":
        typer.echo(
            f"gridpulse: error: unknown log level '{level}'; valid: DEBUG, INFO, WARNING, ERROR", err=True
        )
        raise typer.Exit(int(ExitCode.USAGE))
    setup_logging(level, log_format, os.environ.get("EIA_API_KEY"))


@app.command()
@handle_errors
def fetch(
    ba: BaOption = None,
    dataset: DatasetOption = None,
    since: SinceOption = None,
    start: FromOption = None,
    end: ToOption = None,
    output: OutputOption = None,
) -> None:
    """Fetch raw EIA rows and write them as JSON lines (one EIA row per line)."""
    settings = _settings()
    bas, datasets = resolve_bas(ba), resolve_datasets(dataset)
    window = resolve_window(since, start, end, _now())
    assert window is not None
    client = _client(settings)
    count = 0
    with _output(output) as out:
        for row in iter_raw_rows(client, plan_chunks(bas, datasets, window)):
            out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
            count += 1
    log.info("fetched %d rows for %s %s in %d requests", count, ",".join(bas), window, client.stats.requests)


@app.command()
@handle_errors
def normalize(
    input_file: InputArgument = "-",
    output: OutputOption = None,
) -> None:
    """Turn raw EIA rows (JSON lines from `fetch`) into observation CSV (the export format)."""
    warned: set[str] = set()
    with _input(input_file) as (stream, name):
        rows = list(read_raw_rows(stream, name))
    frame = normalize_rows(rows, warned)
    frame = frame.sort_values(["series_id", "period_end_utc"], kind="stable")
    with _output(output) as out:
        write_observations_csv(frame, out)
    log.info("normalized %d rows into %d observations", len(rows), len(frame))


@app.command()
@handle_errors
def load(
    input_file: InputArgument = "-",
    db: DbOption = None,
) -> None:
    """Upsert observation CSV (from `normalize` or `export`) into the database."""
    settings = _settings(db)
    with _input(input_file) as (stream, name), _writer(settings) as store:
        report = run_load(store, stream, name, now=_now)
    log.info(report.summary())


@app.command()
@handle_errors
def ingest(
    ba: BaOption = None,
    dataset: DatasetOption = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DURATION", help="Window ending now (default 24h).")
    ] = None,
    start: FromOption = None,
    end: ToOption = None,
    db: DbOption = None,
) -> None:
    """Fetch, normalize and load a recent window: the hourly cron job."""
    settings = _settings(db)
    bas, datasets = resolve_bas(ba), resolve_datasets(dataset)
    window = resolve_window(since, start, end, _now(), default_since="24h")
    assert window is not None
    client = _client(settings)
    _install_signal_handlers()
    with _writer(settings) as store:
        on_chunk, stop = _progress_reporter("ingest")
        try:
            report = run_ingest(
                store, client, bas, datasets, window, workers=DEFAULT_WORKERS, now=_now, progress=on_chunk
            )
        finally:
            stop()
    log.info(report.summary())


@app.command()
@handle_errors
def export(
    ba: StoredBaOption = None,
    dataset: DatasetOption = None,
    since: SinceOption = None,
    start: FromOption = None,
    end: ToOption = None,
    output: OutputOption = None,
    db: DbOption = None,
) -> None:
    """Write stored observations as CSV, sorted by series_id then time."""
    settings = _settings(db)
    bas, datasets = _stored_selection(ba, dataset)
    window = resolve_window(since, start, end, _now(), default_since=None)
    with _store(settings) as store, _output(output) as out:
        count = export_csv(store, out, window, bas, datasets)
    log.info("exported %d observations", count)


@app.command()
@handle_errors
def revisions(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="DURATION", help="Only values changed in the last 24h, 7d, … (default: all)."
        ),
    ] = None,
    ba: StoredBaOption = None,
    dataset: DatasetOption = None,
    as_json: JsonOption = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N revisions.")] = None,
    db: DbOption = None,
) -> None:
    """List values EIA changed after gridpulse first stored them (old and new value, when, which run)."""
    settings = _settings(db)
    bas, datasets = _stored_selection(ba, dataset)
    changed_since = _now() - parse_duration(since) if since else None
    with _store(settings) as store:
        found = list_revisions(store, changed_since, bas, datasets, limit)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in found], indent=1))
        return
    print_table(
        ["series_id", "period_end_utc", "old", "new", "changed_at", "run"],
        [
            [
                r.series_id,
                r.period_end_utc,
                format_optional(r.old_value),
                format_optional(r.new_value),
                r.changed_at,
                str(r.run_id),
            ]
            for r in found
        ],
        title=f"{len(found)} revisions",
    )


@app.command()
@handle_errors
def migrate(db: DbOption = None) -> None:
    """Create or upgrade the database schema now (every command also does this on first use)."""
    settings = _settings(db)
    store = Store.open(settings.database_url, migrate=False)
    try:
        applied = store.migrate()
        with store.engine.connect() as conn:
            version = store.schema_version(conn)
    finally:
        store.close()
    typer.echo(
        f"schema version {version}"
        + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)")
    )


@app.command()
@handle_errors
def backfill(
    ba: BaOption = None,
    dataset: DatasetOption = None,
    start: FromOption = None,
    end: ToOption = None,
    since: SinceOption = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=32, help="Concurrent requests (all under the shared rate limit)."
        ),
    ] = DEFAULT_WORKERS,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart", help="Re-fetch everything, even chunks an earlier run of this backfill committed."
        ),
    ] = False,
    gaps_only: Annotated[
        bool,
        typer.Option(
            "--gaps", help="Re-fetch only the hours `gridpulse gaps` reports (default window: --since 30d)."
        ),
    ] = False,
    from_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-file",
            metavar="PATH",
            help="Load EIA's six-month EIA930_BALANCE/INTERCHANGE/SUBREGION CSV files instead of calling the API (repeatable).",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Load a long range of history: chunked, concurrent, resumable (or from EIA's bulk CSV files)."""
    settings = _settings(db)
    if from_file:
        from gridpulse_cli.bulkload import run_bulk_files  # pandas CSV machinery, only when asked

        _install_signal_handlers()
        with _writer(settings) as store:
            report = run_bulk_files(store, list(from_file), now=_now)
        log.info(report.summary())
        return
    if gaps_only:
        _backfill_gaps(settings, ba, dataset, since, start, end, workers)
        return
    if start is None and since is None:
        raise UsageError(
            "backfill needs --from (and optionally --to) or --since, --gaps, or --from-file PATH"
        )
    bas, datasets = resolve_bas(ba), resolve_datasets(dataset)
    window = resolve_window(since, start, end, _now(), default_since=None)
    assert window is not None
    client = _client(settings)
    _install_signal_handlers()
    with _writer(settings) as store:
        on_chunk, stop = _progress_reporter("backfill", every_seconds=10.0)
        try:
            report = run_backfill(
                store,
                client,
                bas,
                datasets,
                window,
                end_as_given=format_utc(window.end) if end else (f"since {since}" if since else "now"),
                workers=workers,
                restart=restart,
                now=_now,
                progress=on_chunk,
            )
        finally:
            stop()
    log.info(report.summary())


def _backfill_gaps(
    settings: Settings,
    ba: list[str] | None,
    dataset: list[str] | None,
    since: str | None,
    start: str | None,
    end: str | None,
    workers: int,
) -> None:
    bas, datasets = _stored_selection(ba, dataset)
    window = resolve_window(since, start, end, _now(), default_since="30d")
    assert window is not None
    client = _client(settings)
    _install_signal_handlers()
    with _writer(settings) as store:
        on_chunk, stop = _progress_reporter("backfill --gaps", every_seconds=10.0)
        try:
            result = run_gap_backfill(
                store, client, bas, datasets, window, workers=workers, now=_now, progress=on_chunk
            )
        finally:
            stop()
    if result.run is None:
        log.info("no gaps in %s: nothing to fetch", window)
        return
    log.info(result.run.summary())
    log.info(
        "filled %d of %d missing hours; %d hours in %d series are still missing upstream",
        result.filled_hours,
        sum(g.hours for g in result.before),
        sum(g.hours for g in result.after),
        len({g.series_id for g in result.after}),
    )
    for gap in result.after:
        log.info(
            "still missing: %s %s..%s (%d h, %s)",
            gap.series_id,
            gap.first_missing,
            gap.last_missing,
            gap.hours,
            gap.reason,
        )


@app.command()
@handle_errors
def gaps(
    ba: StoredBaOption = None,
    dataset: DatasetOption = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DURATION", help="Window ending now (default 30d).")
    ] = None,
    start: FromOption = None,
    end: ToOption = None,
    as_json: JsonOption = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help=f"Exit {int(ExitCode.CHECK_FAILED)} when any gap is found (for monitors)."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """List hours that should exist and don't (or have no value), coalesced into runs."""
    settings = _settings(db)
    bas, datasets = _stored_selection(ba, dataset)
    window = resolve_window(since, start, end, _now(), default_since="30d")
    assert window is not None
    with _store(settings) as store:
        found = find_gaps(store, bas, datasets, window, _now())
    if as_json:
        typer.echo(json.dumps([g.as_json() for g in found], indent=1))
    else:
        print_table(
            ["series_id", "first_missing", "last_missing", "hours", "reason"],
            [[g.series_id, g.first_missing, g.last_missing, str(g.hours), g.reason] for g in found],
            title=f"{len(found)} gaps, {sum(g.hours for g in found)} missing hours in {window}",
        )
    if check and found:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command()
@handle_errors
def health(
    ba: StoredBaOption = None,
    dataset: DatasetOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"status", "checks": [...]} as JSON.')
    ] = False,
    db: DbOption = None,
) -> None:
    """Is the database usable, the data fresh, are runs succeeding? Exits non-zero on a failed check."""
    settings = _settings(db)
    bas, datasets = _stored_selection(ba, dataset)
    report = run_health(settings.database_url, bool(settings.api_key), bas, datasets, _now())
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=1))
    else:
        colours = {
            "ok": "green",
            "warn": "yellow",
            "fail": "bold red",
            "fresh": "green",
            "late": "yellow",
            "stale": "bold red",
        }
        headers, grid = report.freshness_grid()
        print_table(
            ["check", "status", "detail"],
            [[c.name, c.status, c.detail] for c in report.checks if not c.area],
            title=f"health: {report.status}",
            styles=colours,
        )
        if grid:
            print_table(
                headers, grid, title="freshness (newest stored hour vs. publication lag)", styles=colours
            )
    if report.status == "fail":
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command()
@handle_errors
def runs(
    last: Annotated[int, typer.Option("--last", min=1, help="How many runs, newest first.")] = 20,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The run ledger: command, window, counts, duration, status and error of recent runs."""
    settings = _settings(db)
    with _store(settings) as store:
        found = list_runs(store, last)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in found], indent=1))
        return
    print_table(
        [
            "run",
            "command",
            "status",
            "started",
            "duration_s",
            "window",
            "fetched",
            "inserted",
            "revised",
            "unchanged",
            "error",
        ],
        [
            [
                str(r.run_id),
                r.command,
                r.status,
                r.started_at,
                "" if r.duration_s is None else f"{r.duration_s:g}",
                f"{r.window_start or ''}..{r.window_end or ''}" if r.window_start else "",
                str(r.rows_fetched),
                str(r.rows_inserted),
                str(r.rows_revised),
                str(r.rows_unchanged),
                (r.error or "")[:80],
            ]
            for r in found
        ],
        title=f"last {len(found)} run{'' if len(found) == 1 else 's'}",
        styles={"ok": "green", "failed": "bold red", "interrupted": "yellow", "running": "cyan"},
    )


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            # Failed or interrupted: the run is recorded and every transaction committed or rolled
            # back. Do not wait for prefetching threads still in a request or a retry back-off
            # (they only fetch; they never write) — exit now, with the one error line last.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(exit_.code) if isinstance(exit_.code, int) else 1)
        raise


__all__ = ["DatabaseError", "app", "main"]
