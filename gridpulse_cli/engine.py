"""The pipeline engine: fetch -> normalize -> commit, chunk by chunk, recorded in the run ledger.

Fetch threads fetch a chunk's pages, normalize them and gzip their bodies; the calling thread
commits each chunk as it arrives (responses archived, observations upserted, in one
transaction), so a failure never leaves half a chunk behind. On every exit path the fetch
threads are cancelled and joined before the run's outcome is recorded (see stopping.py).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gridpulse_cli.db import LoadCounts, Store
from gridpulse_cli.errors import GridpulseError
from gridpulse_cli.ledger import RunReport, add_run_progress, recorded_run
from gridpulse_cli.normalize import normalize_rows
from gridpulse_cli.planner import Chunk
from gridpulse_cli.stopping import StopSignal
from gridpulse_cli.text import plural
from gridpulse_cli.windows import HOUR, Window

if TYPE_CHECKING:  # the client is passed in: `load` never imports requests
    from sqlalchemy.engine import Connection

    from gridpulse_cli.eia import EIAClient, Page

log = logging.getLogger(__name__)

# How often a writing run looks for a stop request while it waits for fetches.
POLL_SECONDS = 0.2
# How long a stopping run waits for its fetch threads; only one stuck in a network read can
# take longer, and fetch threads never touch the database.
JOIN_SECONDS = 5.0
# Chunks fetched or waiting to commit, per worker: enough that the workers keep the rate limit
# busy through a long commit or screen step (a second or so at 5 requests/s), few enough that
# memory does not grow with the plan (a prepared chunk is its frame and gzipped body, ~1 MB).
IN_FLIGHT = 3

# A chunk's ledger key (chunk key, plan key): marks it committed for resumable backfills.
LedgerKey = Callable[[Chunk], tuple[str, str]]
Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def fetch_chunk(client: EIAClient, chunk: Chunk, cancel: threading.Event | None = None) -> list[Page]:
    """Every page of one chunk (EIA's `end` is inclusive, our window is half-open)."""
    return client.fetch_window(
        chunk.route, chunk.facets, chunk.window.start, chunk.window.end - HOUR, cancel=cancel
    )


def iter_raw_rows(client: EIAClient, chunks: Sequence[Chunk]) -> Iterator[dict[str, Any]]:
    """Yield raw EIA rows for `gridpulse fetch`, chunk by chunk."""
    for chunk in chunks:
        for page in fetch_chunk(client, chunk):
            yield from page.rows


@dataclass(frozen=True)
class PreparedPage:
    """A page ready to commit: its observations, its body gzipped for the archive, and what the
    archive records of the request. Not the parsed rows: a page's dicts are ~10x its frame, and
    prepared pages wait for the writer."""

    route: str
    params: dict[str, Any]
    fetched_at: datetime
    rows: int
    observations: pd.DataFrame
    body_gzip: bytes
    sha256: str


def prepare_pages(pages: Sequence[Page], warned_fuels: set[str]) -> list[PreparedPage]:
    """Normalize each page separately (every observation keeps the page it came from) and
    compress its body. Runs in the fetching threads: only database work is left for the writer."""
    prepared = []
    for page in pages:
        body = page.archive_bytes()
        prepared.append(
            PreparedPage(
                page.route,
                page.params,
                page.fetched_at,
                len(page.rows),
                normalize_rows(page.rows, warned_fuels, kind=page.route),
                gzip.compress(body, compresslevel=1, mtime=0),  # level 1: ~6x faster than 6, ~10% larger
                hashlib.sha256(body).hexdigest(),
            )
        )
    return prepared


def fetch_and_prepare(
    client: EIAClient, chunk: Chunk, warned_fuels: set[str], cancel: threading.Event
) -> list[PreparedPage]:
    return prepare_pages(fetch_chunk(client, chunk, cancel), warned_fuels)


def commit_chunks(
    store: Store,
    run_id: int | None,
    chunks: Sequence[tuple[Sequence[PreparedPage], tuple[str, str] | None]],
    now: datetime,
) -> LoadCounts:
    """Archive the chunks' responses and upsert their observations in one transaction.

    Each chunk's ledger key (chunk key, plan key), when given, marks it committed for resumable
    backfills in the same transaction: a chunk is either stored and marked or neither. Several
    chunks that arrived together share the transaction, one COPY and one commit. The run's
    ledger row gains the chunks' counts in the same transaction, so a run that ends without
    recording its outcome (killed, database lost) still says what it committed.
    """
    counts = LoadCounts()
    with store.transaction() as conn:
        parts, sources, fetched = [], [], 0
        for pages, ledger_key in chunks:
            if ledger_key is not None:
                rows = sum(p.rows for p in pages)
                store.mark_chunk(conn, ledger_key[0], ledger_key[1], run_id, rows, now)
            for prepared in pages:
                fetched += prepared.rows
                source_id = store.archive(
                    conn,
                    run_id,
                    "eia-response",
                    prepared.route,
                    prepared.params,
                    prepared.body_gzip,
                    prepared.rows,
                    prepared.sha256,
                    prepared.fetched_at,
                )
                parts.append(prepared.observations)
                sources.append(np.full(len(prepared.observations), source_id, dtype=np.int64))
        if parts:
            frame = pd.concat(parts, ignore_index=True)
            source_ids = pd.Series(np.concatenate(sources))
            keep = ~frame.duplicated(["series_id", "period_end_utc"], keep="first")
            counts += store.upsert(conn, frame[keep], run_id, now, source_ids[keep].reset_index(drop=True))
        if run_id is not None:
            add_run_progress(conn, run_id, fetched, counts)
    return counts


@dataclass(frozen=True)
class ChunkDone:
    """Progress event after each committed chunk."""

    chunk: Chunk
    index: int
    total: int
    rows: int
    report: RunReport


ProgressCallback = Callable[[ChunkDone], None]


class _Fetches:
    """The fetch threads of one run: at most IN_FLIGHT x workers chunks fetched or waiting at once."""

    def __init__(self, client: EIAClient, chunks: Sequence[Chunk], workers: int) -> None:
        self.client, self.workers = client, max(1, workers)
        self.pending = iter(chunks)
        self.in_flight: dict[Future[list[PreparedPage]], Chunk] = {}
        self.cancel = threading.Event()
        self.warned: set[str] = set()  # fuel codes warned about, once per run
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gridpulse-fetch")

    def submit_next(self) -> None:
        chunk = next(self.pending, None)
        if chunk is not None:
            future = self.pool.submit(fetch_and_prepare, self.client, chunk, self.warned, self.cancel)
            self.in_flight[future] = chunk

    def start(self) -> None:
        for _ in range(IN_FLIGHT * self.workers):
            self.submit_next()

    def collect(self) -> tuple[list[tuple[Chunk, list[PreparedPage]]], BaseException | None]:
        """Take the finished fetches out of flight: what arrived, and the first failure."""
        failure: BaseException | None = None
        arrived: list[tuple[Chunk, list[PreparedPage]]] = []
        for future in [f for f in self.in_flight if f.done()]:
            chunk = self.in_flight.pop(future)
            error = future.exception()
            if error is not None:
                failure = failure or error  # commit what did arrive before giving up
            else:
                arrived.append((chunk, future.result()))
        return arrived, failure

    def stop(self) -> None:
        """Cancel queued fetches, wake waiting ones (limiter, backoff) and join the threads.

        Only a thread inside a network read can outlast JOIN_SECONDS; it is left to finish on its
        own (it never writes), and the process does not wait for it at exit.
        """
        self.cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        running = [f for f in self.in_flight if not f.cancelled()]
        _finished, still = wait(running, timeout=JOIN_SECONDS)
        if still:
            log.debug("%d fetch thread(s) still in a network read; not waiting for them", len(still))
            return
        self.pool.shutdown(wait=True)


def run_chunks(
    store: Store,
    client: EIAClient,
    chunks: Sequence[Chunk],
    report: RunReport,
    *,
    workers: int = 1,
    now: Now = utc_now,
    progress: ProgressCallback | None = None,
    ledger: LedgerKey | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Fetch chunks with up to `workers` threads; commit each one here, as it arrives.

    At most IN_FLIGHT x workers chunks are fetched or waiting at once, so memory does not grow
    with the number of chunks. All threads share the client's rate limiter. While the limiter
    holds the fetches back, the run's quality screen takes steps. When `stop` is set (a
    signal), the run raises KeyboardInterrupt between commits, never inside one; on every exit
    path the fetch threads are cancelled and joined first.
    """
    started = time.monotonic()
    fetches = _Fetches(client, chunks, workers)
    screening = True

    def committed(chunk: Chunk, rows: int) -> None:
        report.fetched += rows
        report.chunks += 1
        _sync_stats(report, client, started)
        if progress:
            progress(ChunkDone(chunk, report.chunks, len(chunks), rows, report))
        fetches.submit_next()

    try:
        fetches.start()
        while fetches.in_flight:
            wait(fetches.in_flight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt("stop requested")
            arrived, failure = fetches.collect()
            if arrived:
                batch = [(pages, ledger(chunk) if ledger else None) for chunk, pages in arrived]
                report.counts += commit_chunks(store, report.run_id, batch, now())
                for chunk, pages in arrived:
                    committed(chunk, sum(p.rows for p in pages))
            if failure is not None:
                raise failure
            screening = screening and _screen_while_waiting(report, fetches, stop)
    finally:
        fetches.stop()
        _sync_stats(report, client, started)


def _screen_while_waiting(report: RunReport, fetches: _Fetches, stop: threading.Event | None) -> bool:
    """One step of the run's quality screen (check.RunScreen) while the writer has time to spare:
    nothing waits to be committed and a fetch thread waits for the rate limiter (EIA's limit, not
    the writer, sets the pace). The screen left for after the last request is what the run's
    wall time pays for; a writer that is itself the bottleneck (no rate limit) does not step.
    False once a step failed: the rest is left to the screen at the run's end (as a failure
    there leaves it to `gridpulse check`)."""
    if report.screen is None or not fetches.client.limiter.waiting:
        return True
    if not fetches.in_flight or any(f.done() for f in fetches.in_flight):
        return True
    try:
        report.screen.step(stop)
    except GridpulseError as exc:
        log.warning("run %s: screening while fetching failed (%s); left to the end", report.run_id, exc)
        return False
    return True


def _sync_stats(report: RunReport, client: EIAClient, started: float) -> None:
    report.requests, report.retries = client.stats.requests, client.stats.retries
    report.throttled = client.stats.throttled
    report.elapsed = time.monotonic() - started


def _interrupted(report: RunReport) -> str:
    return (
        f"interrupted after {plural(report.chunks, 'committed chunk')} (run {report.run_id}); "
        "committed chunks are kept, re-run to continue"
    )


@dataclass(frozen=True)
class RunOptions:
    """How a fetching run runs: the keyword options every fetching command shares."""

    workers: int = 1
    now: Now = utc_now
    progress: ProgressCallback | None = None
    stop: StopSignal | None = None


def run_recorded(
    store: Store,
    client: EIAClient,
    command: str,
    bas: Sequence[str],
    datasets: Sequence[str],
    window: Window,
    chunks: Sequence[Chunk],
    options: RunOptions,
    ledger: LedgerKey | None = None,
) -> RunReport:
    """run_chunks inside the run ledger: the run is recorded ok, failed or interrupted."""
    workers, now = options.workers, options.now
    ledgered = recorded_run(store, command, window, bas, datasets, now, options.stop, _interrupted)
    with ledgered as (report, requested):
        log.debug(
            "run %d: %s %s (%d chunks, %d workers)", report.run_id, command, window, len(chunks), workers
        )
        run_chunks(
            store,
            client,
            chunks,
            report,
            workers=workers,
            now=now,
            progress=options.progress,
            ledger=ledger,
            stop=requested,
        )
    return report


def upsert_frames(
    store: Store,
    conn: Connection,
    frames: Iterable[pd.DataFrame],
    run_id: int | None,
    now: Now,
    source_id: int,
    stop: threading.Event,
) -> tuple[LoadCounts, int, int]:
    """Upsert observation frames read from a file inside the caller's transaction: (counts, rows,
    frames). A stop request raises KeyboardInterrupt between frames, rolling the transaction back."""
    counts, rows, chunks = LoadCounts(), 0, 0
    for frame in frames:
        if stop.is_set():
            raise KeyboardInterrupt("stop requested")
        counts += store.upsert(conn, frame, run_id, now(), source_id)
        rows += len(frame)
        chunks += 1
    return counts, rows, chunks
