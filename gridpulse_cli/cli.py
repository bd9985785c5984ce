"""The `gridpulse` command line: parse options, call one library function, render.

Errors are GridpulseError subclasses; they become one line on stderr and the exit code their
class names (see errors.ExitCode and the README), here and nowhere else.

Start-up is short (`--version`, `--help`, shell completion): this module imports only light
modules; each command imports the library it calls (pandas, SQLAlchemy, requests) when it runs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from gridpulse_cli import __version__
from gridpulse_cli.catalog import (
    ALIASES,
    DATASETS,
    FIRST_HOUR,
    REGIONS,
    balancing_authorities,
    resolve_bas,
    resolve_datasets,
)
from gridpulse_cli.config import DEFAULT_WORKERS, Settings, load_env_file, load_settings, readable_by_others
from gridpulse_cli.errors import ConfigError, ExitCode, GridpulseError, UsageError, one_line
from gridpulse_cli.logs import LogFormat, LogLevel, setup_logging
from gridpulse_cli.redact import redact
from gridpulse_cli.stopping import STOP
from gridpulse_cli.text import plural, short_list
from gridpulse_cli.usage import OneLineErrorGroup
from gridpulse_cli.windows import format_utc, parse_duration, resolve_window, window_or_all_time

if TYPE_CHECKING:
    from gridpulse_cli.db import Store
    from gridpulse_cli.eia import EIAClient
    from gridpulse_cli.windows import Window

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


def _list_option(name: str, complete: Callable[[str], list[str]], help_text: str) -> Any:
    """A repeatable, comma-separated `--ba` or `--dataset` with shell completion."""
    return typer.Option(name, metavar=name[2:].upper(), help=help_text, autocompletion=complete)


def _text_option(name: str, metavar: str, help_text: str) -> Any:
    return typer.Option(name, metavar=metavar, help=help_text)


_WATCHED = "Default: the watched set, $GRIDPULSE_BA, else PJM,CISO,MISO,ERCO,SWPP."
BaOption = Annotated[
    list[str] | None,
    _list_option(
        "--ba",
        _complete_bas,
        "EIA BA codes or aliases (CAISO, ERCOT, SPP, NYISO, ISO-NE), comma-separated or "
        f"repeated, or 'all'. {_WATCHED}",
    ),
]
WatchedBaOption = Annotated[
    list[str] | None,
    _list_option("--ba", _complete_bas, f"Only these BAs (codes, aliases, 'all'). {_WATCHED}"),
]
StoredBaOption = Annotated[
    list[str] | None,
    _list_option("--ba", _complete_bas, "Only these BAs (codes, aliases, 'all'). Default: every stored BA."),
]
DatasetOption = Annotated[
    list[str] | None,
    _list_option(
        "--dataset",
        _complete_datasets,
        "demand, forecast, generation, total-interchange, fuel-mix, interchange, "
        "subregion-demand (comma-separated or repeated), or 'all'. "
        "Default: the watched set, $GRIDPULSE_DATASETS, else all.",
    ),
]
StoredDatasetOption = Annotated[
    list[str] | None,
    _list_option(
        "--dataset",
        _complete_datasets,
        "Only these datasets (comma-separated or repeated). Default: every stored dataset.",
    ),
]
SinceOption = Annotated[str | None, _text_option("--since", "DURATION", "Window ending now: 24h, 7d, 2w.")]
Since24hOption = Annotated[
    str | None, _text_option("--since", "DURATION", "Window ending now (default 24h).")
]
Since30dOption = Annotated[
    str | None, _text_option("--since", "DURATION", "Window ending now (default 30d).")
]
ChangedSinceOption = Annotated[
    str | None,
    _text_option("--since", "DURATION", "Only values changed in the last 24h, 7d, … (default: all)."),
]
FromOption = Annotated[
    str | None,
    _text_option("--from", "TIME", "Window start, UTC hour ending: YYYY-MM-DD or YYYY-MM-DDTHH (inclusive)."),
]
ToOption = Annotated[
    str | None, _text_option("--to", "TIME", "Window end, UTC hour ending (exclusive). Default: now.")
]
DbOption = Annotated[
    str | None,
    _text_option(
        "--db",
        "URL",
        "Database URL (postgresql://… or sqlite:///PATH) or a SQLite file path. "
        "Default: $GRIDPULSE_DATABASE_URL, else ~/.local/share/gridpulse/gridpulse.db.",
    ),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")]
InputArgument = Annotated[
    str, typer.Argument(help="Input file; '-' or nothing reads stdin.", show_default=False)
]

MAX_ROWS = 1_000_000_000  # --last/--limit: more than any ledger holds, and within SQL's integers
P = ParamSpec("P")
R = TypeVar("R")


# ---- errors --------------------------------------------------------------------------------


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every failure into one stderr line and its documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = kwargs.get("ctx")
        secret = ctx.obj.api_key if isinstance(ctx, typer.Context) and isinstance(ctx.obj, Settings) else None
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except GridpulseError as exc:
            _fail(redact(str(exc), secret), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.INTERRUPTED)
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (e.g. `| head`): not an error worth a line
            raise typer.Exit(0) from None
        except Exception as exc:
            _fail_unexpected(exc, secret)
        raise AssertionError("unreachable")

    return wrapper


def _fail_unexpected(exc: Exception, secret: str | None) -> None:
    """A database error (SQLAlchemy's, only possible once a command imported it) or a bug."""
    sa = sys.modules.get("sqlalchemy")
    if sa is not None and isinstance(exc, sa.exc.SQLAlchemyError):
        from gridpulse_cli.db import describe_db_error

        _fail(f"database error: {redact(describe_db_error(exc), secret)}", ExitCode.DATABASE)
    log.debug("internal error", exc_info=True)
    _fail(
        f"internal error: {type(exc).__name__}: {redact(str(exc), secret)} "
        "(GRIDPULSE_LOG_LEVEL=DEBUG shows the traceback)",
        ExitCode.INTERNAL,
    )


_REPORTED: list[str] = []  # the error line this process printed, if any


def _fail(message: str, code: ExitCode) -> None:
    message = one_line(message)  # whatever input a message quotes, one short line
    _REPORTED.append(message)
    typer.echo(f"gridpulse: error: {message}", err=True)
    raise typer.Exit(int(code))


# ---- what the commands share ---------------------------------------------------------------


def _settings(ctx: typer.Context, db: str | None = None) -> Settings:
    """The settings the callback read, with this command's `--db`; an invalid setting fails here,
    in the commands that read settings (`normalize` reads none)."""
    if isinstance(ctx.obj, ConfigError):
        raise ctx.obj
    settings: Settings = ctx.obj.with_database(db)
    settings.database_url  # noqa: B018 - a database URL gridpulse cannot use fails now, as ever
    return settings


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
    from gridpulse_cli.eia import EIAClient, RateLimiter

    return EIAClient(
        settings.eia_url,
        settings.require_api_key(),
        limiter=RateLimiter(settings.max_requests_per_second, settings.max_requests_per_hour),
        timeout=settings.timeout_seconds,
        max_tries=settings.max_tries,
        retry_base=settings.retry_base_seconds,
    )


@contextmanager
def _reader(settings: Settings) -> Iterator[Store]:
    """The database, read-only: the reading commands never create or migrate one."""
    from gridpulse_cli.db import Store

    store = Store.open(settings.database_url, read_only=True)
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
    from gridpulse_cli.db import Store
    from gridpulse_cli.ledger import close_abandoned_runs
    from gridpulse_cli.lock import writer_lock

    store = Store.open(settings.database_url, migrate=False)
    with contextlib.closing(store), writer_lock(store, settings.lock_timeout_seconds):
        store.migrate()
        abandoned = close_abandoned_runs(store, settings.now())
        if abandoned:
            log.warning(
                "marked %s left 'running' by a killed process as interrupted", plural(abandoned, "run")
            )
        yield store


def _write(
    settings: Settings,
    run: Callable[..., R],
    summarize: Callable[[R], None],
    progress: str | None = None,
    every_seconds: float = 0.0,
) -> None:
    """Every writing command: `run(store, now=…, stop=…)` as the store's only writer, given
    `progress=` a display named `progress` (if any) while it commits; then `summarize` its result."""
    from gridpulse_cli import render

    common: dict[str, Any] = {"now": settings.now, "stop": STOP}
    with _writer(settings) as store:
        if progress is None:
            result = run(store, **common)
        else:
            on_chunk, stop = render.reporter(progress, every_seconds)
            try:
                result = run(store, progress=on_chunk, **common)
            finally:
                stop()
    summarize(result)


# ---- global options ------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gridpulse {__version__}")
        raise typer.Exit()


def _read_env_file(path: Path | None) -> Path | None:
    """--env-file, read before any other option: the file may set GRIDPULSE_LOG_LEVEL too."""
    if path is not None:
        try:
            load_env_file(path, os.environ)
        except ConfigError as exc:
            _fail(str(exc), exc.exit_code)
    return path


LogLevelOption = Annotated[
    LogLevel | None,
    typer.Option(
        "--log-level",
        metavar="LEVEL",
        envvar="GRIDPULSE_LOG_LEVEL",
        show_envvar=False,
        case_sensitive=False,
        help="DEBUG, INFO, WARNING, ERROR. Default: $GRIDPULSE_LOG_LEVEL or INFO.",
    ),
]
LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        metavar="FORMAT",
        help="auto (rich on a terminal, plain otherwise), plain, json, rich.",
    ),
]
EnvFileOption = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        metavar="FILE",
        envvar="GRIDPULSE_ENV_FILE",
        show_envvar=False,
        is_eager=True,
        callback=_read_env_file,
        help="Read settings (EIA_API_KEY, GRIDPULSE_*) from FILE of KEY=VALUE lines; variables "
        "already set win. Default: $GRIDPULSE_ENV_FILE. For cron.",
    ),
]
VersionOption = Annotated[
    bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
]


