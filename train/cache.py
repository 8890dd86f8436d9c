"""On-disk cache of frozen-encoder outputs.

An entry is one sample's ``(L, E)`` features of one modality, stored as a safetensors file
whose name is a hash of everything that determines it: the encoder id and revision, the
hash of the encoder config carried in ``config.json``, a fingerprint of the weights when
they do not come from a Hub id (random or local encoders) and the hash of the processed
input tensors. Writes are atomic (temporary file + ``os.replace``); each entry carries a
SHA-256 of its tensor bytes, so a truncated or corrupt file is detected, dropped and
recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from gia_mic.utils import atomic_write_bytes

logger = logging.getLogger(__name__)

CACHE_VERSION = "1"


def sha256_json(data: Any) -> str:
    """Stable hash of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 over dtype, shape and bytes of the given tensors."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Hash of every parameter and buffer (for encoders without a Hub id)."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor_digest(value).encode())
    return h.hexdigest()


def encoder_identity(model, modality: str) -> dict[str, Any]:
    """What determines a frozen encoder's output, apart from its input."""
    source, revision = model.config.encoder_source(modality)
    identity = {"version": CACHE_VERSION, "modality": modality, "encoder": source, "revision": revision,
                "encoder_config": sha256_json(model.config.encoder_configs.get(modality, {}))}
    if source is None or Path(str(source)).expanduser().exists():
        identity["weights"] = weights_fingerprint(model.encoders[modality])
    return identity


@dataclass
class CacheStats:
    """Counters of one extraction pass."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0


class FeatureCache:
    """Content-addressed store of ``(L, E)`` feature tensors under ``root``.

    Args:
        root: Cache folder (created on first write).
        read_only: Never write or delete (processes other than the main one of a multi-process
            run: the main one fills the cache, the others read it or compute in memory).
    """

    def __init__(self, root: str | Path, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self.stats = CacheStats()

    def key(self, identity: dict[str, Any], input_digest: str) -> str:
        """Entry key of one encoder identity and one processed input."""
        return sha256_json({"encoder": identity, "input": input_digest})

    def path(self, key: str) -> Path:
        """File of an entry (two-level fan-out)."""
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        """The stored tensor, or ``None`` on a miss or a corrupt entry (which is deleted)."""
        features = self._load(key)
        if features is None:
            self.stats.misses += 1
        return features

    def _load(self, key: str) -> torch.Tensor | None:
        """Reads one entry; counts hits and corrupt entries (not misses)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            tensors = load(data)
            features = tensors["features"]
            stored = bytes(tensors["checksum"].numpy()).decode("ascii")
            if stored != tensor_digest(features):
                raise ValueError("checksum mismatch")
        except (SafetensorError, KeyError, ValueError, UnicodeDecodeError, RuntimeError) as err:
            logger.warning("feature cache: corrupt entry %s (%s); recomputing", path.name, err)
            if not self.read_only:
                path.unlink(missing_ok=True)
            self.stats.corrupt += 1
            return None
        self.stats.hits += 1
        return features

    # ------------------------------------------------------------------ source index
    # Entries are keyed by the processed input, so finding one means decoding the clip first.
    # The source index maps what a file-based input depends on (file path, size, mtime, window,
    # crop, preprocessing) to the entry's key, so an unchanged clip is not decoded again.
    def source_alias(self, identity: dict[str, Any], descriptor: dict[str, Any]) -> str:
        """Index key of one encoder identity and one source descriptor (``train.features``)."""
        return sha256_json({"encoder": identity, "source": descriptor})

    def _alias_path(self, alias: str) -> Path:
        return self.root / "sources" / alias[:2] / alias

    def lookup_source(self, alias: str) -> torch.Tensor | None:
        """The entry the index names for ``alias``; ``None`` (nothing counted) when unknown or gone."""
        try:
            key = self._alias_path(alias).read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            return None
        return self._load(key)

    def link_source(self, alias: str, key: str) -> None:
        """Records that the source ``alias`` processes to the entry ``key`` (atomic)."""
        if self.read_only:
            return
        atomic_write_bytes(self._alias_path(alias), key.encode("ascii"))

    def put(self, key: str, features: torch.Tensor) -> None:
        """Stores ``features`` atomically (float tensors keep their dtype)."""
        if self.read_only:
            return
        features = features.detach().to("cpu").contiguous()
        checksum = torch.from_numpy(np.frombuffer(tensor_digest(features).encode("ascii"), dtype=np.uint8).copy())
        atomic_write_bytes(self.path(key), save({"features": features, "checksum": checksum}))
