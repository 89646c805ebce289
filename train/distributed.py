"""Process groups and model wrapping for ``torchrun --nproc_per_node N``.

One process per device. ``init`` reads torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK); without it everything runs in one process. ``wrap``
puts the model under DDP, or under FSDP2 (``fully_shard`` on each transformer
block, then the root) for models that do not fit one GPU. Both average
gradients over ranks; the trainer scales its loss to undo that average, so the
update equals one process with the same global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init(device: str | None = None) -> World:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPU), or
    return a single-process World. ``device``: "cpu", "cuda" or None (auto)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(rank, world_size, local_rank, dev)


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        # Leave together: a rank that tears down gloo while its peer is still talking to it can
        # abort the peer at exit ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(value: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over ranks (a no-op in one process)."""
    if world.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def wrap(model: torch.nn.Module, world: World, mode: str = "ddp", bf16: bool = False) -> torch.nn.Module:
    """Wrap for data parallelism. ``mode``: "ddp" or "fsdp" (FSDP2; with ``bf16`` it
    keeps float32 master weights and computes and reduces in bfloat16 / float32)."""
    if not world.distributed:
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [world.local_rank] if world.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
        kw = {"mp_policy": mp} if mp else {}
        for block in model.layers:
            fully_shard(block, **kw)
        fully_shard(model, **kw)
        return model
    raise ValueError(f"distributed mode must be 'ddp' or 'fsdp', not {mode!r}")
