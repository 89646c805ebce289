"""Run the cells of a Grid in parallel: one worker process per device, or one Ray task per cell.

    run_cells(cell, todo, write, workers=2, devices=None)    local worker processes
    run_cells_ray(cell, todo, write, address=None)            Ray tasks, one GPU each where there are GPUs

``cell(arm, seed) -> dict`` is the same function the sequential grid calls; ``todo`` the
``(arm, seed)`` cells still to run; ``write(arm, seed, result)`` stores a finished result (the
grid writes it atomically), called in the parent as each cell finishes.

Local: each cell runs in its own process, at most ``workers`` at a time, pinned to a device
(``devices``: e.g. ["cuda:0", "cuda:1"]; default every visible GPU, else "cpu" for each worker).
On CPU the process is forked, inheriting the cell and its model without copying; with GPUs it is
spawned (CUDA cannot be forked) and receives the cell pickled, then moves it to its device with
``cell.to(device)`` when the cell has that method. A cell trains with its own seed whatever
process runs it, so results equal a sequential run's. A worker that dies loses only its own
cell: the others finish and are written, and a rerun resumes just the lost one.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import time
import traceback
from typing import Callable

from curate.basics.errors import CurateError


def default_devices(workers: int) -> list[str]:
    """One device per worker: the visible GPUs in turn, or "cpu" for every worker without GPUs."""
    import torch

    n = torch.cuda.device_count()
    return [f"cuda:{i % n}" for i in range(workers)] if n else ["cpu"] * workers


def _child(cell, arm: str, seed: int, device: str, conn) -> None:
    """Worker process body: pin to ``device``, run the cell, send back the pickled result or error."""
    try:
        import torch

        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        else:
            torch.set_num_threads(1)  # n workers share the cores
        if hasattr(cell, "to"):
            cell = cell.to(device)
        conn.send_bytes(pickle.dumps(("ok", cell(arm, seed))))
    except BaseException as e:  # reported to the parent, which keeps the other cells going
        conn.send_bytes(pickle.dumps(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")))
    finally:
        conn.close()


def run_cells(cell: Callable, todo: list[tuple[str, int]], write: Callable, workers: int = 2,
              devices: list[str] | None = None, quiet: bool = True, label: str = "grid") -> None:
    """Run ``todo`` cells in at most ``workers`` processes at once, each pinned to a device.
    Raises CurateError after the others finish when any cell failed (its arm named)."""
    devices = devices or default_devices(workers)
    ctx = mp.get_context("spawn" if any(d.startswith("cuda") for d in devices) else "fork")
    free, running, failed, queue = list(devices[:workers]), {}, [], list(todo)
    while queue or running:
        while queue and free:
            arm, seed = queue.pop(0)
            device = free.pop(0)
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(cell, arm, seed, device, send), daemon=True)
            proc.start()
            send.close()
            running[proc.sentinel] = (proc, recv, arm, seed, device)
            if not quiet:
                print(f"[{label}] training {arm} seed {seed} on {device}", flush=True)
        ready = mp.connection.wait(list(running) + [r[1] for r in running.values()])
        for key in [k for k, (p, recv, *_) in running.items() if k in ready or recv in ready]:
            proc, recv, arm, seed, device = running.pop(key)
            status, payload = _receive(recv, proc)
            proc.join()
            free.append(device)
            if status == "ok":
                write(arm, seed, payload)
            else:
                failed.append(f"{arm} seed {seed}: {payload.splitlines()[0]}")
    if failed:
        raise CurateError(f"{len(failed)} cell(s) failed (rerun to retry them; the others are kept): "
                          + "; ".join(failed))


def _receive(recv, proc) -> tuple[str, object]:
    """The child's (status, payload); a child that died without answering is an error."""
    try:
        return pickle.loads(recv.recv_bytes())
    except (EOFError, OSError):
        proc.join()
        return "error", f"worker died (exit code {proc.exitcode})"
    finally:
        recv.close()


def run_cells_ray(cell: Callable, todo: list[tuple[str, int]], write: Callable, address: str | None = None,
                  quiet: bool = True, label: str = "grid") -> None:
    """Run each cell as a Ray task asking for one GPU when the cluster has GPUs (else one CPU);
    results are written as tasks finish. ``address``: an existing cluster (None: start one locally)."""
    try:
        import ray
    except ImportError:
        raise CurateError("--executor ray needs ray (pip install 'curate[ray]')") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=not quiet)
    try:
        failed = _run_ray_tasks(cell, todo, write, quiet, label)
    finally:
        if started:  # leave no Ray runtime behind us in this process (a later ray.init would fail)
            ray.shutdown()
    if failed:
        raise CurateError(f"{len(failed)} cell(s) failed (rerun to retry them; the others are kept): "
                          + "; ".join(failed))


def _run_ray_tasks(cell: Callable, todo: list[tuple[str, int]], write: Callable, quiet: bool,
                   label: str) -> list[str]:
    """Submit every cell, write each result as it arrives; the failures, one line each."""
    import ray

    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    ref = ray.put(cell)

    @ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)
    def task(cell, arm, seed):
        device = "cuda" if gpus else "cpu"
        cell = cell.to(device) if hasattr(cell, "to") else cell
        return cell(arm, seed)

    pending = {task.remote(ref, arm, seed): (arm, seed) for arm, seed in todo}
    failed = []
    t0 = time.perf_counter()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        arm, seed = pending.pop(done[0])
        try:
            write(arm, seed, ray.get(done[0]))
            if not quiet:
                print(f"[{label}] {arm} seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        except Exception as e:  # a failed task loses only its own cell
            failed.append(f"{arm} seed {seed}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return failed
