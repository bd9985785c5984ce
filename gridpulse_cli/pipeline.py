"""fetch -> normalize -> load, in chunks, recorded in the run ledger.

A chunk is one route, one facet set and one time slice; it is fetched completely and committed
atomically (its EIA responses archived, its observations upserted), so a failure never leaves
half a chunk behind and a re-run simply repeats the chunks that did not commit.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np
import pandas as pd

from gridpulse_cli.catalog import REGION_DATA, Route, routes_for
from gridpulse_cli.eia import PAGE_SIZE, EIAClient, Page
from gridpulse_cli.errors import DatabaseError, GridpulseError, Interrupted
from gridpulse_cli.normalize import normalize_rows, read_observations_csv
from gridpulse_cli.stopping import StopSignal
from gridpulse_cli.store import LoadCounts, Store
from gridpulse_cli.text import plural, short_list
from gridpulse_cli.windows import HOUR, Window, split_window

log = logging.getLogger(__name__)

# How often a writing run looks for a stop request while it waits for fetches.
POLL_SECONDS = 0.2
# How long a stopping run waits for its fetch threads; only one stuck in a network read can
# take longer, and fetch threads never touch the database.
JOIN_SECONDS = 5.0

# Rough rows per hour per area, used only to size time slices to whole pages.
_ROWS_PER_AREA_HOUR = {"fuel-type-data": 12, "interchange-data": 12, "region-sub-ba-data": 25}


@dataclass(frozen=True)
class Chunk:
    """One unit of fetching and committing."""

    route: Route
    facets: dict[str, list[str]]
    window: Window

    def describe(self) -> str:
        areas = short_list(self.facets.get(self.route.area_facet, []))  # `--ba all`: not 60 codes
        return f"{self.route.name} {areas} {self.window}"


def plan_chunks(
    bas: Sequence[str], datasets: Sequence[str], window: Window, pages_per_chunk: int = 4
) -> list[Chunk]:
    """Split a request into route/time-slice chunks of about `pages_per_chunk` full pages."""
    chunks: list[Chunk] = []
    for route, type_codes in routes_for(datasets):
        facets: dict[str, list[str]] = {route.area_facet: list(bas)}
        if route is REGION_DATA:
            facets["type"] = type_codes
            per_area = len(type_codes)
        else:
            per_area = _ROWS_PER_AREA_HOUR[route.name]
        slice_hours = max(1, pages_per_chunk * PAGE_SIZE // max(1, per_area * len(bas)))
        chunks.extend(Chunk(route, facets, part) for part in split_window(window, slice_hours))
    return chunks


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
    """A page ready to commit: its observations, and its body gzipped for the archive."""

    page: Page
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
                page,
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
                rows = sum(len(p.page.rows) for p in pages)
                store.mark_chunk(conn, ledger_key[0], ledger_key[1], run_id, rows, now)
            for prepared in pages:
                page = prepared.page
                fetched += len(page.rows)
                source_id = store.archive(
                    conn,
                    run_id,
                    "eia-response",
                    page.route,
                    page.params,
                    prepared.body_gzip,
                    len(page.rows),
                    prepared.sha256,
                    page.fetched_at,
                )
                parts.append(prepared.observations)
                sources.append(np.full(len(prepared.observations), source_id, dtype=np.int64))
        if parts:
            frame = pd.concat(parts, ignore_index=True)
            source_ids = pd.Series(np.concatenate(sources))
            keep = ~frame.duplicated(["series_id", "period_end_utc"], keep="first")
            counts += store.upsert(conn, frame[keep], run_id, now, source_ids[keep].reset_index(drop=True))
        if run_id is not None:
            store.add_run_progress(conn, run_id, fetched, counts)
    return counts


@dataclass
class RunReport:
    """What a run did; printed as the summary line and stored in the ledger."""

    run_id: int | None = None
    chunks: int = 0
    fetched: int = 0
    counts: LoadCounts = field(default_factory=LoadCounts)
    requests: int = 0
    retries: int = 0
    elapsed: float = 0.0
    status: str = "ok"

    def summary(self) -> str:
        c = self.counts
        rate = self.fetched / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"run {self.run_id} {self.status}: {plural(self.chunks, 'chunk')}, "
            f"{plural(self.fetched, 'row')} fetched, {c.inserted:,} inserted, {c.revised:,} revised, "
            f"{c.unchanged:,} unchanged; {plural(self.requests, 'request')}, "
            f"{plural(self.retries, 'retry', 'retries')}, {self.elapsed:.1f} s ({rate:,.0f} rows/s)"
        )

    def log_fields(self) -> dict[str, Any]:
        """The summary's numbers as structured log fields (`extra=`; keys in logs.LOG_FIELDS)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "chunks": self.chunks,
            "rows_fetched": self.fetched,
            "inserted": self.counts.inserted,
            "revised": self.counts.revised,
            "unchanged": self.counts.unchanged,
            "requests": self.requests,
            "retries": self.retries,
            "elapsed_s": round(self.elapsed, 1),
        }


