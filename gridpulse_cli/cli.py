"""The `gridpulse` command line: parse options, call one library function, report.

Errors are GridpulseError subclasses; they become one line on stderr and the exit code their
class names (see errors.ExitCode and the README), here and nowhere else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, ParamSpec, TypeVar

import sqlalchemy as sa
import typer

from gridpulse_cli import __version__
from gridpulse_cli.backfill import DEFAULT_WORKERS, run_backfill, run_gap_backfill
from gridpulse_cli.catalog import (
    ALIASES,
    DATASETS,
    FIRST_HOUR,
    REGIONS,
    balancing_authorities,
    resolve_bas,
    resolve_datasets,
)
from gridpulse_cli.config import Settings, load_env_file, load_settings, readable_by_others
from gridpulse_cli.eia import EIAClient, RateLimiter
from gridpulse_cli.errors import (
    ConfigError,
    DatabaseError,
    ExitCode,
    GridpulseError,
    InputFormatError,
    UsageError,
    one_line,
    quote,
)
from gridpulse_cli.export import export_csv
from gridpulse_cli.gaps import TABLE_COLUMNS as GAP_COLUMNS
from gridpulse_cli.gaps import find_gaps
from gridpulse_cli.health import HealthReport, run_health
from gridpulse_cli.lock import writer_lock
from gridpulse_cli.logs import LOG_FORMATS, setup_logging
from gridpulse_cli.normalize import normalize_rows, read_raw_rows, write_observations_csv
from gridpulse_cli.pipeline import RunReport, iter_raw_rows, plan_chunks, run_ingest, run_load
from gridpulse_cli.progress import reporter as progress_reporter
from gridpulse_cli.redact import redact
from gridpulse_cli.report import print_table
from gridpulse_cli.revisions import TABLE_COLUMNS as REVISION_COLUMNS
from gridpulse_cli.revisions import count_revisions, list_revisions
from gridpulse_cli.runs import TABLE_COLUMNS as RUN_COLUMNS
from gridpulse_cli.runs import list_runs
from gridpulse_cli.stopping import STOP
from gridpulse_cli.store import Store, describe_db_error
from gridpulse_cli.text import plural, short_list
from gridpulse_cli.textinput import Utf8Reader
from gridpulse_cli.usage import OneLineErrorGroup
from gridpulse_cli.windows import format_utc, parse_duration, resolve_window

log = logging.getLogger("gridpulse")

app = typer.Typer(
    name="gridpulse",
    cls=OneLineErrorGroup,  # usage errors are one `gridpulse: error:` line too
    help="Keep a database of EIA-930 hourly grid data complete and current.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (Typer's, loaded only when used)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ---- shared options ------------------------------------------------------------------------


def _complete_list(incomplete: str, names: list[str]) -> list[str]:
    """Shell completion of the last item of a comma-separated list (`demand,fu` -> `demand,fuel-mix`)."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in names if name.lower().startswith(last.lower())]


def _complete_bas(incomplete: str) -> list[str]:
    codes = sorted(set(balancing_authorities()) | set(REGIONS) | set(ALIASES))
    return _complete_list(incomplete, ["all", *codes])


def _complete_datasets(incomplete: str) -> list[str]:
    return _complete_list(incomplete, ["all", *DATASETS])


BaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ba",
        metavar="BA",
        help="EIA BA codes or aliases (CAISO, ERCOT, SPP, NYISO, ISO-NE), comma-separated or "
        "repeated, or 'all'. Default: the watched set, $GRIDPULSE_BA, else PJM,CISO,MISO,ERCO,SWPP.",
        autocompletion=_complete_bas,
    ),
]
DatasetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset",
        metavar="DATASET",
        help="demand, forecast, generation, total-interchange, fuel-mix, interchange, "
        "subregion-demand (comma-separated or repeated), or 'all'. "
        "Default: the watched set, $GRIDPULSE_DATASETS, else all.",
        autocompletion=_complete_datasets,
    ),
]
StoredDatasetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset",
        metavar="DATASET",
        help="Only these datasets (comma-separated or repeated). Default: every stored dataset.",
        autocompletion=_complete_datasets,
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
WatchedBaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ba",
        metavar="BA",
        help="Only these BAs (codes, aliases, 'all'). Default: the watched set, $GRIDPULSE_BA, "
        "else PJM,CISO,MISO,ERCO,SWPP.",
        autocompletion=_complete_bas,
    ),
]
StoredBaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ba",
        metavar="BA",
        help="Only these BAs (codes, aliases, 'all'). Default: every stored BA.",
        autocompletion=_complete_bas,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")]
