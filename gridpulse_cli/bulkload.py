"""`backfill --from-file`: EIA's six-month EIA-930 CSV files into the same series as the API path."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from gridpulse_cli.bulkfiles import read_bulk_file
from gridpulse_cli.db import Store
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


def run_bulk_files(
    store: Store,
    paths: Sequence[Path],
    *,
    now: Now = utc_now,
    stop: StopSignal | None = None,
) -> RunReport:
    """Load each file in chunks, one transaction per file; record one run for all of them.

    Each file is recorded in `sources` (kind `bulk-file`: name, size, sha256; the file itself is
    not copied into the database) and its rows point to that record.
    """
    for path in paths:
        if not path.is_file():
            raise InputFormatError(f"bulk file {path} does not exist or is not a file")
    # read_bulk_file checks each file's header when called: every file is vetted before any row
    # is written, so a wrong file in the list leaves the database untouched.
    readers = [(path, read_bulk_file(path, chunk_rows=BULK_CHUNK_ROWS)) for path in paths]
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
            # one file, one transaction: a bad row or a stop leaves nothing of it
            with store.transaction() as conn:
                counts, rows, chunks = upsert_frames(
                    store, conn, frames, report.run_id, now, source_id, requested
                )
                add_run_progress(conn, report.run_id, rows, counts)
            # counted in the report once the file's transaction commits
            report.counts += counts
            report.fetched += rows
            report.chunks += chunks
            log.info("%s: %s", path.name, plural(rows, "observation"))
    return report
