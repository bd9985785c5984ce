"""`backfill --from-file`: EIA's six-month EIA-930 CSV files into the same series as the API path."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from gridpulse_cli.bulkfiles import IMPUTED_COLUMNS, BulkChunk, read_bulk_chunks
from gridpulse_cli.db import LoadCounts, Store
from gridpulse_cli.engine import Now, upsert_frames, utc_now
from gridpulse_cli.errors import InputFormatError
from gridpulse_cli.ledger import RunReport, add_run_progress, recorded_run
from gridpulse_cli.stopping import StopSignal
from gridpulse_cli.text import plural

log = logging.getLogger(__name__)

BULK_CHUNK_ROWS = 25_000  # file rows per chunk (~250,000 observations): keeps peak memory low


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Imputed:
    """The hours of one file whose reported value EIA imputed, and each series' span in the file:
    collected as its chunks are upserted, stored as `eia-imputed` findings at the end of the file."""

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []
        self.spans: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}

    def observations(self, chunks: Iterable[BulkChunk]) -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            if len(chunk.imputed):
                self.parts.append(chunk.imputed)
            frame = chunk.observations
            spans = frame.groupby("series_id", sort=False)["period_end_utc"].agg(["min", "max"])
            for sid, first, last in zip(spans.index, spans["min"], spans["max"], strict=True):
                old = self.spans.get(sid)
                self.spans[sid] = (first, last) if old is None else (min(old[0], first), max(old[1], last))
            yield frame

    def found(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=IMPUTED_COLUMNS)
        return pd.concat(self.parts, ignore_index=True)


def run_bulk_files(
    store: Store,
    paths: Sequence[Path],
    *,
    now: Now = utc_now,
    stop: StopSignal | None = None,
) -> RunReport:
    """Load each file in chunks, one transaction per file; record one run for all of them.

    Each file is recorded in `sources` (kind `bulk-file`: name, size, sha256; the file itself is
    not copied into the database) and its rows point to that record. The hours whose reported value
    EIA imputed are stored as `eia-imputed` findings in the file's transaction.
    """
    for path in paths:
        if not path.is_file():
            raise InputFormatError(f"bulk file {path} does not exist or is not a file")
    # read_bulk_file checks each file's header when called: every file is vetted before any row
    # is written, so a wrong file in the list leaves the database untouched.
    readers = [(path, read_bulk_chunks(path, chunk_rows=BULK_CHUNK_ROWS)) for path in paths]
    interrupted = "interrupted; files already loaded are kept, re-run to continue"
    with recorded_run(
        store, "backfill --from-file", None, [], [p.name for p in paths], now, stop, lambda _: interrupted
    ) as (report, requested):
        for path, frames in readers:
            with store.transaction() as conn:
                source_id = store.archive(
                    conn,
                    report.run_id,
                    "bulk-file",
                    path.name,
                    {"file": path.name, "bytes": path.stat().st_size},
                    b"",
                    0,
                    _sha256(path),
                    now(),
                )
            counts, rows, chunks, found = _load_file(store, frames, report.run_id, now, source_id, requested)
            # counted in the report once the file's transaction commits
            report.counts += counts
            report.fetched += rows
            report.chunks += chunks
            report.findings += found
            log.info(
                "%s: %s, %s", path.name, plural(rows, "observation"), plural(found, "new eia-imputed finding")
            )
    return report


def _load_file(
    store: Store,
    chunks: Iterable[BulkChunk],
    run_id: int | None,
    now: Now,
    source_id: int,
    requested: threading.Event,
) -> tuple[LoadCounts, int, int, int]:
    """One file, one transaction (a bad row or a stop leaves nothing of it): its observations and
    its `eia-imputed` findings. Return (counts, rows, chunks, new findings)."""
    imputed = _Imputed()
    with store.transaction() as conn:
        counts, rows, frames = upsert_frames(
            store, conn, imputed.observations(chunks), run_id, now, source_id, requested
        )
        found = store.replace_eia_imputed(conn, imputed.spans, imputed.found(), run_id, now())
        add_run_progress(conn, run_id, rows, counts)
    return counts, rows, frames, found
