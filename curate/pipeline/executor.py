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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
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
        pending = {pool.submit(fn, p) for p in payloads}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, on_progress)
            for fut in done:
                yield fut.result()
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


def _drain(q, on_progress) -> None:
    while True:
        try:
            on_progress(q.get_nowait())
        except queue_mod.Empty:
            return


def _ignore(n_docs: int) -> None:
    pass