@app.callback()
def main_options(
    ctx: typer.Context,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = LogFormat.AUTO,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log errors only.")] = False,
    env_file: EnvFileOption = None,
    version: VersionOption = False,
) -> None:
    """Keep a database of EIA-930 hourly grid data complete and current."""
    del version
    level = LogLevel.ERROR if quiet else log_level
    try:  # read once for every command; an invalid setting fails the commands that read settings
        ctx.obj = load_settings(os.environ, log_level=level)
        setup_logging(ctx.obj.log_level, log_format, ctx.obj.api_key)
    except ConfigError as exc:
        ctx.obj = exc
        setup_logging(level or LogLevel.INFO, log_format)
    if env_file is not None and readable_by_others(env_file):
        log.warning("%s can be read by other users; it holds the API key: chmod 600 it", env_file)


# ---- commands --------------------------------------------------------------------------


@app.command()
@handle_errors
def fetch(
    ctx: typer.Context,
    ba: BaOption = None,
    dataset: DatasetOption = None,
    since: SinceOption = None,
    start: FromOption = None,
    end: ToOption = None,
    output: OutputOption = None,
) -> None:
    """Fetch raw EIA rows and write them as JSON lines (one EIA row per line)."""
    from gridpulse_cli.engine import iter_raw_rows
    from gridpulse_cli.files import atomic_output
    from gridpulse_cli.planner import plan_chunks

    settings = _settings(ctx)
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, settings.now(), earliest=FIRST_HOUR)
    client = _client(settings)
    count = 0
    with atomic_output(output) as out:
        for row in iter_raw_rows(client, plan_chunks(bas, datasets, window)):
            out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
            count += 1
    requests = plural(client.stats.requests, "request")
    log.info("fetched %s for %s %s in %s", plural(count, "row"), short_list(bas), window, requests)


