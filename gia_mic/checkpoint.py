"""Self-contained safetensors checkpoints: resolve, save atomically, load strictly.

A checkpoint directory holds ``config.json`` (the model config, encoders' own configs
included), ``model.safetensors`` (every weight) and the processor folders. Pickle
weights are never read.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gia_mic.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.md", "*/*.json", "*/*.txt", "*/*.model"]

logger = logging.getLogger(__name__)

EMBEDDED_DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "gia-mic-lite"
"""The real model that ships with the project (see the README)."""


def default_model() -> str:
    """``$GIA_MIC_MODEL`` if set, else the embedded default checkpoint.

    Raises:
        CheckpointError: neither is available.
    """
    chosen = os.environ.get("GIA_MIC_MODEL")
    if chosen:
        return chosen
    if (EMBEDDED_DEFAULT / CONFIG_NAME).exists():
        return str(EMBEDDED_DEFAULT)
    raise CheckpointError(f"no model given and the embedded default {EMBEDDED_DEFAULT} is missing: pass "
                          "--model DIR_OR_ORG/NAME (or set GIA_MIC_MODEL), e.g. a checkpoint made by `python -m train`")


def resolve(name_or_path: str | Path, *, revision: str | None = None, **hub_kwargs: object) -> Path:
    """Local directory of a checkpoint: the path itself, or a Hub snapshot (safe files only).

    Raises:
        CheckpointError: missing directory, unreachable Hub with no cached copy, or no repo.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise CheckpointError(f"checkpoint not found: {name!r} is neither a checkpoint directory nor a Hub "
                              "repo id of the form 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=ALLOW_PATTERNS, **hub_kwargs))
    except RevisionNotFoundError:
        raise CheckpointError(f"model repo {name!r} has no revision {revision!r} (a branch, tag or commit); "
                              "check the branch name, e.g. 'main' or 'fold-1'") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"no model repo {name!r} on the Hub (or it is private: log in with `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"cannot load {name!r}@{revision or 'main'}: the Hub is unreachable (offline) and there is no cached "
            f"copy. Fix: connect once so it is cached, run `hf download {name}` and pass the local folder, or "
            "pass a local checkpoint directory."
        ) from None
    except (HfHubHTTPError, OSError) as err:
        raise CheckpointError(f"cannot download {name!r}@{revision or 'main'}: {err}") from None


def _weights_file(directory: Path) -> Path:
    weights = directory / WEIGHTS_NAME
    if not weights.exists():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(f"{directory} has pickle weights ({', '.join(pickles)}) and no {WEIGHTS_NAME}: "
                                  "pickle files can run code when loaded and are refused; convert them to safetensors")
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}")
    return weights


def _corrupt(weights: Path, err: Exception) -> CheckpointError:
    return CheckpointError(f"{weights} is truncated or not a safetensors file ({err}); re-download or re-save it")


def check_weights_header(directory: Path, expected: dict[str, torch.Tensor]) -> None:
    """Compares ``model.safetensors``' header (names, shapes, dtypes) with the model's state dict.

    Runs before any weight is read or allocated, so a config that asks for a huge model, or a
    file whose tensors do not fit it, is refused cheaply. ``expected`` may live on the ``meta``
    device. Float tensors must be stored as floats (or as int8 with a row scale).

    Raises:
        CheckpointError: naming the mismatching or wrongly typed keys.
    """
    from safetensors import safe_open

    weights = _weights_file(directory)
    try:
        with safe_open(str(weights), "pt") as handle:
            stored = {k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise _corrupt(weights, err) from None
    scales = {k[: -len(SCALE_SUFFIX)]: v for k, v in stored.items() if k.endswith(SCALE_SUFFIX)}
    stored = {k: v for k, v in stored.items() if not k.endswith(SCALE_SUFFIX)}
    bad_dtype = []
    for key, (shape, dtype) in stored.items():
        want = expected.get(key)
        if want is None or not want.is_floating_point():
            continue
        if dtype == "I8" and key in scales:
            if len(shape) != 2 or scales[key][0] != shape[:1]:
                raise CheckpointError(f"{weights}: the int8 scale of {key} has shape {scales[key][0]}; expected "
                                      f"({shape[0]},) for an int8 {shape} tensor")
        elif dtype not in _FLOAT_DTYPES:
            bad_dtype.append(f"{key} ({dtype})")
    if bad_dtype:
        raise CheckpointError(f"{weights}: float weights stored as other types, refused: {_listing(bad_dtype)}")
    _report_mismatch({k: tuple(v.shape) for k, v in expected.items()}, {k: v[0] for k, v in stored.items()}, directory)


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" … (+{len(keys) - 8} more)" if len(keys) > 8 else "")


