"""Shared fixtures: a loopback EIA stub, temporary databases (SQLite and a real PostgreSQL), CLI env."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gridpulse_cli.db import Store
from testing.eia_stub import EIAStub

TEST_KEY = "test-key-0123456789abcdef"
PG_ADMIN_URL = os.environ.get(
    "GRIDPULSE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
PG_TEST_DB = os.environ.get("GRIDPULSE_TEST_PG_DB", "gridpulse_test")


@pytest.fixture
def stub() -> Iterator[EIAStub]:
    """An EIA API v2 look-alike on 127.0.0.1 that accepts TEST_KEY only."""
    with EIAStub(api_key=TEST_KEY, timeout_sleep=2.0) as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gridpulse.db'}"


def _pg_available() -> str | None:
    """Create the test database if needed; return its URL, or None if no server answers."""
    try:
        admin = sa.create_engine(
            PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": PG_TEST_DB}
            ).scalar()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{PG_TEST_DB}"')
        admin.dispose()
    except sa.exc.OperationalError:
        return None
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_TEST_DB}"


_PG_URL: list[str | None] = []


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in a real PostgreSQL database; fails (not skips) under CI when none answers."""
    if not _PG_URL:
        _PG_URL.append(_pg_available())
    base = _PG_URL[0]
    if base is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432; .ci/run must start it")
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432 (CI runs these)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{base}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A store opened on `db_url` (SQLite and PostgreSQL), closed afterwards."""
    opened = Store.open(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def cli_env(tmp_path: Path, stub: EIAStub, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for CLI runs: private HOME (so the SQLite default is used), the stub, the key."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("XDG_DATA_HOME", "GRIDPULSE_DATABASE_URL", "GRIDPULSE_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "HOME": str(home),
        "EIA_API_KEY": TEST_KEY,
        "GRIDPULSE_EIA_URL": stub.url,
        "GRIDPULSE_RETRY_BASE": "0",
        "GRIDPULSE_TIMEOUT": "1",
        "GRIDPULSE_MAX_RPS": "1000",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