InputArgument = Annotated[
    str, typer.Argument(help="Input file; '-' or nothing reads stdin.", show_default=False)
]

MAX_ROWS = 1_000_000_000  # --last/--limit: more than any ledger holds, and within SQL's integers
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


_REPORTED: list[str] = []  # the error line this process printed, if any


def _fail(message: str, code: ExitCode) -> None:
    message = one_line(message)  # whatever input a message quotes, one short line
    _REPORTED.append(message)
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
    """stdin or a file, read as strict UTF-8 alike (a bad byte is an InputFormatError naming it)."""
    if name in ("", "-"):
        if sys.stdin.isatty():
            raise UsageError("no input: give a FILE or pipe data into stdin")
        raw = getattr(sys.stdin, "buffer", None)  # bytes, not the locale's (lenient) decoding
        yield (sys.stdin if raw is None else Utf8Reader(raw, "<stdin>")), "<stdin>"
        return
    try:
        handle = open(name, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise InputFormatError(f"input file {name} does not exist") from None
    except IsADirectoryError:
        raise InputFormatError(f"input {name} is a directory, not a file") from None
    except OSError as exc:
        raise InputFormatError(f"cannot read input file {name}: {exc.strerror}") from None
    with handle:
        yield Utf8Reader(handle, name), name


def _watched_selection(
    settings: Settings, ba: list[str] | None, dataset: list[str] | None
) -> tuple[list[str], list[str]]:
    """`--ba`/`--dataset`, each defaulting to the watched set (GRIDPULSE_BA / GRIDPULSE_DATASETS)."""
    bas = resolve_bas(ba, default=settings.watched_bas)
    return bas, resolve_datasets(dataset) if dataset else list(settings.watched_datasets)


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
def _store(settings: Settings, read_only: bool = False) -> Iterator[Store]:
    """The database; `read_only` for the reading commands, which never create or migrate one."""
    store = Store.open(settings.database_url, read_only=read_only)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _writer(settings: Settings) -> Iterator[Store]:
    """The store, with this process as its only writer (waits up to GRIDPULSE_LOCK_TIMEOUT).

    The lock comes before the migration: migrating writes, and a migration waiting on another
    writer's transaction would wait out the database's busy timeout, not the lock timeout.
    """
    store = Store.open(settings.database_url, migrate=False)
    with contextlib.closing(store), writer_lock(store, settings.lock_timeout_seconds):
        store.migrate()
        abandoned = store.close_abandoned_runs(_now())
        if abandoned:
            log.warning(
                "marked %s left 'running' by a killed process as interrupted", plural(abandoned, "run")
            )
        yield store


def _log_summary(report: RunReport) -> None:
    """The run's summary line; with --log-format json its numbers are fields of the line too."""
    log.info(report.summary(), extra=report.log_fields())


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
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            metavar="FILE",
            envvar="GRIDPULSE_ENV_FILE",
            show_envvar=False,
            help="Read settings (EIA_API_KEY, GRIDPULSE_*) from FILE of KEY=VALUE lines; variables "
            "already set win. Default: $GRIDPULSE_ENV_FILE. For cron.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Keep a database of EIA-930 hourly grid data complete and current."""
    del version
    if env_file is not None:
        try:  # before anything reads a setting: the file may set GRIDPULSE_LOG_LEVEL too
            load_env_file(env_file, os.environ)
        except ConfigError as exc:
            _fail(str(exc), exc.exit_code)
    level = "ERROR" if quiet else (log_level or os.environ.get("GRIDPULSE_LOG_LEVEL") or "INFO")
    if log_format not in LOG_FORMATS:
        typer.echo(
            f"gridpulse: error: unknown --log-format {quote(log_format)}; valid: {', '.join(LOG_FORMATS)}",
            err=True,
        )
        raise typer.Exit(int(ExitCode.USAGE))
    if logging.getLevelName(level.upper()) == f"Level {level.upper()}":
        typer.echo(
            f"gridpulse: error: unknown log level {quote(level)}; valid: DEBUG, INFO, WARNING, ERROR",
            err=True,
        )
        raise typer.Exit(int(ExitCode.USAGE))
    setup_logging(level, log_format, os.environ.get("EIA_API_KEY"))
    if env_file is not None and readable_by_others(env_file):
        log.warning("%s can be read by other users; it holds the API key: chmod 600 it", env_file)


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
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, _now(), earliest=FIRST_HOUR)
    assert window is not None
    client = _client(settings)
    count = 0
    with _output(output) as out:
        for row in iter_raw_rows(client, plan_chunks(bas, datasets, window)):
            out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
            count += 1
    log.info(
        "fetched %s for %s %s in %s",
        plural(count, "row"),
        short_list(bas),
        window,
        plural(client.stats.requests, "request"),
    )


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
    log.info("normalized %s into %s", plural(len(rows), "row"), plural(len(frame), "observation"))


