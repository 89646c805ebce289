"""Run pipeline tasks on a Ray cluster: ``curate run CONFIG --executor ray``.

Each (stage, shard) task of the runner becomes one Ray task. Tasks read their
input and write their output and completion marker straight to the files the
config names, so every node must see the inputs and the output folder at the
same path (a shared filesystem: NFS, Lustre, a mounted bucket) and have the
same version of ``curate`` installed. Nothing but the small task payloads and
result figures passes through Ray's object store.

A worker that dies mid-task (killed, out of memory, node lost) is retried by
Ray (``max_retries`` times); a task's files are written atomically and its
marker last, so a retry or a later rerun of the whole command sees either a
finished shard or none of it.
"""
from __future__ import annotations

import os
import socket
from typing import Callable, Iterator

import ray
from ray.exceptions import RayError, RayTaskError

from curate.basics.errors import CurateError
from curate.pipeline.executor import Executor, set_progress_sink


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens at (Ray itself retries for minutes)."""
    if not address or "://" in address or ":" not in address:
        return
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise CurateError(f"no Ray cluster at {address}: {e}; start one with `ray start --head` "
                          "and pass the address it prints") from None


@ray.remote(num_cpus=0)
class DocCounter:
    """Documents done so far per running task, for the progress bar. A retried task
    counts again from zero, so each task's figure is the most any attempt reported."""

    def __init__(self) -> None:
        self.done: dict[int, int] = {}

    def report(self, task: int, n_docs: int) -> None:
        self.done[task] = max(self.done.get(task, 0), n_docs)

    def counts(self) -> dict[int, int]:
        return self.done


def run_one(fn: Callable[[dict], dict], payload: dict, task: int, counter, cwd: str) -> tuple[int, dict]:
    """Body of a Ray task: ``fn(payload)`` with progress going to ``counter``.
    Returns (documents reported, result)."""
    # Relative paths in a config mean the driver's working directory; on a shared
    # filesystem that directory exists on every node.
    if os.path.isdir(cwd):
        os.chdir(cwd)
    done = 0

    def sink(n_docs: int) -> None:
        nonlocal done
        done += n_docs
        counter.report.remote(task, done)

    set_progress_sink(sink)
    try:
        result = fn(payload)
        return done, result
    finally:
        set_progress_sink(None)


class RayExecutor(Executor):
    """Ray tasks on a cluster.

    ``address``: the cluster to join (``ray://host:10001``, ``host:6379`` or
    ``auto``); default: the cluster in ``RAY_ADDRESS`` or a running local one,
    else a new local one. ``workers``: at most this many tasks at once
    (default: as many as the cluster's CPUs allow). ``cpus_per_task``: CPUs Ray
    reserves per task (default 1). ``max_retries``: retries of a task whose
    worker died (default 3).
    """

    distributed = True

    def __init__(self, workers: int | None = None, address: str | None = None,
                 cpus_per_task: float = 1.0, max_retries: int = 3) -> None:
        if workers is not None and workers < 1:
            raise CurateError("--workers must be at least 1")
        self._started = not ray.is_initialized()
        if self._started:
            _check_reachable(address)
            try:
                if address is None:
                    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
                else:
                    ray.init(address=address, configure_logging=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise CurateError(f"cannot reach a Ray cluster at {address or 'auto'}: {str(e).splitlines()[0]}") from None
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = min(workers, cluster_cpus) if workers else cluster_cpus
        self.in_flight = workers or None
        self.cpus_per_task, self.max_retries = cpus_per_task, max_retries

    def map(self, fn, payloads, on_progress=None) -> Iterator:
        if not payloads:
            return
        on_progress = on_progress or (lambda n_docs: None)
        counter = DocCounter.remote()
        task = ray.remote(run_one).options(num_cpus=self.cpus_per_task, max_retries=self.max_retries,
                                           retry_exceptions=False)
        fn_ref, cwd = ray.put(fn), os.getcwd()
        waiting = list(enumerate(payloads))[::-1]
        pending: dict = {}
        shown: dict[int, int] = {}  # documents passed to on_progress, per task still running

        def show(i: int, n_docs: int) -> None:
            if n_docs > shown.get(i, 0):
                on_progress(n_docs - shown.get(i, 0))
                shown[i] = n_docs

        try:
            while waiting or pending:
                while waiting and (self.in_flight is None or len(pending) < self.in_flight):
                    i, p = waiting.pop()
                    pending[task.remote(fn_ref, p, i, counter, cwd)] = i
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                running = set(pending.values())
                for i, n_docs in ray.get(counter.counts.remote()).items():
                    if i in running:
                        show(i, n_docs)
                for ref in done:
                    i = pending.pop(ref)
                    n_docs, result = self._result(ref, payloads[i])
                    show(i, n_docs)  # exact: the finished attempt's own count
                    shown.pop(i, None)
                    yield result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.kill(counter)

    def _result(self, ref, payload: dict) -> tuple[int, dict]:
        try:
            return ray.get(ref)
        except RayTaskError as e:
            if isinstance(e.cause, CurateError):  # a user error: its one line, as with the local executor
                raise e.cause from None
            raise  # anything else: Ray's error carries the worker's traceback
        except RayError as e:
            where = (f"stage {payload.get('stage')} shard {payload.get('shard', {}).get('index')}"
                     if isinstance(payload, dict) and "stage" in payload else f"task {payload!r:.60}")
            raise CurateError(f"{where} failed on the Ray cluster after {self.max_retries} retries "
                              f"({type(e).__name__}); rerun the same command to resume") from None

    def close(self) -> None:
        if self._started and ray.is_initialized():
            ray.shutdown()
