"""Training-state checkpoints: safetensors for tensors, JSON for the rest, never pickle.

A checkpoint is a folder ``checkpoints/epoch-NNNN/`` holding

    model.safetensors       every weight except the frozen encoders (rebuilt from the seed
                            or their Hub id, and fingerprinted in state.json)
    optimizer.safetensors   optimiser state tensors; param groups and scalars in state.json
    rng-<rank>.safetensors  each process's torch / CUDA / NumPy generator states (+ rng-<rank>.json)
    state.json              epoch, best metric, patience counter, history, scaler, world size
    train_config.yaml       the run's config

Only the main process writes (the others' generator states are gathered to it), into a
``.partial`` folder and renamed into place, and only then does
``checkpoints/last.json`` point at it: an interrupted write never leaves a checkpoint
that resume would read.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gia_mic.utils import atomic_write_text

logger = logging.getLogger(__name__)

LAST = "last.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state without its frozen encoders (cloned, CPU, contiguous)."""
    frozen = tuple(f"encoders.{m}." for m in model.frozen_modalities())
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()
            if not k.startswith(frozen)}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Loads ``trainable_state`` output; every non-frozen key must match exactly."""
    expected = trainable_state(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=False)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Splits ``optimizer.state_dict()`` into tensors and JSON-ready metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().to("cpu").clone().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of ``optimizer_state``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = [{**g, **({"betas": tuple(g["betas"])} if "betas" in g else {})} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every generator this process uses, as tensors + JSON."""
    np_state = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    py = random.getstate()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(root: Path, name: str, *, is_main: bool, rng: Sequence[tuple[dict[str, torch.Tensor], dict[str, Any]]],
                    barrier: Callable[[], None], write_main: Callable[[Path], None], keep: int = 1) -> Path:
    """Writes a checkpoint folder atomically and points ``last.json`` at it (main process only).

    Args:
        root: The ``checkpoints`` folder.
        name: Folder name, e.g. ``epoch-0003``.
        is_main: This process writes; the others only wait.
        rng: Every process's ``rng_state()``, in rank order (gathered on the main process).
        barrier: Synchronises processes (``accelerator.wait_for_everyone``).
        write_main: Writes the model, optimiser and state files into the staging folder.
        keep: Newest checkpoints kept; older ones are deleted after the pointer moves.
    """
    staging, final = root / f".{name}.partial", root / name
    if is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for rank, (tensors, meta) in enumerate(rng):
            save_file(tensors, str(staging / f"rng-{rank}.safetensors"))
            atomic_write_text(staging / f"rng-{rank}.json", json.dumps(meta))
        write_main(staging)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        atomic_write_text(root / LAST, json.dumps({"checkpoint": name}) + "\n")
        old = sorted(p for p in root.glob("epoch-*") if p.is_dir() and p.name != name)
        for path in old[: max(0, len(old) - (keep - 1))]:
            shutil.rmtree(path, ignore_errors=True)
    barrier()
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The folder ``last.json`` points at, or ``None`` when there is none."""
    pointer = root / LAST
    if not pointer.is_file():
        return None
    path = root / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    if not (path / "state.json").is_file():
        raise RuntimeError(f"{pointer} points at {path}, which is not a complete checkpoint")
    return path


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Loads a safetensors file of a checkpoint."""
    return load_file(str(path))
