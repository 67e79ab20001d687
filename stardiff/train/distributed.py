"""Data-parallel training across processes (``torchrun``): NCCL on GPUs, Gloo on CPUs.

Every rank builds the same *global* batch of ``batch_size × world`` rows from the same
seeded generator (cheap: a few random numbers per row) and trains on its own slice of it,
so ``N`` ranks × batch ``B`` follow the same trajectory as one process with batch
``N·B``; rank 0 alone writes checkpoints, metrics and the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "init_world", "rank_slice"]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_world(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns the world and the device this rank trains on (``cuda:LOCAL_RANK`` on GPUs).
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def rank_slice(n: int, world: World) -> slice:
    """This rank's contiguous share of ``n`` global rows (sizes differ by at most one)."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (world.rank < extra))