@dataclass(frozen=True)
class ChunkDone:
    """Progress event after each committed chunk."""

    chunk: Chunk
    index: int
    total: int
    rows: int
    report: RunReport


ProgressCallback = Callable[[ChunkDone], None]


def run_chunks(
    store: Store,
    client: EIAClient,
    chunks: Sequence[Chunk],
    report: RunReport,
    *,
    workers: int = 1,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: ProgressCallback | None = None,
    ledger: Callable[[Chunk], tuple[str, str]] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Fetch chunks with up to `workers` threads; commit each one here, as it arrives.

    At most 2 x workers chunks are fetched or waiting at once, so memory does not grow with the
    number of chunks. All threads share the client's rate limiter. When `stop` is set (a
    signal), the run raises KeyboardInterrupt between commits, never inside one; on every exit
    path the fetch threads are cancelled and joined first.
    """
    started = time.monotonic()
    warned: set[str] = set()
    pending = iter(chunks)
    in_flight: dict[Future[list[PreparedPage]], Chunk] = {}
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gridpulse-fetch")

    def submit_next() -> None:
        chunk = next(pending, None)
        if chunk is not None:
            in_flight[pool.submit(fetch_and_prepare, client, chunk, warned, cancel)] = chunk

    try:
        for _ in range(2 * max(1, workers)):
            submit_next()
        while in_flight:
            wait(in_flight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt("stop requested")
            arrived, failure = _collect(in_flight)
            if arrived:
                batch = [(pages, ledger(chunk) if ledger else None) for chunk, pages in arrived]
                report.counts += commit_chunks(store, report.run_id, batch, now())
                for chunk, pages in arrived:
                    rows = sum(len(p.page.rows) for p in pages)
                    report.fetched += rows
                    report.chunks += 1
                    _sync_stats(report, client, started)
                    if progress:
                        progress(ChunkDone(chunk, report.chunks, len(chunks), rows, report))
                    submit_next()
            if failure is not None:
                raise failure
    finally:
        _stop_fetches(pool, in_flight, cancel)
        _sync_stats(report, client, started)


def _collect(
    in_flight: dict[Future[list[PreparedPage]], Chunk],
) -> tuple[list[tuple[Chunk, list[PreparedPage]]], BaseException | None]:
    """Take the finished fetches out of `in_flight`: what arrived, and the first failure."""
    failure: BaseException | None = None
    arrived: list[tuple[Chunk, list[PreparedPage]]] = []
    for future in [f for f in in_flight if f.done()]:
        chunk = in_flight.pop(future)
        error = future.exception()
        if error is not None:
            failure = failure or error  # commit what did arrive before giving up
        else:
            arrived.append((chunk, future.result()))
    return arrived, failure


def _stop_fetches(
    pool: ThreadPoolExecutor, in_flight: dict[Future[list[PreparedPage]], Chunk], cancel: threading.Event
) -> None:
    """Cancel queued fetches, wake waiting ones (limiter, backoff) and join the threads.

    Only a thread inside a network read can outlast JOIN_SECONDS; it is left to finish on its
    own (it never writes), and the process does not wait for it at exit.
    """
    cancel.set()
    pool.shutdown(wait=False, cancel_futures=True)
    running = [f for f in in_flight if not f.cancelled()]
    _finished, still = wait(running, timeout=JOIN_SECONDS)
    if still:
        log.debug("%d fetch thread(s) still in a network read; not waiting for them", len(still))
        return
    pool.shutdown(wait=True)


def run_recorded(
    store: Store,
    client: EIAClient,
    command: str,
    bas: Sequence[str],
    datasets: Sequence[str],
    window: Window,
    chunks: Sequence[Chunk],
    *,
    workers: int = 1,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: ProgressCallback | None = None,
    ledger: Callable[[Chunk], tuple[str, str]] | None = None,
    stop: StopSignal | None = None,
) -> RunReport:
    """run_chunks inside the run ledger: the run is recorded ok, failed or interrupted."""

    def interrupted(r: RunReport) -> str:
        return (
            f"interrupted after {plural(r.chunks, 'committed chunk')} (run {r.run_id}); "
            "committed chunks are kept, re-run to continue"
        )

    with recorded_run(store, command, window, bas, datasets, now, stop, interrupted) as (report, requested):
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
            progress=progress,
            ledger=ledger,
            stop=requested,
        )
    return report


def run_ingest(
    store: Store,
    client: EIAClient,
    bas: Sequence[str],
    datasets: Sequence[str],
    window: Window,
    *,
    command: str = "ingest",
    workers: int = 1,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: ProgressCallback | None = None,
    stop: StopSignal | None = None,
) -> RunReport:
    """Fetch, normalize and load every chunk of the window; record the run in the ledger."""
    chunks = plan_chunks(bas, datasets, window)
    return run_recorded(
        store,
        client,
        command,
        bas,
        datasets,
        window,
        chunks,
        workers=workers,
        now=now,
        progress=progress,
        stop=stop,
    )


@contextmanager
def recorded_run(
    store: Store,
    command: str,
    window: Window | None,
    bas: Sequence[str],
    datasets: Sequence[str],
    now: Callable[[], datetime],
    stop: StopSignal | None,
    interrupted: Callable[[RunReport], str],
) -> Iterator[tuple[RunReport, threading.Event]]:
    """A run in the ledger, from `running` to ok, failed (a GridpulseError) or interrupted.

    From before the ledger row exists until its outcome is recorded, a signal only sets the
    yielded event (the block polls it between commits); once the outcome is recorded, a signal
    changes nothing. An interrupt is re-raised as Interrupted with the message `interrupted` makes.
    """
    stop = stop or StopSignal()  # a private one nobody signals: library callers and tests
    with stop.polling() as requested:
        report = RunReport(run_id=store.start_run(command, window, bas, datasets, now()))
        started = time.monotonic()
        try:
            yield report, requested
        except (GridpulseError, KeyboardInterrupt) as exc:
            stopped = isinstance(exc, KeyboardInterrupt | Interrupted)
            report.status = "interrupted" if stopped else "failed"
            report.elapsed = time.monotonic() - started
            message = interrupted(report) if stopped else str(exc) or type(exc).__name__
            _record_failure(store, report, now(), message)  # the ledger says what the operator saw
            stop.finish()
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(message) from None
            raise
        report.elapsed = time.monotonic() - started
        record_finish(store, report, now())
        stop.finish()


def _record_failure(store: Store, report: RunReport, now: datetime, error: str) -> None:
    """Record a failed or interrupted run; if the database itself is gone, say so and go on
    (the original error is the one to report; the next writer closes the run)."""
    try:
        record_finish(store, report, now, error=error)
    except DatabaseError as exc:
        log.warning("could not record run %s as %s: %s", report.run_id, report.status, exc)


def _sync_stats(report: RunReport, client: EIAClient, started: float) -> None:
    report.requests, report.retries = client.stats.requests, client.stats.retries
    report.elapsed = time.monotonic() - started


def record_finish(store: Store, report: RunReport, now: datetime, error: str | None = None) -> None:
    """Write the run's outcome and counts to its ledger row."""
    if report.run_id is None:
        return
    store.finish_run(
        report.run_id,
        report.status,
        now,
        fetched=report.fetched,
        counts=report.counts,
        requests=report.requests,
        retries=report.retries,
        error=error,
        elapsed_s=report.elapsed,
    )


