"""Settings read from an environment mapping (passed in, so tests hand in a plain dict)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from gridpulse_cli.catalog import DATASETS, MVP_BAS, resolve_bas, resolve_datasets
from gridpulse_cli.errors import ConfigError, UsageError, file_problem, quote
from gridpulse_cli.windows import FIRST_HOUR, LATEST_TIME

DEFAULT_EIA_URL = "https://api.eia.gov/v2"
DEFAULT_WORKERS = 4  # concurrent EIA requests of ingest and backfill (all under the rate limit)


@dataclass(frozen=True)
class Settings:
    """Everything gridpulse reads from the environment."""

    api_key: str | None
    eia_url: str
    # --db, else GRIDPULSE_DATABASE_URL, else the default SQLite file, as given: checked when
    # used (`database_url`), so a command's --db stands in for a GRIDPULSE_DATABASE_URL it cannot use.
    database: str
    log_level: str = "INFO"
    max_requests_per_second: int = 5
    max_requests_per_hour: int = 9000
    timeout_seconds: float = 60.0
    max_tries: int = 6
    retry_base_seconds: float = 1.0
    lock_timeout_seconds: float = 120.0
    now_override: datetime | None = None  # GRIDPULSE_NOW: replay or test as if it were then
    # GRIDPULSE_BA / GRIDPULSE_DATASETS: the series this installation keeps current ("watched").
    # ingest, backfill, fetch, gaps and health default to them; anything else stored is history.
    watched_bas: tuple[str, ...] = MVP_BAS
    watched_datasets: tuple[str, ...] = tuple(DATASETS)

    def require_api_key(self) -> str:
        """Return the EIA API key or explain how to set it."""
        if not self.api_key:
            raise ConfigError(
                "EIA_API_KEY is not set: export your EIA API key "
                "(free at https://www.eia.gov/opendata/register.php) in the environment"
            )
        return self.api_key

    def now(self) -> datetime:
        """Now, or GRIDPULSE_NOW when set (to replay a past moment, or in tests)."""
        return self.now_override or datetime.now(UTC)

    @property
    def database_url(self) -> str:
        """The database as a SQLAlchemy URL (a ConfigError for a scheme gridpulse cannot use)."""
        return database_url(self.database)

    def with_database(self, database: str | None) -> Settings:
        """These settings with a command's `--db` (when given) in place of the configured database."""
        return replace(self, database=database) if database else self


def default_sqlite_path(environ: Mapping[str, str]) -> Path:
    """Return the default SQLite file: ${XDG_DATA_HOME:-~/.local/share}/gridpulse/gridpulse.db."""
    data_home = environ.get("XDG_DATA_HOME") or ""
    if data_home and Path(data_home).is_absolute():
        base = Path(data_home)
    else:
        home = environ.get("HOME") or str(Path.home())
        base = Path(home) / ".local" / "share"
    return (base / "gridpulse" / "gridpulse.db").absolute()


def database_setting(value: str | None, environ: Mapping[str, str]) -> str:
    """`--db`, else GRIDPULSE_DATABASE_URL, else the default SQLite file."""
    return value or environ.get("GRIDPULSE_DATABASE_URL") or str(default_sqlite_path(environ))


def database_url(raw: str) -> str:
    """Turn `--db` or GRIDPULSE_DATABASE_URL (or the default file) into a SQLAlchemy URL.

    A bare path means a SQLite file; `postgres://` and `postgresql://` mean psycopg2,
    which is the driver gridpulse ships (SQLAlchemy 2.1 would pick psycopg 3).
    """
    if "://" not in raw:
        return f"sqlite:///{Path(raw).expanduser().absolute()}"
    scheme, rest = raw.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2://{rest}"
    if scheme.startswith("postgresql+") or scheme.startswith("sqlite"):
        return raw
    raise ConfigError(
        f"unsupported database URL scheme {quote(scheme + '://')}: use postgresql://… or sqlite:///PATH "
        "(or a plain file path)"
    )


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={quote(raw)} is not a number") from None
    if math.isinf(number):  # int(inf) would crash later
        raise ConfigError(f"{name}={quote(raw)} is not a finite number")
    if not number >= minimum:  # also NaN
        raise ConfigError(f"{name}={quote(raw)} must be at least {minimum:g}")
    return number