@app.command()
@handle_errors
def load(
    input_file: InputArgument = "-",
    db: DbOption = None,
) -> None:
    """Upsert observation CSV (from `normalize` or `export`) into the database."""
    settings = _settings(db)
    with _input(input_file) as (stream, name), _writer(settings) as store:
        report = run_load(store, stream, name, now=_now, stop=STOP)
    _log_summary(report)


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
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, _now(), default_since="24h", earliest=FIRST_HOUR)
    assert window is not None
    client = _client(settings)
    with _writer(settings) as store:
        on_chunk, stop = progress_reporter("ingest")
        try:
            report = run_ingest(
                store,
                client,
                bas,
                datasets,
                window,
                workers=DEFAULT_WORKERS,
                now=_now,
                progress=on_chunk,
                stop=STOP,
            )
        finally:
            stop()
    _log_summary(report)


@app.command()
@handle_errors
def export(
    ba: StoredBaOption = None,
    dataset: StoredDatasetOption = None,
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
    with _store(settings, read_only=True) as store, _output(output) as out:
        count = export_csv(store, out, window, bas, datasets)
    log.info("exported %s", plural(count, "observation"))


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
    dataset: StoredDatasetOption = None,
    as_json: JsonOption = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=MAX_ROWS, help="At most N revisions.")
    ] = None,
    db: DbOption = None,
) -> None:
    """List values EIA changed after gridpulse first stored them (old and new value, when, which run)."""
    settings = _settings(db)
    bas, datasets = _stored_selection(ba, dataset)
    changed_since = _now() - parse_duration(since) if since else None
    with _store(settings, read_only=True) as store:
        found = list_revisions(store, changed_since, bas, datasets, limit)
        total = count_revisions(store, changed_since, bas, datasets) if limit else len(found)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in found], indent=1))
        return
    shown = (
        f"{len(found):,} of {plural(total, 'revision')}" if total > len(found) else plural(total, "revision")
    )
    print_table(REVISION_COLUMNS, [r.table_row() for r in found], title=f"{shown} (times UTC)")


@app.command()
@handle_errors
def migrate(db: DbOption = None) -> None:
    """Create or upgrade the database schema now (the writing commands also do this on first use)."""
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

        with _writer(settings) as store:
            report = run_bulk_files(store, list(from_file), now=_now, stop=STOP)
        _log_summary(report)
        return
    if gaps_only:
        _backfill_gaps(settings, ba, dataset, since, start, end, workers)
        return
    if start is None and since is None:
        raise UsageError(
            "backfill needs --from (and optionally --to) or --since, --gaps, or --from-file PATH"
        )
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, _now(), default_since=None, earliest=FIRST_HOUR)
    assert window is not None
    client = _client(settings)
    with _writer(settings) as store:
        on_chunk, stop = progress_reporter("backfill", every_seconds=10.0)
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
                stop=STOP,
            )
        finally:
            stop()
    _log_summary(report)


