"""The process group of a run: one process, torchrun on N GPUs, or several nodes (NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from .config import ConfigError


@dataclass
class Dist:
    """This process's place in the run: world size, rank, local rank (its GPU) and device."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def on(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.on:
            dist.barrier()


def setup_distributed() -> Dist:
    """Read torchrun's WORLD_SIZE / RANK / LOCAL_RANK, pick the device and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): start at "
                              "most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30),
                                **({"device_id": device} if cuda else {}))
    return Dist(world, rank, local, device)


def from_rank0(env: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (nodes need not share a disk: rank 0's run directory decides)."""
    if not env.on:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way into an epoch (``start`` samples of this rank skipped)."""

    start = 0

    def __iter__(self):
        it = super().__iter__()
        for _ in range(self.start):
            next(it, None)
        return it

    def __len__(self) -> int:
        return super().__len__() - self.start
