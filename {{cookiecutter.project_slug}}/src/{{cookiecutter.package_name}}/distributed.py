"""torchrun support: the process group comes from the environment torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...); without torchrun, a group of one that does nothing."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The one process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of `values` over every process."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: int, device: torch.device) -> list[int]:
        """`value` of every process, by rank."""
        if not self.distributed:
            return [value]
        mine = torch.tensor([value], dtype=torch.int64, device=device)
        everyone = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(everyone, mine)
        return [int(t.item()) for t in everyone]

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether `flag` is true in any process: every process takes the same branch after it."""
        if not self.distributed:
            return flag
        return self.sum([float(flag)], device)[0] > 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def launched() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(use_cuda: bool) -> Group:
    """Join the process group torchrun describes: NCCL on CUDA, gloo on the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Group()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Group(rank=dist.get_rank(), local_rank=local_rank, world_size=world_size)


def leave(group: Group, finished: bool) -> None:
    """Destroy the process group, so that its threads stop before the interpreter does (a gloo
    group left to process exit aborts it now and then: `terminate called without an active
    exception`). After a finished run every rank waits for the others first; after a failure
    only gloo's group is destroyed, since NCCL's teardown can wait for peers that still run."""
    if not (group.distributed and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    elif dist.get_backend() == "nccl":
        return
    dist.destroy_process_group()


def exit_worker(status: int) -> NoReturn:
    """End a torchrun worker once its work is done and written, without the interpreter's
    finalization. DistributedDataParallel keeps references to the process group that
    destroy_process_group cannot drop (torch 2.13: gloo's three threads still run after it;
    destroying a group only forgets it, pytorch/pytorch#96017), and finalizing the interpreter
    beside those threads aborts the process now and then (`terminate called without an active
    exception`, about 1 run in 20 on CPU, docs/torchrun-stress.md of the template). Nothing is
    left to do at that point but flush the logs."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