@app.command()
@handle_errors
def normalize(input_file: InputArgument = "-", output: OutputOption = None) -> None:
    """Turn raw EIA rows (JSON lines from `fetch`) into observation CSV (the export format)."""
    from gridpulse_cli.files import atomic_output, input_stream, read_raw_rows, write_observations_csv
    from gridpulse_cli.normalize import normalize_rows

    with input_stream(input_file) as (stream, name):
        rows = list(read_raw_rows(stream, name))
    frame = normalize_rows(rows, set())
    frame = frame.sort_values(["series_id", "period_end_utc"], kind="stable")
    with atomic_output(output) as out:
        write_observations_csv(frame, out)
    log.info("normalized %s into %s", plural(len(rows), "row"), plural(len(frame), "observation"))


@app.command()
@handle_errors
def load(ctx: typer.Context, input_file: InputArgument = "-", db: DbOption = None) -> None:
    """Upsert observation CSV (from `normalize` or `export`) into the database."""
    from gridpulse_cli import render
    from gridpulse_cli.files import input_stream
    from gridpulse_cli.load import run_load

    settings = _settings(ctx, db)
    with input_stream(input_file) as (stream, name):
        _write(
            settings,
            lambda store, **common: run_load(store, stream, name, **common),
            render.log_summary,
        )