def _backfill_gaps(
    settings: Settings,
    ba: list[str] | None,
    dataset: list[str] | None,
    since: str | None,
    start: str | None,
    end: str | None,
    workers: int,
) -> None:
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, _now(), default_since="30d", earliest=FIRST_HOUR)
    assert window is not None
    client = _client(settings)
    with _writer(settings) as store:
        on_chunk, stop = progress_reporter("backfill --gaps", every_seconds=10.0)
        try:
            result = run_gap_backfill(
                store, client, bas, datasets, window, workers=workers, now=_now, progress=on_chunk, stop=STOP
            )
        finally:
            stop()
    if result.run is None:
        log.info("no gaps in %s: nothing to fetch", window)
        return
    _log_summary(result.run)
    first, *rest = result.summary_lines(_gaps_command(ba, dataset, since, start, end))
    log.info(first, extra=result.log_fields())
    for line in rest:
        log.info(line)


def _gaps_command(
    ba: list[str] | None, dataset: list[str] | None, since: str | None, start: str | None, end: str | None
) -> str:
    """The `gridpulse gaps` line that lists the same selection in full."""
    words = ["gridpulse gaps"]
    for option, values in (("--ba", ba), ("--dataset", dataset)):
        if values:
            words.append(f"{option} {','.join(values)}")
    for option, value in (("--since", since), ("--from", start), ("--to", end)):
        if value:
            words.append(f"{option} {value}")
    return " ".join(words)


@app.command()
@handle_errors
def gaps(
    ba: WatchedBaOption = None,
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
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, _now(), default_since="30d")
    assert window is not None
    with _store(settings, read_only=True) as store:
        found = find_gaps(store, bas, datasets, window, _now())
    if as_json:
        typer.echo(json.dumps([g.as_json() for g in found], indent=1))
    else:
        missing = plural(sum(g.hours for g in found), "missing hour")
        title = f"{plural(len(found), 'gap')}, {missing} in {window}"
        print_table(GAP_COLUMNS, [g.table_row() for g in found], title=title)
    if check and found:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command()
@handle_errors
def health(
    ba: WatchedBaOption = None,
    dataset: DatasetOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"status", "checks": [...]} as JSON.')
    ] = False,
    brief: Annotated[
        bool,
        typer.Option(
            "--brief",
            help="Print nothing unless a check fails, then one line naming what fails (for cron's MAILTO).",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Is the database usable, the watched data fresh, are runs succeeding? Exits non-zero on a failed check."""
    if brief and as_json:
        raise UsageError("--brief and --json cannot be combined: choose one")
    settings = _settings(db)
    bas, datasets = _watched_selection(settings, ba, dataset)
    report = run_health(settings.database_url, bool(settings.api_key), bas, datasets, _now())
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=1))
    elif brief:
        line = report.brief()
        if line:
            typer.echo(line)
    else:
        _print_health(report)
    if report.status == "fail":
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def _print_health(report: HealthReport) -> None:
    colours = {
        "ok": "green",
        "warn": "yellow",
        "fail": "bold red",
        "fresh": "green",
        "late": "yellow",
        "stale": "bold red",
        "never": "bold red",
    }
    print_table(
        ["check", "status", "detail"],
        [[c.name, c.status, c.detail] for c in report.summary_checks()],
        title=f"health: {report.status}",
        styles=colours,
    )
    headers, grid = report.freshness_grid()
    if grid:
        print_table(headers, grid, title="freshness of the watched set", styles=colours)


@app.command()
@handle_errors
def runs(
    last: Annotated[
        int, typer.Option("--last", min=1, max=MAX_ROWS, help="How many runs, newest first.")
    ] = 20,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The run ledger: what ran, when, for how long, what it did and how it ended (--json: every field)."""
    settings = _settings(db)
    with _store(settings, read_only=True) as store:
        found = list_runs(store, last)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in found], indent=1))
        return
    print_table(
        RUN_COLUMNS,
        [r.table_row() for r in found],
        title=f"last {plural(len(found), 'run')} (times UTC)",
        styles={"ok": "green", "failed": "bold red", "interrupted": "yellow", "running": "cyan"},
        notes=[f"run {r.run_id}: {r.error}" for r in found if r.error],
    )


def main() -> None:
    """Console-script entry point."""
    STOP.install()
    try:
        app()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:  # while Typer builds the command, before any handler of ours
        code = int(ExitCode.INTERRUPTED)
    STOP.finish()  # the outcome is decided: a late signal must not turn it into a traceback
    if code == ExitCode.INTERRUPTED and not _REPORTED:
        typer.echo("gridpulse: error: interrupted", err=True)
    sys.exit(code)


__all__ = ["DatabaseError", "app", "main"]
