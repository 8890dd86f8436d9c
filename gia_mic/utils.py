"""Small shared helpers: atomic file and directory writes, strict JSON, device selection."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves the old
    file (if any) untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Writes UTF-8 text atomically (see ``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_directory(directory: Path, writer, *, last: str = "config.json") -> None:
    """Runs ``writer(staging_dir)`` then moves each file into ``directory`` atomically.

    An interrupted save never leaves a half-written file in ``directory``; the file named
    ``last`` (a checkpoint's ``config.json``) is moved last, so a folder with it is complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.partial-"))
    try:
        writer(staging)
        for src in sorted(staging.rglob("*"), key=lambda p: (p.name == last, str(p))):
            if src.is_file():
                dst = directory / src.relative_to(staging)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def strict_json(data: Any, **kwargs: Any) -> str:
    """JSON that every parser accepts: a non-finite float (never expected) becomes ``null``, not ``NaN``."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), ensure_ascii=False, allow_nan=False, **kwargs)


def default_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
