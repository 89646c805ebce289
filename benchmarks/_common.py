"""Shared by the benchmark scripts: a one-line description of the machine they ran on."""
from __future__ import annotations

import os
import platform


def machine() -> str:
    """CPU model, cores, memory, Python, and torch/GPU where torch is importable."""
    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    torch_part = ""
    try:
        import torch

        gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
        torch_part = f", torch {torch.__version__} with {torch.get_num_threads()} threads{gpu}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}{torch_part}"
