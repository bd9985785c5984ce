"""`gridpulse status`: per BA and dataset what is stored, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from gridpulse_cli.db import Store
from testing.eia_stub import EIAStub
from tests.helpers import NOW_TEXT, WATCHED, gp, library_ingest, make_holes, ok, serve_ops, utc


def _status(db_url: str, *args: str, env: dict[str, str] | None = None) -> str:
    return ok(
        gp(
            "status",
            *args,
            env={"GRIDPULSE_DATABASE_URL": db_url, "GRIDPULSE_NOW": NOW_TEXT, **WATCHED, **(env or {})},
        )
    )


def _by_pair(text: str) -> dict[tuple[str, str], dict[str, object]]:
    return {(line["ba"], line["dataset"]): line for line in json.loads(text)}


def test_status_counts_series_hours_missing_share_and_newest_run(db_url: str, stub: EIAStub) -> None:
    serve_ops(stub)
    make_holes(stub)
    library_ingest(db_url, stub)
    lines = _by_pair(_status(db_url, "--json"))
    demand = lines[("PJM", "demand")]
    assert demand == {
        "ba": "PJM",
        "dataset": "demand",
        "watched": True,
        "series": 1,
        "first_hour": "2024-01-01T00:00:00Z",
        "last_hour": "2024-01-04T23:00:00Z",
        "observations": 93,
        "missing_share": round(3 / 96, 6),  # 2024-01-02T05..07 absent
        "suspect_share": 0.0,
        "newest_run": 1,
    }
    # PJM fuel mix: 8 fuels; COL starts at 03 (not a gap: before its first hour); NG lacks 6 hours
    fuel = lines[("PJM", "fuel-mix")]
    assert (fuel["series"], fuel["missing_share"]) == (8, round(6 / (7 * 96 + 93), 6))
    # CISO fuel mix: SUN has 1 absent and 2 missing values; WND's unpublished tail is after its last hour
    assert lines[("CISO", "fuel-mix")]["missing_share"] == round(3 / (7 * 96 + 74), 6)
    assert lines[("CISO", "interchange")]["series"] == 1


def test_status_splits_watched_from_history_and_lists_watched_pairs_never_stored(
    db_url: str, stub: EIAStub
) -> None:
    serve_ops(stub)
    library_ingest(db_url, stub)
    watched = {"GRIDPULSE_BA": "PJM", "GRIDPULSE_DATASETS": "demand,forecast"}
    lines = json.loads(_status(db_url, "--json", env=watched))
    assert [(x["ba"], x["dataset"], x["watched"]) for x in lines[:2]] == [
        ("PJM", "demand", True),
        ("PJM", "forecast", True),
    ]
    assert lines[1]["series"] == 0 and lines[1]["last_hour"] is None  # watched, never stored
    history = [(x["ba"], x["dataset"]) for x in lines if not x["watched"]]
    assert history == [
        ("CISO", "demand"),
        ("CISO", "fuel-mix"),
        ("CISO", "interchange"),
        ("PJM", "fuel-mix"),
        ("PJM", "interchange"),
    ]
    text = _status(db_url, env={**watched, "COLUMNS": "80"})
    assert "watched" in text and "history" in text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert re.search(r"^PJM\s+forecast\s+0\s+-\s+-", text, re.M), text


def test_status_suspect_share_counts_flagged_hours_once(db_url: str, stub: EIAStub) -> None:
    serve_ops(stub)
    library_ingest(db_url, stub)
    store = Store.open(db_url)
    try:
        with store.transaction() as conn:
            key = conn.exec_driver_sql(
                "SELECT series_key FROM series WHERE series_id = 'EBA.PJM-ALL.D.H'"
            ).scalar()
            for hour, check in [(5, "spike"), (5, "negative"), (6, "spike")]:  # 2 hours, one flagged twice
                conn.execute(
                    sa.text("INSERT INTO findings VALUES (:k, :t, :c, 'test', :t, NULL)"),
                    {"k": key, "t": store.encode_time(utc(2024, 1, 2, hour)), "c": check},
                )
    finally:
        store.close()
    assert _by_pair(_status(db_url, "--json"))[("PJM", "demand")]["suspect_share"] == round(2 / 96, 6)


def test_status_on_a_missing_database_is_one_error_line(tmp_path: object) -> None:
    result = gp("status", "--db", f"{tmp_path}/none.db")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("gridpulse: error: no gridpulse database")
