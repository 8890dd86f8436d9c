"""The training step: batches of cached features + processor inputs, and the module DDP wraps.

Fine-tuned encoders run at every step: a ``Batch`` carries the processor's inputs for those
modalities and the padded cached features (``train.features``) for the frozen ones;
``TrainStep`` joins them and calls ``model.fuse``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gia_mic.configuration import MODALITIES
from gia_mic.encoders import EncoderOutput
from train.data import Sample, load_raw
from train.features import INPUT_ARG, Features, raw_value


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
        columns = {INPUT_ARG[m]: [raw_value(r, m) for r in raws] for m in tuned}
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