@app.command()
@handle_errors
def ingest(
    ctx: typer.Context,
    ba: BaOption = None,
    dataset: DatasetOption = None,
    since: Since24hOption = None,
    start: FromOption = None,
    end: ToOption = None,
    db: DbOption = None,
) -> None:
    """Fetch, normalize and load a recent window: the hourly cron job."""
    from gridpulse_cli import render
    from gridpulse_cli.ingest import run_ingest

    settings = _settings(ctx, db)
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, settings.now(), earliest=FIRST_HOUR)
    client = _client(settings)
    _write(
        settings,
        lambda store, **common: run_ingest(
            store, client, bas, datasets, window, workers=DEFAULT_WORKERS, **common
        ),
        render.log_summary,
        progress="ingest",
    )


@app.command()
@handle_errors
def export(
    ctx: typer.Context,
    ba: StoredBaOption = None,
    dataset: StoredDatasetOption = None,
    since: SinceOption = None,
    start: FromOption = None,
    end: ToOption = None,
    output: OutputOption = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="csv, jsonl or parquet (same rows and fields).")
    ] = "csv",
    wide: Annotated[
        bool, typer.Option("--wide", help="One row per hour, one value column per series (no flags).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write stored observations (CSV, JSON lines or Parquet), sorted by series_id then time."""
    from gridpulse_cli.export import check_format, export_observations

    check_format(fmt.lower())
    settings = _settings(ctx, db)
    bas, datasets = _stored_selection(ba, dataset)
    window = window_or_all_time(since, start, end, settings.now())
    with _reader(settings) as store:
        count = export_observations(store, output, fmt.lower(), wide, window, bas, datasets)
    log.info("exported %s", plural(count, "hour") if wide else plural(count, "observation"))


@app.command()
@handle_errors
def revisions(
    ctx: typer.Context,
    since: ChangedSinceOption = None,
    ba: StoredBaOption = None,
    dataset: StoredDatasetOption = None,
    as_json: JsonOption = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=MAX_ROWS, help="At most N revisions.")
    ] = None,
    db: DbOption = None,
) -> None:
    """List values EIA changed after gridpulse first stored them (old and new value, when, which run)."""
    from gridpulse_cli import render
    from gridpulse_cli.revisions import count_revisions, list_revisions

    settings = _settings(ctx, db)
    bas, datasets = _stored_selection(ba, dataset)
    changed_since = settings.now() - parse_duration(since) if since else None
    with _reader(settings) as store:
        found = list_revisions(store, changed_since, bas, datasets, limit)
        total = count_revisions(store, changed_since, bas, datasets) if limit else len(found)
    if as_json:
        render.print_json(found)
    else:
        render.print_revisions(found, total)


