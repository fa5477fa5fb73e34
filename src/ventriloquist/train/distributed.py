"""Data-parallel training under ``torchrun`` (DistributedDataParallel: gloo on CPU, nccl on GPUs).

Every global batch is fixed by the seed alone, and each process trains on its own slice of it:
either it draws the whole batch from the shared seeded stream and keeps its slice (Sp2Emo and
Exp2Emo, whose items are precomputed rows), or it draws only its own items, each from a stream of
its own (``World.streams``: the generator, whose items are cut and augmented on the fly, so that
work is split rather than repeated). DDP averages the gradients, so a step is the single-process step on the whole batch
(exactly, for the per-sample means of equal slices; BatchNorm statistics and batch-level terms are
per slice) whatever the number of processes. A checkpoint holds the global state (model,
optimiser, random streams): rank 0 alone writes it, and it resumes on any number of processes.

    torchrun --nproc_per_node 2 -m ventriloquist.cli train generator --config configs/generator.toml
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Only the main process writes checkpoints, logs, metrics and published weights."""
        return self.rank == 0

    def part(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This process's slice (along dim 0) of each tensor of a global batch: equal slices when the
        batch divides by the number of processes (then a step is exactly the single-process one),
        else sizes one apart (an epoch's last, short batch)."""
        if self.size == 1:
            return tensors
        a, b = self.span(len(tensors[0]))
        return tuple(t[a:b] for t in tensors)

    def span(self, n: int) -> tuple[int, int]:
        """The items ``[a, b)`` of an ``n``-item global batch that are this process's."""
        if n < self.size:
            raise InputError(f"a batch of {n} cannot feed {self.size} training processes; choose a batch size "
                             f"of at least {self.size}, best a multiple of it (--nproc_per_node)")
        return self.rank * n // self.size, (self.rank + 1) * n // self.size

    def streams(self, seed: int, batch: int, n: int) -> list[np.random.Generator]:
        """The random streams of this process's items of global batch number ``batch`` (``n`` items).

        Item ``i`` draws from a stream seeded by ``(seed, batch, i)`` alone: which clip, window and
        augmentation it gets is the same whatever the number of processes, each process draws only
        its own items, and a resumed run needs no saved random state to continue the same batches.
        """
        a, b = self.span(n)
        return [np.random.default_rng((seed, batch, i)) for i in range(a, b)]

    def mean(self, values: torch.Tensor, count: int) -> torch.Tensor:
        """This slice's share of a mean over ``count`` items of the global batch, scaled so that DDP's
        average of the processes' gradients is the gradient of that mean: for means over a subset of
        the batch (the labelled items, say), which the slices hold unequal shares of."""
        return values.sum() * (self.size / max(count, 1))

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DistributedDataParallel when there are several processes, else itself; either
        way the parameters are ``model``'s, so checkpoints and the EMA read the plain module."""
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model)

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


def join(device: str = "cpu") -> World:
    """The training world torchrun set up (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` ...), joined once; a
    plain run is rank 0 of 1."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def leave() -> None:
    """End the process group (a no-op without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
