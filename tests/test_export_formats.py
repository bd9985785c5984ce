"""`gridpulse export --format csv|jsonl|parquet [--wide]`: the same rows in every format, streamed."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gridpulse_cli import export
from gridpulse_cli.db import Store
from testing.eia_stub import EIAStub
from tests.helpers import NOW_TEXT, WINDOW_ARGS, gp, library_ingest, make_holes, ok, serve_ops

LEADING = ["series_id", "period_end_utc", "value", "quality_flag"]


def _export(db_url: str, out: Path, *args: str) -> None:
    ok(
        gp(
            "export",
            *WINDOW_ARGS,
            "-o",
            str(out),
            *args,
            env={"GRIDPULSE_DATABASE_URL": db_url, "GRIDPULSE_NOW": NOW_TEXT},
        )
    )


def _csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["value"] = pd.to_numeric(frame["value"].replace("", None)).astype("float64")
    return frame


@pytest.fixture
def filled(db_url: str, stub: EIAStub) -> str:
    serve_ops(stub)
    make_holes(stub)  # absent hours and missing values: nulls must survive every format
    library_ingest(db_url, stub)
    return db_url


def test_jsonl_and_parquet_read_back_equal_the_csv_row_for_row(filled: str, tmp_path: Path) -> None:
    for fmt in ("csv", "jsonl", "parquet"):
        _export(filled, tmp_path / f"out.{fmt}", "--format", fmt)
    expected = _csv(tmp_path / "out.csv")
    assert expected["value"].isna().sum() == 2 and len(expected) > 1000
    jsonl = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype={"counterpart": str})
    parquet = pd.read_parquet(tmp_path / "out.parquet")
    for frame in (jsonl, parquet):
        assert list(frame.columns) == list(expected.columns)
        assert list(frame.columns[:4]) == LEADING
    jsonl["counterpart"] = jsonl["counterpart"].fillna("")
    pd.testing.assert_frame_equal(jsonl.astype({"value": "float64"}), expected, check_dtype=False)
    as_text = parquet.assign(
        period_end_utc=parquet["period_end_utc"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{c: parquet[c].astype(str) for c in ("quality_flag", "dataset", "area", "counterpart")},
    )
    pd.testing.assert_frame_equal(as_text, expected, check_dtype=False)


def test_parquet_is_typed(filled: str, tmp_path: Path) -> None:
    _export(filled, tmp_path / "out.parquet", "--format", "parquet")
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert str(schema.field("period_end_utc").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("value").type) == "double"
    assert str(schema.field("quality_flag").type).startswith("dictionary<values=string")
    assert pd.read_parquet(tmp_path / "out.parquet")["quality_flag"].dtype == "category"


def test_wide_is_one_row_per_hour_and_one_column_per_series_in_every_format(
    filled: str, tmp_path: Path
) -> None:
    _export(filled, tmp_path / "long.csv")
    for fmt in ("csv", "jsonl", "parquet"):
        _export(filled, tmp_path / f"wide.{fmt}", "--format", fmt, "--wide")
    long = _csv(tmp_path / "long.csv")
    expected = long.pivot(index="period_end_utc", columns="series_id", values="value")
    expected = expected.reindex(columns=sorted(expected.columns))
    expected.columns.name = None
    wide_csv = pd.read_csv(tmp_path / "wide.csv", index_col="period_end_utc")
    wide_jsonl = pd.read_json(tmp_path / "wide.jsonl", lines=True).set_index("period_end_utc")
    wide_parquet = pd.read_parquet(tmp_path / "wide.parquet").set_index("period_end_utc")
    assert len(wide_csv) == 96
    pd.testing.assert_frame_equal(wide_csv, expected, check_dtype=False, check_names=False)
    wide_jsonl.index = wide_csv.index
    wide_parquet.index = wide_csv.index
    pd.testing.assert_frame_equal(wide_jsonl.astype("float64"), wide_csv.astype("float64"), check_names=False)
    pd.testing.assert_frame_equal(wide_parquet, wide_csv.astype("float64"), check_names=False)


def test_exports_stream_in_batches_and_wide_batches_hold_whole_hours(
    filled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(filled, read_only=True)
    try:
        # a regression: SQLite handed back one-row batches (a Parquet row group per row)
        assert {len(b) for b in store.iter_observations(None, None, None, 500)} - {500} != set()
        assert len(next(store.iter_observations(None, None, None, 500))) == 500
        monkeypatch.setattr(export, "BATCH_ROWS", 7)  # never a multiple of an hour's 23 rows
        batches = list(export.hour_batches(store, None, None, None))
        hours = [row[1] for batch in batches for row in batch]
        assert hours == sorted(hours)
        assert all(batches[i][-1][1] != batches[i + 1][0][1] for i in range(len(batches) - 1))
        small, full = io.StringIO(), io.StringIO()
        export.export_wide(store, small, "csv", None, None, None)
        monkeypatch.setattr(export, "BATCH_ROWS", 50_000)
        export.export_wide(store, full, "csv", None, None, None)
        assert small.getvalue() == full.getvalue()
    finally:
        store.close()


def test_an_unknown_format_is_a_usage_error(sqlite_url: str, tmp_path: Path) -> None:
    result = gp("export", "--format", "xlsx", env={"GRIDPULSE_DATABASE_URL": sqlite_url})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("gridpulse: error: unknown --format 'xlsx'")