def load_settings(
    environ: Mapping[str, str], database: str | None = None, log_level: str | None = None
) -> Settings:
    """Build Settings from the environment; `database` and `log_level` are the `--db` and
    `--log-level` options if given (they win over GRIDPULSE_DATABASE_URL and GRIDPULSE_LOG_LEVEL)."""
    return Settings(
        api_key=(environ.get("EIA_API_KEY") or "").strip() or None,
        eia_url=(environ.get("GRIDPULSE_EIA_URL") or DEFAULT_EIA_URL).rstrip("/"),
        database=database_setting(database, environ),
        log_level=(log_level or environ.get("GRIDPULSE_LOG_LEVEL") or "INFO").upper(),
        max_requests_per_second=int(_number(environ, "GRIDPULSE_MAX_RPS", 5, 1)),
        max_requests_per_hour=int(_number(environ, "GRIDPULSE_MAX_REQUESTS_PER_HOUR", 9000, 1)),
        timeout_seconds=_number(environ, "GRIDPULSE_TIMEOUT", 60.0, 0.1),
        max_tries=int(_number(environ, "GRIDPULSE_MAX_TRIES", 6, 1)),
        retry_base_seconds=_number(environ, "GRIDPULSE_RETRY_BASE", 1.0, 0.0),
        lock_timeout_seconds=_number(environ, "GRIDPULSE_LOCK_TIMEOUT", 120.0, 0.0),
        now_override=_moment(environ, "GRIDPULSE_NOW"),
        watched_bas=_selection(environ, "GRIDPULSE_BA", resolve_bas),
        watched_datasets=_selection(environ, "GRIDPULSE_DATASETS", resolve_datasets),
    )


def _selection(
    environ: Mapping[str, str], name: str, resolve: Callable[[Sequence[str]], list[str]]
) -> tuple[str, ...]:
    """GRIDPULSE_BA or GRIDPULSE_DATASETS, read like `--ba`/`--dataset` (unset: their defaults)."""
    raw = environ.get(name) or ""
    try:
        return tuple(resolve([raw]))
    except UsageError as exc:  # a bad setting, not a bad option: name the variable, exit 3
        raise ConfigError(f"{name}={raw!r}: {exc}") from None


def _moment(environ: Mapping[str, str], name: str) -> datetime | None:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{name}={quote(raw)} is not an ISO 8601 time such as 2024-01-01T05:00:00Z"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not FIRST_HOUR <= moment <= LATEST_TIME:  # keeps `now + 1 hour` and every window in range
        raise ConfigError(
            f"{name}={quote(raw)} is not between {FIRST_HOUR:%Y-%m-%d} and {LATEST_TIME:%Y-%m-%d}"
        )
    return moment


# ---- env files ----------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_DOUBLE_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$')
_SINGLE_QUOTED = re.compile(r"^'([^']*)'\s*(?:#.*)?$")
_DOUBLE_ESCAPE = re.compile(r'\\(["\\$`])')
_INLINE_COMMENT = re.compile(r"\s+#.*$")


def parse_env_file(text: str, source: str) -> dict[str, str]:
    """KEY=VALUE assignments of an env file, in the subset of shell syntax such files use.

    Blank lines and `#` comments are skipped; `export ` is optional; a value may be 'single'
    (literal) or "double" quoted; an unquoted value ends at ` #` (an inline comment), as in the
    shell. Values are taken literally: no `$VAR` expansion. A line that is not an assignment is
    an error naming the file and line number, never the line (it may hold the API key).
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        value = _env_value(match[2].strip()) if match else None
        if match is None or value is None:
            raise ConfigError(f"{source}, line {number}: expected KEY=VALUE (optionally quoted)")
        values[match[1]] = value
    return values


def _env_value(raw: str) -> str | None:
    """The value of one assignment, or None when its quoting is broken."""
    if raw.startswith('"'):
        double = _DOUBLE_QUOTED.match(raw)
        return _DOUBLE_ESCAPE.sub(r"\1", double[1]) if double else None
    if raw.startswith("'"):
        single = _SINGLE_QUOTED.match(raw)
        return single[1] if single else None
    return _INLINE_COMMENT.sub("", raw)


def load_env_file(path: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Add an env file's variables to `environ`, keeping any already set; return the names added.

    This is how cron runs gridpulse: the crontab names the file (GRIDPULSE_ENV_FILE or
    `--env-file`), so the API key lives in a file only the cron user can read.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"env file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"env file {path} {file_problem(exc)}") from None
    added = []
    for name, value in parse_env_file(text, str(path)).items():
        if name not in environ:
            environ[name] = value
            added.append(name)
    return added


def readable_by_others(path: Path) -> bool:
    """Whether group or other users may read the file (it should be chmod 600: it holds the key)."""
    try:
        return bool(path.stat().st_mode & 0o044)
    except OSError:
        return False
