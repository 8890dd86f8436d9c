"""Several processes: which one this is, and splitting work between them.

Launchers (``torchrun``, ``accelerate launch``, ``mpirun``) tell each process its rank and the
world size through the environment (the variables ``accelerate`` reads). ``gia-mic evaluate``
under ``torchrun`` gives each process a contiguous share of the rows and gathers the shares
(gloo, on CPU as on GPU); the trainer (``train.distributed``) reads the same variables.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

WORLD_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_ENV = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
LOCAL_RANK_ENV = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK")


def _env_int(names: Sequence[str], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launch_world() -> int:
    """The number of processes the launcher started (1 without a launcher)."""
    return max(1, _env_int(WORLD_ENV, 1))


def launch_rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return _env_int(RANK_ENV, 0)


def launch_local_rank() -> int:
    """This process's rank on its machine (which GPU it takes)."""
    return _env_int(LOCAL_RANK_ENV, 0)


class Shards:
    """This process's share of a list of work, and the gathering of every share's result.

    Without a launcher it is a world of one (no process group, nothing imported). Under
    ``torchrun`` it joins the launch's process group with the gloo backend: the results
    gathered are small Python objects, and gloo needs no GPU.

    Args:
        timeout: How long a process waits for the others at ``gather`` (shares of long
            clips can finish far apart).
    """

    def __init__(self, timeout: datetime.timedelta = datetime.timedelta(hours=12)) -> None:
        self.rank, self.world = launch_rank(), launch_world()
        if self.world > 1:
            import torch.distributed as dist

            dist.init_process_group("gloo", timeout=timeout, rank=self.rank, world_size=self.world)
            logger.info("process %d of %d", self.rank, self.world)

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's contiguous share (the shares, in rank order, are ``items``)."""
        start, stop = len(items) * self.rank // self.world, len(items) * (self.rank + 1) // self.world
        return list(items[start:stop])

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order, on every process."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        """Leaves the process group."""
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def __enter__(self) -> Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
