"""Frozen-encoder extraction (run once, cached) and training batches.

Frozen encoders (``model.frozen_modalities()``) run once per sample over the processor's
inputs; their ``(L, E)`` outputs are cached on disk and held in memory. Fine-tuned
encoders run at every step: a batch carries the processor's inputs for those modalities
and the padded cached features for the frozen ones; ``TrainStep`` joins them and calls
``model.fuse``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from gia_mic.configuration import MODALITIES
from gia_mic.encoders import EncoderOutput
from train.cache import FeatureCache, encoder_identity, tensor_digest
from train.data import RawClip, Sample, load_raw

logger = logging.getLogger(__name__)

INPUT_ARG = {"video": "frames", "audio": "audio", "text": "text"}
INPUT_KEYS = {"video": ("pixel_values",), "audio": ("audio_values", "audio_attention_mask"),
              "text": ("input_ids", "text_attention_mask")}
Features = dict[str, dict[str, torch.Tensor]]  # sample id -> modality -> (L, E)


PREPROCESS_FIELDS = ("num_frames", "sample_rate", "min_audio_seconds", "max_audio_seconds")


def source_descriptor(sample: Sample, modality: str, processor) -> dict[str, Any] | None:
    """What one file-based input depends on, besides the encoder; ``None`` for text and generated clips.

    Used as the feature cache's source index: an unchanged file (same path, size and mtime) with
    the same window, crop and preprocessing is not decoded again.
    """
    if modality == "text" or sample.synthetic_seed is not None:
        return None
    file = sample.video if modality == "video" else sample.audio
    if not file:
        return None
    try:
        stat = Path(file).stat()
    except OSError:
        return None  # decoding will report it
    windowed = modality == "video" or sample.audio == sample.video
    component = processor.components.get(modality)
    return {"modality": modality, "file": str(Path(file).resolve()), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "window": [sample.start, sample.end] if windowed else [0.0, None],
            "crop": sample.crop if modality == "video" else None,
            "preprocess": {k: getattr(processor.config, k) for k in PREPROCESS_FIELDS},
            "component": component.to_dict() if hasattr(component, "to_dict") else type(component).__name__}


def _raw_value(raw: RawClip, modality: str):
    return {"video": raw.frames, "audio": raw.audio, "text": raw.text}[modality]


class _Extractor:
    """Batches cache misses of one modality through the model's encoder."""

    def __init__(self, model, modality: str, cache: FeatureCache, batch_size: int, device: torch.device) -> None:
        self.model, self.modality, self.cache = model, modality, cache
        self.batch_size, self.device = batch_size, device
        self.identity = encoder_identity(model, modality)
        self.pending: list[tuple[str, str, object, dict[str, torch.Tensor]]] = []

    def offer(self, sample_id: str, value: object, out: Features, alias: str | None = None) -> None:
        """Looks ``value`` up in the cache; queues it for encoding on a miss; indexes ``alias``."""
        processor = self.model.processor
        inputs = processor(**{INPUT_ARG[self.modality]: [value]}, modalities=[self.modality])
        if not bool(inputs["modality_mask"].any()):
            return  # e.g. an empty transcript: the modality is absent for this sample
        key = self.cache.key(self.identity, tensor_digest(*(inputs[k] for k in INPUT_KEYS[self.modality])))
        if alias is not None:
            self.cache.link_source(alias, key)  # the entry itself is written at the latest by flush()
        hit = self.cache.get(key)
        if hit is not None:
            out[sample_id][self.modality] = hit
            return
        self.pending.append((sample_id, key, value, {k: inputs[k] for k in INPUT_KEYS[self.modality]}))
        if len(self.pending) >= self.batch_size:
            self.flush(out)

    @torch.no_grad()
    def flush(self, out: Features) -> None:
        """Encodes the queued inputs, stores them in the cache and in ``out``."""
        if not self.pending:
            return
        processed = [p for *_, p in self.pending]
        if all(p[k].shape == processed[0][k].shape for p in processed for k in processed[0]):
            # fixed-size inputs (log-mel windows, frames): reuse what offer() already computed
            inputs = {k: torch.cat([p[k] for p in processed]) for k in processed[0]}
        else:  # variable lengths: one batched call pads them the processor's way
            values = [v for _, _, v, _ in self.pending]
            inputs = self.model.processor(**{INPUT_ARG[self.modality]: values}, modalities=[self.modality])
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in INPUT_KEYS[self.modality]}
        encoded = self.model.encode(**inputs)[self.modality]
        for i, (sample_id, key, *_) in enumerate(self.pending):
            features = encoded.features[i][encoded.mask[i]].float().cpu().contiguous()  # (L_i, E)
            self.cache.put(key, features)
            out[sample_id][self.modality] = features
        self.pending = []


