"""Executors run a function over a list of items: the runner's (stage, shard) tasks, and any
work a global step spreads over the run (``executor.map(fn, items)``). The local one uses
worker processes; a Ray executor (``curate.pipeline.ray_executor``) implements the same
interface. Executors know nothing of what the items are.

A task reports progress (documents done) through :func:`report_progress`, which
reaches the parent's progress bar whatever process the task runs in.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from curate.basics.errors import CurateError

_progress_sink: Callable[[int], None] | None = None


def report_progress(n_docs: int) -> None:
    """Tell the run's progress bar that ``n_docs`` more documents are done (any process)."""
    if _progress_sink is not None:
        _progress_sink(n_docs)


def set_progress_sink(sink: Callable[[int], None] | None) -> None:
    """Where :func:`report_progress` sends counts in this process (None: nowhere)."""
    global _progress_sink
    _progress_sink = sink


def _init_worker(q) -> None:
    global _progress_sink
    _progress_sink = q.put
    # Ctrl-C reaches every worker too: leave at once and quietly (the parent prints one line;
    # temporary files are swept and finished shards kept, so a rerun resumes).
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))


class Executor:
    """Runs ``fn(item)`` for every item and yields the results as they finish (in any order).
    ``fn`` and the items must pickle; ``on_progress`` receives the documents ``fn`` reports.
    ``distributed``: the items run on other machines (a global step may then spread work that
    is too big for one process over ``map``)."""

    workers: int = 1
    distributed: bool = False

    def map(self, fn: Callable[[Any], Any], items: list, on_progress: Callable[[int], None] | None = None
            ) -> Iterator[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """Worker processes on this machine (``workers`` of them; default: the CPU count).
    With one worker, or one task, everything runs in this process."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise CurateError("--workers must be at least 1")
        self._pool = None
        self._queue = None

    def map(self, fn, payloads, on_progress=None):
        on_progress = on_progress or _ignore
        if self.workers == 1 or len(payloads) <= 1:
            set_progress_sink(on_progress)
            try:
                for p in payloads:
                    yield fn(p)
            finally:
                set_progress_sink(None)
            return
        pool, q = self._ensure_pool()
        with _sigint_ignored():  # workers start here; they inherit the ignored Ctrl-C through exec
            pending = {pool.submit(fn, p) for p in payloads}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, on_progress)
            for fut in done:
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise CurateError("a worker process died (killed, out of memory or interrupted); "
                                      "rerun the same command to resume") from None
                yield result
        _drain(q, on_progress)

    def _ensure_pool(self):
        # One pool for the whole run: worker start-up (imports, model loading in setup) is paid once.
        if self._pool is None:
            ctx = mp.get_context("spawn")  # fork after pyarrow/torch threads start can deadlock
            self._queue = ctx.Queue()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self._queue,))
        return self._pool, self._queue

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class ThreadExecutor(Executor):
    """``workers`` threads in this process. For tasks whose work is pyarrow's, which releases the
    GIL (the runner's no-step JSONL -> Parquet tasks): they run in parallel as well as in worker
    processes, without starting any (about 1 s of imports on a loaded 2-core machine)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def map(self, fn, payloads, on_progress=None):
        on_progress = on_progress or _ignore
        lock = threading.Lock()

        def sink(n_docs: int) -> None:
            with lock:
                on_progress(n_docs)

        set_progress_sink(sink)
        try:
            with ThreadPoolExecutor(self.workers) as pool:
                for fut in as_completed([pool.submit(fn, p) for p in payloads]):
                    yield fut.result()
        finally:
            set_progress_sink(None)

    def close(self) -> None:
        pass


@contextmanager
def _sigint_ignored():
    """Ignore Ctrl-C while worker processes are started: a worker interrupted while still
    importing would print a traceback. ``_init_worker`` then makes Ctrl-C a quiet exit."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _drain(q, on_progress) -> None:
    while True:
        try:
            on_progress(q.get_nowait())
        except queue_mod.Empty:
            return


def _ignore(n_docs: int) -> None:
    pass