@app.command()
@handle_errors
def check(
    ctx: typer.Context,
    ba: StoredBaOption = None,
    dataset: StoredDatasetOption = None,
    since: SinceOption = None,
    start: FromOption = None,
    end: ToOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Screen stored values for data errors (spikes, frozen runs, impossible zeros, outliers,
    series that no longer add up) and list the flagged hours; values are never changed, findings
    are stored (export: `suspect`)."""
    from gridpulse_cli import render
    from gridpulse_cli.check import TABLE_COLUMNS, run_check

    settings = _settings(ctx, db)
    bas, datasets = _stored_selection(ba, dataset)
    window = window_or_all_time(since, start, end, settings.now())
    with _writer(settings) as store:
        found = run_check(store, window, bas, datasets, now=settings.now, stop=STOP)
    if as_json:
        render.print_json(found)
    else:
        render.print_table(
            TABLE_COLUMNS, [f.table_row() for f in found], title=f"{plural(len(found), 'flagged hour')}"
        )


@app.command()
@handle_errors
def migrate(ctx: typer.Context, db: DbOption = None) -> None:
    """Create or upgrade the database schema now (the writing commands also do this on first use)."""
    from gridpulse_cli.db import Store

    store = Store.open(_settings(ctx, db).database_url, migrate=False)
    try:
        applied = store.migrate()
        version = store.current_schema_version()
    finally:
        store.close()
    done = f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)"
    typer.echo(f"schema version {version}{done}")


WorkersOption = Annotated[
    int,
    typer.Option("--workers", min=1, max=32, help="Concurrent requests (all under the shared rate limit)."),
]
RestartOption = Annotated[
    bool,
    typer.Option(
        "--restart", help="Re-fetch everything, even chunks an earlier run of this backfill committed."
    ),
]
GapsOnlyOption = Annotated[
    bool,
    typer.Option(
        "--gaps", help="Re-fetch only the hours `gridpulse gaps` reports (default window: --since 30d)."
    ),
]
FromFileOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--from-file",
        metavar="PATH",
        help="Load EIA's six-month EIA930_BALANCE/INTERCHANGE/SUBREGION CSV files instead of calling the API (repeatable).",
    ),
]


@app.command()
@handle_errors
def backfill(
    ctx: typer.Context,
    ba: BaOption = None,
    dataset: DatasetOption = None,
    start: FromOption = None,
    end: ToOption = None,
    since: SinceOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
    restart: RestartOption = False,
    gaps_only: GapsOnlyOption = False,
    from_file: FromFileOption = None,
    db: DbOption = None,
) -> None:
    """Load a long range of history: chunked, concurrent, resumable (or from EIA's bulk CSV files)."""
    from gridpulse_cli import render

    settings = _settings(ctx, db)
    if from_file:
        from gridpulse_cli.bulkload import run_bulk_files  # pandas CSV machinery, only when asked

        paths = list(from_file)
        _write(settings, lambda store, **common: run_bulk_files(store, paths, **common), render.log_summary)
        return
    if not gaps_only and start is None and since is None:
        raise UsageError(
            "backfill needs --from (and optionally --to) or --since, --gaps, or --from-file PATH"
        )
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, settings.now(), default_since="30d", earliest=FIRST_HOUR)
    client = _client(settings)
    if gaps_only:
        _backfill_gaps(
            settings,
            client,
            bas,
            datasets,
            window,
            workers,
            render.gaps_command(ba, dataset, since, start, end),
        )
        return
    end_as_given = format_utc(window.end) if end else (f"since {since}" if since else "now")
    _backfill_range(settings, client, bas, datasets, window, end_as_given, workers, restart)


def _backfill_range(
    settings: Settings,
    client: EIAClient,
    bas: list[str],
    datasets: list[str],
    window: Window,
    end_as_given: str,
    workers: int,
    restart: bool,
) -> None:
    from gridpulse_cli import render
    from gridpulse_cli.backfill import run_backfill

    _write(
        settings,
        lambda store, **common: run_backfill(
            store,
            client,
            bas,
            datasets,
            window,
            end_as_given=end_as_given,
            workers=workers,
            restart=restart,
            **common,
        ),
        render.log_summary,
        progress="backfill",
        every_seconds=10.0,
    )


def _backfill_gaps(
    settings: Settings,
    client: EIAClient,
    bas: list[str],
    datasets: list[str],
    window: Window,
    workers: int,
    full_list: str,
) -> None:
    """`backfill --gaps`: re-fetch what `gridpulse gaps` reports; `full_list` is that command."""
    from gridpulse_cli import render
    from gridpulse_cli.backfill import run_gap_backfill

    _write(
        settings,
        lambda store, **common: run_gap_backfill(
            store, client, bas, datasets, window, workers=workers, **common
        ),
        lambda result: render.log_gap_fill(result, window, full_list),
        progress="backfill --gaps",
        every_seconds=10.0,
    )


@app.command()
@handle_errors
def gaps(
    ctx: typer.Context,
    ba: WatchedBaOption = None,
    dataset: DatasetOption = None,
    since: Since30dOption = None,
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
    from gridpulse_cli import render
    from gridpulse_cli.gaps import find_gaps

    settings = _settings(ctx, db)
    bas, datasets = _watched_selection(settings, ba, dataset)
    window = resolve_window(since, start, end, settings.now(), default_since="30d")
    with _reader(settings) as store:
        found = find_gaps(store, bas, datasets, window, settings.now())
    if as_json:
        render.print_json(found)
    else:
        render.print_gaps(found, window)
    if check and found:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command()
@handle_errors
def health(
    ctx: typer.Context,
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
    from gridpulse_cli import render
    from gridpulse_cli.health import run_health

    if brief and as_json:
        raise UsageError("--brief and --json cannot be combined: choose one")
    settings = _settings(ctx, db)
    bas, datasets = _watched_selection(settings, ba, dataset)
    report = run_health(settings.database_url, bool(settings.api_key), bas, datasets, settings.now())
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=1))
    elif not brief:
        render.print_health(report)
    elif line := report.brief():
        typer.echo(line)
    if report.status == "fail":
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command()
@handle_errors
def runs(
    ctx: typer.Context,
    last: Annotated[
        int, typer.Option("--last", min=1, max=MAX_ROWS, help="How many runs, newest first.")
    ] = 20,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The run ledger: what ran, when, for how long, what it did and how it ended (--json: every field)."""
    from gridpulse_cli import render
    from gridpulse_cli.runs import list_runs

    with _reader(_settings(ctx, db)) as store:
        found = list_runs(store, last)
    if as_json:
        render.print_json(found)
    else:
        render.print_runs(found)


@app.command()
@handle_errors
def status(
    ctx: typer.Context,
    ba: StoredBaOption = None,
    dataset: StoredDatasetOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """What is stored, per BA and dataset: series, first and last hour, observations, missing and
    suspect share, newest run; the watched set first, then history."""
    from gridpulse_cli import render
    from gridpulse_cli.status import store_status

    settings = _settings(ctx, db)
    bas, datasets = _stored_selection(ba, dataset)
    with _reader(settings) as store:
        lines = store_status(
            store, settings.watched_bas, settings.watched_datasets, settings.now(), bas, datasets
        )
    if as_json:
        render.print_json(lines)
    else:
        render.print_status(lines)


@app.command()
@handle_errors
def report(
    ctx: typer.Context,
    ba: WatchedBaOption = None,
    since: Since30dOption = None,
    start: FromOption = None,
    end: ToOption = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="The HTML file to write.")
    ] = Path("gridpulse-report.html"),
    db: DbOption = None,
) -> None:
    """Write one self-contained HTML report (opens offline): coverage, freshness, runs, charts per BA,
    revisions, findings and lineage."""
    from gridpulse_cli.report import write_report

    settings = _settings(ctx, db)
    bas = resolve_bas(ba, default=settings.watched_bas)
    window = resolve_window(since, start, end, settings.now(), default_since="30d")
    with _reader(settings) as store:
        size = write_report(store, output, window, bas, settings)
    log.info("wrote %s (%s)", output, f"{size / 1e6:.1f} MB")


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


__all__ = ["app", "main"]
