"""Data-parallel training under ``torchrun``: process-group set-up, sharding, rank-0 writes.

The rank lives in a :class:`DistEnv` value passed to the training functions, never in module
globals, so one process can run a single-process and a distributed job side by side (tests do).
Every rank draws the same global batch from the same seeded permutation and takes every
``world_size``-th element of it; losses are normalised by the *global* batch size and DDP averages
gradients, so N processes take exactly the steps one process would (up to float summation order).

Example (one process; ``torchrun --nproc-per-node 2 script.py`` sets the environment for two):
    >>> from curation.stage1.distributed import env_from_environ
    >>> env = env_from_environ({})
    >>> env.world_size, env.is_main
    (1, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from curation.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a (possibly single-process) job.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        backend: ``gloo`` (CPU) or ``nccl`` (GPU); empty for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"Need 0 ≤ rank < world_size; got rank {self.rank}, world_size {self.world_size}.")

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, models and caches."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self) -> torch.device:
        """``cuda:<local_rank>`` with nccl, else CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


SINGLE = DistEnv()


def env_from_environ(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (what torchrun sets); pure, creates no group."""
    environ = os.environ if environ is None else environ
    try:
        world = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {e}.") from None
    backend = ("nccl" if torch.cuda.is_available() else "gloo") if world > 1 else ""
    return DistEnv(rank=rank, world_size=world, local_rank=local, backend=backend)


def init_distributed(environ: Mapping[str, str] | None = None, *, backend: str | None = None) -> DistEnv:
    """Join the process group described by the environment (no-op for one process).

    Args:
        backend: override the automatic choice (``gloo`` on CPU, ``nccl`` on GPU).
    """
    env = env_from_environ(environ)
    if backend is not None and env.distributed:
        if backend not in ("gloo", "nccl"):
            raise ConfigError(f"`backend` must be `gloo` or `nccl`; got {backend!r}.")
        env = DistEnv(rank=env.rank, world_size=env.world_size, local_rank=env.local_rank, backend=backend)
    if env.distributed and not dist.is_initialized():
        if env.backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend=env.backend, rank=env.rank, world_size=env.world_size)
    return env


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """This rank's part of a global batch of indices: every ``world_size``-th element."""
    return batch[env.rank :: env.world_size]


def wrap(module: nn.Module, env: DistEnv) -> nn.Module:
    """DistributedDataParallel around ``module`` when distributed; the module itself otherwise.

    Only parameters with ``requires_grad`` are synchronised; DDP broadcasts rank 0's weights at
    construction, so every rank starts identical even if initialisation differed.
    """
    if not env.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [env.local_rank] if env.backend == "nccl" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_sum(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over ranks (in place, returned for chaining); identity for one process."""
    if env.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value
