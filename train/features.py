"""Frozen-encoder extraction: run once per sample, cached on disk and held in memory.

Frozen encoders (``model.frozen_modalities()``) run once per sample over the processor's
inputs; their ``(L, E)`` outputs are cached on disk (``train.cache``) and held in memory.
Batches that join these features with the fine-tuned modalities' inputs are built in
``train.step``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

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


def raw_value(raw: RawClip, modality: str):
    """The decoded input of one modality (frames, waveform or transcript; ``None`` when absent)."""
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
    # Rows that share a source (one audio file listed with several transcripts: train.prepare's
    # swapped rows) are decoded and encoded once and share one tensor: the first row with a source
    # carries it, the others are filled in from it at the end.
    first: dict[str, tuple[str, str]] = {}
    shared: list[tuple[str, str, str]] = []
    bar = tqdm(samples, desc=f"features ({', '.join(modalities)})", unit="clip", disable=not progress, leave=False)
    for sample in bar:
        todo, aliases = [], {}
        for m, extractor in extractors.items():
            descriptor = source_descriptor(sample, m, model.processor)
            if descriptor is not None:
                alias = cache.source_alias(extractor.identity, descriptor)
                if alias in first:
                    shared.append((sample.id, m, alias))
                    continue
                first[alias] = (sample.id, m)
                aliases[m] = alias
                hit = cache.lookup_source(alias)
                if hit is not None:  # unchanged file: no decoding
                    out[sample.id][m] = hit
                    continue
            todo.append(m)
        if not todo:
            continue
        raw = load_raw(sample, model.processor, todo, synthetic_seconds=synthetic_seconds)
        for m in todo:
            value = raw_value(raw, m)
            if value is not None:
                extractors[m].offer(sample.id, value, out, alias=aliases.get(m))
    for extractor in extractors.values():
        extractor.flush(out)
    for sample_id, m, alias in shared:
        source_id, source_m = first[alias]
        if source_m in out[source_id]:
            out[sample_id][m] = out[source_id][source_m]
    model.train(was_training)
    s = cache.stats
    logger.info("feature cache: %d hits, %d misses, %d corrupt entries recomputed", s.hits, s.misses, s.corrupt)
    return out
