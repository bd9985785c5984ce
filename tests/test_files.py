"""files.py: the observation CSV reader's read-ahead thread and its fast paths."""

from __future__ import annotations

import io
import threading

import pytest

from gridpulse_cli.errors import InputFormatError
from gridpulse_cli.files import read_observations_csv

HEADER = "series_id,period_end_utc,value,quality_flag"


def _csv(hours: int, bad_at: int | None = None) -> str:
    lines = [HEADER]
    for h in range(hours):
        value = "x" if h == bad_at else str(h)
        lines.append(f"EBA.PJM-ALL.D.H,2024-01-{1 + h // 24:02d}T{h % 24:02d}:00:00Z,{value},good")
    return "\n".join(lines) + "\n"


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gridpulse-read-ahead"]


def test_chunks_arrive_in_order_then_the_error_of_a_later_chunk() -> None:
    chunks = read_observations_csv(io.StringIO(_csv(10, bad_at=7)), source="in.csv", chunk_rows=3)
    assert [c["value_mwh"].tolist() for c in (next(chunks), next(chunks))] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(InputFormatError, match=r"^in\.csv:9: value 'x'"):
        next(chunks)
    assert not _read_ahead_threads()


def test_a_consumer_that_stops_early_leaves_no_thread_behind() -> None:
    chunks = read_observations_csv(io.StringIO(_csv(48)), source="in.csv", chunk_rows=2)
    assert len(next(chunks)) == 2
    chunks.close()  # what happens when the database write of a chunk fails
    assert not _read_ahead_threads()


def test_the_same_hour_written_two_ways_is_one_observation() -> None:
    # pandas reads 5 and 05 as one hour: the fast duplicate check must see them as one too
    text = (
        f"{HEADER}\nEBA.PJM-ALL.D.H,2024-01-01T05:00:00Z,1,good\nEBA.PJM-ALL.D.H,2024-01-01T5:00:00Z,2,good\n"
    )
    (chunk,) = list(read_observations_csv(io.StringIO(text)))
    assert chunk["value_mwh"].tolist() == [1.0]


def test_values_with_trailing_spaces_and_spaces_only() -> None:
    text = f"{HEADER}\nEBA.PJM-ALL.D.H,2024-01-01T05:00:00Z,12.5 ,good \nEBA.PJM-ALL.D.H ,2024-01-01T06:00:00Z,  ,missing\n"
    (chunk,) = list(read_observations_csv(io.StringIO(text)))
    assert chunk["value_mwh"].tolist()[0] == 12.5 and chunk["value_mwh"].isna().tolist() == [False, True]
    assert chunk["quality_flag"].tolist() == ["good", "missing"]
    assert chunk["series_id"].tolist() == ["EBA.PJM-ALL.D.H"] * 2
