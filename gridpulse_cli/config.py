"""Settings read from an environment mapping (passed in, so tests hand in a plain dict)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gridpulse_cli.errors import ConfigError

DEFAULT_EIA_URL = "https://api.eia.gov/v2"


@dataclass(frozen=True)
class Settings:
    """Everything gridpulse reads from the environment."""

    api_key: str | None
    eia_url: str
    database_url: str
    log_level: str = "INFO"
    max_requests_per_second: int = 5
    max_requests_per_hour: int = 9000
    timeout_seconds: float = 60.0
    max_tries: int = 6
    retry_base_seconds: float = 1.0
    lock_timeout_seconds: float = 120.0
    now_override: datetime | None = None  # GRIDPULSE_NOW: replay or test as if it were then

    def require_api_key(self) -> str:
        """Return the EIA API key or explain how to set it."""
        if not self.api_key:
            raise ConfigError(
                "EIA_API_KEY is not set: export your EIA API key "
                "(free at https://www.eia.gov/opendata/register.php) in the environment"
            )
        return self.api_key


def default_sqlite_path(environ: Mapping[str, str]) -> Path:
    """Return the default SQLite file: ${XDG_DATA_HOME:-~/.local/share}/gridpulse/gridpulse.db."""
    data_home = environ.get("XDG_DATA_HOME") or ""
    if data_home and Path(data_home).is_absolute():
        base = Path(data_home)
    else:
        home = environ.get("HOME") or str(Path.home())
        base = Path(home) / ".local" / "share"
    return (base / "gridpulse" / "gridpulse.db").absolute()


def resolve_database_url(value: str | None, environ: Mapping[str, str]) -> str:
    """Turn `--db`, GRIDPULSE_DATABASE_URL or the default into a SQLAlchemy URL.

    A bare path means a SQLite file; `postgres://` and `postgresql://` mean psycopg2,
    which is the driver gridpulse ships (SQLAlchemy 2.1 would pick psycopg 3).
    """
    raw = value or environ.get("GRIDPULSE_DATABASE_URL") or ""
    if not raw:
        return f"sqlite:///{default_sqlite_path(environ)}"
    if "://" not in raw:
        return f"sqlite:///{Path(raw).expanduser().absolute()}"
    scheme, rest = raw.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2://{rest}"
    if scheme.startswith("postgresql+") or scheme.startswith("sqlite"):
        return raw
    raise ConfigError(
        f"unsupported database URL scheme '{scheme}://': use postgresql://… or sqlite:///PATH "
        "(or a plain file path)"
    )


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if number < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
    return number


def load_settings(environ: Mapping[str, str], database: str | None = None) -> Settings:
    """Build Settings from the environment; `database` is the `--db` option if given."""
    return Settings(
        api_key=(environ.get("EIA_API_KEY") or "").strip() or None,
        eia_url=(environ.get("GRIDPULSE_EIA_URL") or DEFAULT_EIA_URL).rstrip("/"),
        database_url=resolve_database_url(database, environ),
        log_level=(environ.get("GRIDPULSE_LOG_LEVEL") or "INFO").upper(),
        max_requests_per_second=int(_number(environ, "GRIDPULSE_MAX_RPS", 5, 1)),
        max_requests_per_hour=int(_number(environ, "GRIDPULSE_MAX_REQUESTS_PER_HOUR", 9000, 1)),
        timeout_seconds=_number(environ, "GRIDPULSE_TIMEOUT", 60.0, 0.1),
        max_tries=int(_number(environ, "GRIDPULSE_MAX_TRIES", 6, 1)),
        retry_base_seconds=_number(environ, "GRIDPULSE_RETRY_BASE", 1.0, 0.0),
        lock_timeout_seconds=_number(environ, "GRIDPULSE_LOCK_TIMEOUT", 120.0, 0.0),
        now_override=_moment(environ, "GRIDPULSE_NOW"),
    )


def _moment(environ: Mapping[str, str], name: str) -> datetime | None:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an ISO 8601 time such as 2024-01-01T05:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