# ---- load: observation CSV -> database ---------------------------------------------------


class _CompressingReader(io.TextIOBase):
    """Passes a text stream through while gzip-compressing what was read, for the audit archive."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
        self._parts: list[bytes] = []
        self._sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def _keep(self, text: str) -> str:
        data = text.encode()
        self._sha.update(data)
        self._parts.append(self._compressor.compress(data))
        return text

    def read(self, size: int | None = -1) -> str:
        return self._keep(self._stream.read(-1 if size is None else size))

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return self._keep(self._stream.readline(-1 if size is None else size))

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.readline, "")

    def finish(self) -> tuple[bytes, str]:
        """The gzipped input and its sha256."""
        return b"".join([*self._parts, self._compressor.flush()]), self._sha.hexdigest()


def run_load(
    store: Store,
    stream: IO[str],
    source_name: str,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    chunk_rows: int = 200_000,
    stop: StopSignal | None = None,
) -> RunReport:
    """Upsert an observation CSV, streamed in chunks, in ONE transaction: a malformed row anywhere
    leaves nothing behind. The input is archived (gzipped) as the rows' source."""
    reader = _CompressingReader(stream)
    with recorded_run(
        store,
        f"load {source_name}",
        None,
        [],
        [],
        now,
        stop,
        lambda _: "interrupted; nothing was loaded (re-run to load)",
    ) as (report, requested):
        with store.transaction() as conn:
            source_id = store.archive(
                conn,
                report.run_id,
                "load-input",
                "observations-csv",
                {"input": source_name},
                b"",  # filled in below, once the whole input has been read
                0,
                "",
                now(),
            )
            counts, fetched = LoadCounts(), 0
            for frame in read_observations_csv(reader, source_name, chunk_rows):  # type: ignore[arg-type]
                if requested.is_set():
                    raise KeyboardInterrupt("stop requested")  # rolls the whole load back
                counts += store.upsert(conn, frame, report.run_id, now(), source_id)
                fetched += len(frame)
                report.chunks += 1
            body, sha = reader.finish()
            store.complete_archive(conn, source_id, body, sha, fetched)
        report.counts, report.fetched = counts, fetched  # only once committed
    return report