def extract_frozen(model, samples: Sequence[Sample], cache: FeatureCache, *, batch_size: int,
                   device: torch.device, synthetic_seconds: float = 1.0, progress: bool = True) -> Features:
    """Runs every frozen encoder once per sample (cache hits skip it).

    Returns:
        Per sample id, per frozen modality the sample has, its ``(L, E)`` features.
    """
    modalities = [m for m in model.frozen_modalities() if m in model.config.modalities]
    out: Features = {s.id: {} for s in samples}
    if not modalities:
        return out
    was_training = model.training
    model.eval()
    extractors = {m: _Extractor(model, m, cache, batch_size, device) for m in modalities}
    bar = tqdm(samples, desc=f"features ({', '.join(modalities)})", unit="clip", disable=not progress, leave=False)
    for sample in bar:
        todo, aliases = [], {}
        for m, extractor in extractors.items():
            descriptor = source_descriptor(sample, m, model.processor)
            if descriptor is not None:
                aliases[m] = cache.source_alias(extractor.identity, descriptor)
                hit = cache.lookup_source(aliases[m])
                if hit is not None:  # unchanged file: no decoding
                    out[sample.id][m] = hit
                    continue
            todo.append(m)
        if not todo:
            continue
        raw = load_raw(sample, model.processor, todo, synthetic_seconds=synthetic_seconds)
        for m in todo:
            value = _raw_value(raw, m)
            if value is not None:
                extractors[m].offer(sample.id, value, out, alias=aliases.get(m))
    for extractor in extractors.values():
        extractor.flush(out)
    model.train(was_training)
    s = cache.stats
    logger.info("feature cache: %d hits, %d misses, %d corrupt entries recomputed", s.hits, s.misses, s.corrupt)
    return out


@dataclass
class Batch:
    """One training or evaluation batch.

    Attributes:
        cached: Per frozen modality, padded features ``(B, L, E)`` and mask ``(B, L)``.
        inputs: Processor outputs for the fine-tuned modalities (no ``modality_mask``).
        modality_mask: ``(B, 3)`` presence flags (video, audio, text).
        labels: ``(B,)`` class indices.
        weights: ``(B,)`` loss weights of the samples.
    """

    cached: dict[str, tuple[torch.Tensor, torch.Tensor]]
    inputs: dict[str, torch.Tensor]
    modality_mask: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device``."""
        return Batch({m: (f.to(device), k.to(device)) for m, (f, k) in self.cached.items()},
                     {k: v.to(device) for k, v in self.inputs.items()}, self.modality_mask.to(device),
                     self.labels.to(device), self.weights.to(device))


def pad_features(rows: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads ``(L_i, E)`` rows (``None`` = absent) into features ``(B, L, E)`` and mask ``(B, L)``."""
    width = next(r.shape[1] for r in rows if r is not None)
    length = max([r.shape[0] for r in rows if r is not None] + [1])
    features = torch.zeros(len(rows), length, width)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        if r is not None:
            features[i, : r.shape[0]] = r
            mask[i, : r.shape[0]] = True
    return features, mask


def build_batch(samples: Sequence[Sample], features: Features, model, *, synthetic_seconds: float = 1.0,
                frozen: Sequence[str] | None = None) -> Batch:
    """Cached features for frozen modalities, processor inputs for the fine-tuned ones.

    ``frozen`` overrides which modalities come from ``features`` (``[]``: run every
    encoder on processor inputs, as training without a cache would).
    """
    frozen = [m for m in (model.frozen_modalities() if frozen is None else frozen) if m in model.config.modalities]
    tuned = [m for m in model.config.modalities if m not in frozen]
    present = torch.zeros(len(samples), len(MODALITIES), dtype=torch.bool)
    cached = {}
    for m in frozen:
        rows = [features[s.id].get(m) for s in samples]
        if any(r is not None for r in rows):
            cached[m] = pad_features(rows)
            present[:, MODALITIES.index(m)] = torch.tensor([r is not None for r in rows])
    inputs: dict[str, torch.Tensor] = {}
    if tuned:
        raws = [load_raw(s, model.processor, tuned, synthetic_seconds=synthetic_seconds) for s in samples]
        columns = {INPUT_ARG[m]: [_raw_value(r, m) for r in raws] for m in tuned}
        if any(v is not None for col in columns.values() for v in col):
            inputs = model.processor(**columns, modalities=tuned)
            mask = inputs.pop("modality_mask")
            for m in tuned:
                present[:, MODALITIES.index(m)] = mask[:, MODALITIES.index(m)]
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    weights = torch.tensor([s.weight for s in samples], dtype=torch.float32)
    return Batch(cached, inputs, present, labels, weights)


class TrainStep(nn.Module):
    """Fine-tuned encoders + cached features -> ``model.fuse`` (the module DDP wraps)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, cached: dict[str, tuple[torch.Tensor, torch.Tensor]], inputs: dict[str, torch.Tensor],
                modality_mask: torch.Tensor, labels: torch.Tensor,
                weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns ``loss``, ``ce_loss``, ``mir_loss`` and ``logits`` ``(B, C)``."""
        encoded = {m: EncoderOutput(f, k) for m, (f, k) in cached.items()}
        if inputs:
            encoded.update(self.model.encode(**inputs))
        uniform = weights is None or bool(torch.all(weights == 1))  # plain mean: bit-identical to no weights
        out = self.model.fuse(encoded, modality_mask=modality_mask, labels=labels,
                              sample_weights=None if uniform else weights)
        return {"loss": out.loss, "ce_loss": out.ce_loss, "mir_loss": out.mir_loss, "logits": out.logits}
