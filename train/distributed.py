"""Several processes: the launch's rank and world size, the run's ``Accelerator``, the batch split.

    torchrun --nproc_per_node 2 -m train --config train/configs/tiny.yaml --output-dir runs/ddp
    accelerate launch --multi_gpu --num_processes 2 -m train --config ... --output-dir ...

Launchers (``torchrun``, ``accelerate launch``, ``mpirun``) tell each process its rank and the
world size through the environment. On GPUs ``accelerate`` picks NCCL by itself; where no
device backend exists it silently runs every process as a world of one (each training on all
the data) unless asked for the CPU backend, so ``make_accelerator`` asks for it (gloo) whenever
a multi-process launch finds no accelerator.

``optim.batch_size`` is the *global* batch: with ``W`` processes each takes ``batch_size / W``
samples of every batch, and DDP averages their gradients, so a config trains the same model
on any number of processes (exactly, up to float rounding, when every batch splits evenly).
"""

from __future__ import annotations

import logging
import os

import torch

from gia_mic.configuration import ConfigError
from gia_mic.distributed import launch_world

logger = logging.getLogger(__name__)


def _device_backend_available() -> bool:
    """Whether ``accelerate`` finds a device backend for several processes (CUDA, XPU, NPU, ...)."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6 names every device backend
    if accelerator is None:
        return torch.cuda.is_available()
    return accelerator.is_available() and accelerator.current_accelerator().type != "mps"  # MPS: no DDP


def make_accelerator(mixed_precision: str = "no"):
    """An ``Accelerator`` for one run (state reset so several runs share a process).

    Under a multi-process launch without GPUs it uses the CPU backend (gloo), as
    ``accelerate launch --cpu`` / ``ACCELERATE_USE_CPU=1`` would; otherwise ``accelerate``
    chooses (NCCL on GPUs, one process without a launcher).
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import parse_flag_from_env

    if mixed_precision == "fp16" and not torch.cuda.is_available():
        logger.warning("mixed_precision fp16 needs a GPU; training in fp32 on CPU")
        mixed_precision = "no"
    world = launch_world()
    if world == 1 and parse_flag_from_env("ACCELERATE_USE_CPU") and "MASTER_PORT" in os.environ:
        logger.warning("accelerate launch --cpu starts a single process (several need an MPI hostfile); for "
                       "several CPU processes use torchrun or accelerate launch --multi_gpu (gloo without GPUs)")
    AcceleratorState._reset_state()
    GradientState._reset_state()
    accelerator = Accelerator(cpu=world > 1 and not _device_backend_available(), mixed_precision=mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if world > 1 and accelerator.num_processes == 1:  # never train N unaware copies on all the data
        raise RuntimeError(f"the launcher started {world} processes but accelerate runs this one alone "
                           f"({accelerator.distributed_type})")
    if world > 1:
        logger.info("process %d of %d (%s, %s)", accelerator.process_index, world, accelerator.distributed_type,
                    accelerator.device)
    return accelerator


def leave_process_group() -> None:
    """Ends this process's part in a multi-process run: exiting without it can abort in gloo's threads."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def per_process_batch(batch_size: int, world: int) -> int:
    """Each process's share of the global ``optim.batch_size``.

    Raises:
        ConfigError: The batch does not split evenly over the processes.
    """
    if batch_size % world:
        raise ConfigError(f"optim.batch_size {batch_size} is the global batch (all processes together): it must "
                          f"be a multiple of the {world} processes, e.g. {max(world, batch_size // world * world)}")
    return batch_size // world