def _report_mismatch(expected: dict[str, tuple], stored: dict[str, tuple], source: Path) -> None:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    shapes = sorted(k for k in set(expected) & set(stored) if tuple(expected[k]) != tuple(stored[k]))
    problems = [f"{label}: {_listing(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if keys]
    if problems:
        raise CheckpointError(f"weights in {source} do not match the model built from its config.json: "
                              + "; ".join(problems))


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Reads ``model.safetensors``, refusing pickles, non-finite values and corrupt files."""
    weights = _weights_file(directory)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise _corrupt(weights, err) from None
    try:
        state = dequantize(state)
    except ValueError as err:
        raise CheckpointError(f"{weights}: {err}") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{weights}: weights with NaN or Inf values, refused: {_listing(bad)}")
    return state


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Loads ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error."""
    expected = model.state_dict()
    _report_mismatch({k: tuple(v.shape) for k, v in expected.items()}, {k: tuple(v.shape) for k, v in state.items()},
                     source)
    model.load_state_dict(state, strict=True)  # copies cast stored fp16 back to the compute dtype


def write_directory(directory: Path, writer) -> None:
    """Runs ``writer(staging_dir)`` then moves each file into ``directory`` atomically.

    An interrupted save never leaves a half-written file in ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.partial-"))
    try:
        writer(staging)
        for src in sorted(staging.rglob("*"), key=lambda p: (p.name == CONFIG_NAME, str(p))):
            if src.is_file():
                dst = directory / src.relative_to(staging)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


SCALE_SUFFIX = ".__int8_row_scale__"
QUANTIZE_MIN_ELEMENTS = 1_000_000  # only embedding-table-sized matrices: smaller ones lose accuracy for little size


def save_weights(model: torch.nn.Module, path: Path, dtype: torch.dtype | None = None,
                 quantize: str | None = None) -> None:
    """Writes every parameter and buffer as safetensors.

    Args:
        model: The module to save.
        path: Target ``.safetensors`` file.
        dtype: Optional storage dtype for floating tensors (e.g. ``torch.float16``).
        quantize: ``"int8"`` stores each 2-D weight of at least ``QUANTIZE_MIN_ELEMENTS`` as int8 with one float scale per
            row (symmetric, absmax / 127); ``read_weights`` restores float tensors.
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if quantize and v.is_floating_point() and v.ndim == 2 and v.numel() >= QUANTIZE_MIN_ELEMENTS:
            scale = v.float().abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (rows,)
            state[k] = torch.round(v.float() / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            state[k + SCALE_SUFFIX] = scale.to(dtype or torch.float32).contiguous()
            continue
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.clone().contiguous()
    save_file(state, str(path), metadata={"format": "pt"})


def dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turns int8 + row-scale pairs written by ``save_weights(quantize="int8")`` back into floats.

    Raises:
        ValueError: a scale that does not belong to a 2-D int8 tensor with one scale per row.
    """
    out = {}
    for k, v in state.items():
        if k.endswith(SCALE_SUFFIX):
            if k[: -len(SCALE_SUFFIX)] not in state:
                raise ValueError(f"scale {k} has no int8 tensor")
            continue
        scale = state.get(k + SCALE_SUFFIX)
        if scale is not None and (v.dtype != torch.int8 or v.ndim != 2 or tuple(scale.shape) != (v.shape[0],)):
            raise ValueError(f"the int8 scale of {k} has shape {tuple(scale.shape)}; expected ({v.shape[0]},) "
                             f"for an int8 {tuple(v.shape)} tensor")
        out[k] = v.float() * scale.float()[:, None] if scale is not None else v
    return out
