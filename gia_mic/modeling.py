"""GIA-MIC: encoders, feature extractors, GIA, MIG, MIC loss and classifier (``SPEC.md``).

The model knows nothing of files beyond its own checkpoint format (``checkpoint.py``),
nothing of training loops and nothing of the web.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from torch import nn

from gia_mic.configuration import MODALITIES, GiaMicConfig, normalize_modalities
from gia_mic.encoders import EncoderOutput, build_encoder, encoder_config_dict
from gia_mic.modules import (
    FeatureExtractorLayer,
    GatedInteractiveAttention,
    ModalityInvariantGenerator,
    downsample_mask,
    masked_mean,
    symmetric_kl,
)

logger = logging.getLogger(__name__)

PAIRS: tuple[tuple[str, str], ...] = (("video", "audio"), ("audio", "text"), ("text", "video"))
DIRECTIONS: tuple[tuple[str, str], ...] = tuple(d for a, b in PAIRS for d in ((a, b), (b, a)))


def direction_name(a: str, b: str) -> str:
    """Name of the GIA direction A <- B, e.g. ``"video<-audio"``."""
    return f"{a}<-{b}"


@dataclass
class GiaMicOutput:
    """Everything one forward pass produces.

    Attributes:
        logits: ``(B, C)``.
        loss: ``CE + gamma * L_MIR`` when labels were given.
        ce_loss: Cross-entropy part.
        mir_loss: ``L_MIR`` (unweighted sum of the valid symmetric-KL pairs).
        gates: Six gate tensors ``G_{A,B}``, keyed ``"A<-B"``, each ``(B, L_A, D)``.
        msr: ``H_M^MSR`` per modality, ``(B, L_M, D)``.
        mir: ``H_M^MIR`` per modality, ``(B, L', D)`` (empty when MIR is ablated).
        masks: Token masks per modality ``(B, L_M)``; ``"mir"`` is the ``(B, L')`` MIR mask.
        modality_mask: ``(B, 3)`` presence flags actually used (video, audio, text).
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    ce_loss: torch.Tensor | None = None
    mir_loss: torch.Tensor | None = None
    gates: dict[str, torch.Tensor] = field(default_factory=dict)
    msr: dict[str, torch.Tensor] = field(default_factory=dict)
    mir: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    modality_mask: torch.Tensor | None = None


SAVED_CARD = """---
{{ card_data }}
---

# GIA-MIC checkpoint

A [GIA-MIC](https://arxiv.org/abs/2506.00865) emotion recognition model saved with `save_pretrained`.
Labels, in logit order: {{ labels | join(", ") }}; inputs: {{ modalities | join(", ") }}.
This card records no training data and no results; checkpoints written by `python -m train` carry the full card.
"""


class GiaMicForEmotionRecognition(nn.Module, ModelHubMixin, library_name="gia-mic",
                                  tags=["emotion-recognition", "multimodal", "arxiv:2506.00865"],
                                  model_card_template=SAVED_CARD):
    """The full model. Build with ``from_config`` (pretrained encoders) or load a checkpoint.

    Args:
        config: The model config. Encoders are built from ``config.encoder_configs`` when a
            modality's config is carried there, otherwise loaded by id/path.
    """

    def __init__(self, config: GiaMicConfig) -> None:
        super().__init__()
        config = copy.deepcopy(config)  # the encoder configs filled in below must not reach the caller's config
        self.config = config
        d = config.hidden_size
        self.fusion_modalities = tuple(m for m in MODALITIES if m in config.modalities)
        """The modalities the fusion has blocks for, in the fixed video, audio, text order."""
        self.encoders = nn.ModuleDict({
            m: build_encoder(m, *config.encoder_source(m), config.encoder_configs.get(m))
            for m in self.fusion_modalities
        })
        for m, enc in self.encoders.items():
            config.encoder_configs[m] = encoder_config_dict(enc)
        self.projections = nn.ModuleDict({
            m: nn.Identity() if enc.width == d else nn.Linear(enc.width, d) for m, enc in self.encoders.items()
        })
        layer = dict(dim=d, heads=config.num_heads, dropout=config.dropout)
        self.feature_extractors = nn.ModuleDict({
            m: FeatureExtractorLayer(mult=config.ffn_multiplier, **layer) for m in self.fusion_modalities
        })
        self.directions = tuple((a, b) for a, b in DIRECTIONS if a in self.fusion_modalities and b in self.fusion_modalities)
        self.pairs = tuple((p, q) for p, q in PAIRS if p in self.fusion_modalities and q in self.fusion_modalities)
        if config.use_msr:
            self.gia = nn.ModuleDict({
                direction_name(a, b): GatedInteractiveAttention(pool_kernel=config.gate_pool_kernel, **layer)
                for a, b in self.directions
            })
        if config.use_mir:
            mig = dict(kernel=config.mig_kernel, stride=config.mig_stride, **layer)
            if config.mig_shared_weights:
                shared = ModalityInvariantGenerator(**mig)
                self.mig = nn.ModuleDict({m: shared for m in self.fusion_modalities})
            else:
                self.mig = nn.ModuleDict({m: ModalityInvariantGenerator(**mig) for m in self.fusion_modalities})
        n_pooled = len(self.fusion_modalities) * (2 if config.use_mir else 1)
        self.classifier = nn.Sequential(
            nn.Linear(n_pooled * d, d), nn.GELU(), nn.Dropout(config.classifier_dropout), nn.Linear(d, config.num_labels)
        )
        self._apply_freezing()

    # ------------------------------------------------------------------ setup
    def _apply_freezing(self) -> None:
        for m, enc in self.encoders.items():
            frozen = getattr(self.config, f"freeze_{m}_encoder")
            for p in enc.parameters():
                p.requires_grad = not frozen
            if m == "audio":
                enc.freeze_feature_encoder()

    def frozen_modalities(self) -> tuple[str, ...]:
        """Modalities whose encoder is frozen (their outputs can be cached)."""
        return tuple(m for m in self.encoders if getattr(self.config, f"freeze_{m}_encoder"))

    def train(self, mode: bool = True) -> GiaMicForEmotionRecognition:
        """Like ``nn.Module.train``, but frozen encoders always stay in eval mode."""
        super().train(mode)
        for m in self.frozen_modalities():
            self.encoders[m].eval()
        return self

    # ------------------------------------------------------------------ encoders
    def encode(self, *, pixel_values: torch.Tensor | None = None, audio_values: torch.Tensor | None = None,
               audio_attention_mask: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
               text_attention_mask: torch.Tensor | None = None,
               modality_mask: torch.Tensor | None = None) -> dict[str, EncoderOutput]:
        """Runs the pretrained encoders on whichever inputs are given (a misspelt name is a ``TypeError``).

        ``modality_mask`` (part of the processor's output) is accepted and not used here: ``fuse`` applies it.

        Returns:
            Raw encoder outputs per modality present in the inputs (before projection).

        Raises:
            ValueError: an input for a modality this model has no encoder for, or values without their mask.
        """
        given = {"video": pixel_values, "audio": audio_values, "text": input_ids}
        unknown = [m for m, value in given.items() if value is not None and m not in self.encoders]
        if unknown:
            raise ValueError(f"inputs for {', '.join(unknown)} given, but this model has no encoder for it "
                             f"(it was built for {', '.join(self.fusion_modalities)})")
        if audio_values is not None and audio_attention_mask is None:
            raise ValueError("audio_values needs audio_attention_mask")
        if input_ids is not None and text_attention_mask is None:
            raise ValueError("input_ids needs text_attention_mask")
        out: dict[str, EncoderOutput] = {}
        if pixel_values is not None:
            out["video"] = self.encoders["video"](pixel_values)
        if audio_values is not None:
            out["audio"] = self.encoders["audio"](audio_values, audio_attention_mask)
        if input_ids is not None:
            out["text"] = self.encoders["text"](input_ids, text_attention_mask)
        return out

    # ------------------------------------------------------------------ fusion
    def _tokens(self, encoded: dict[str, EncoderOutput], present: torch.Tensor,
                batch: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Projects to D; an absent modality is one all-masked zero token (it takes part in nothing)."""
        tokens, masks = {}, {}
        ref = self.classifier[0].weight
        for m in self.fusion_modalities:
            i = MODALITIES.index(m)
            if m in encoded:
                tokens[m] = self.projections[m](encoded[m].features.to(ref.dtype))  # (B, L, D)
                masks[m] = encoded[m].mask & present[:, i : i + 1]  # (B, L)
            else:
                tokens[m] = ref.new_zeros(batch, 1, self.config.hidden_size)  # (B, 1, D)
                masks[m] = torch.zeros(batch, 1, dtype=torch.bool, device=ref.device)
        return tokens, masks

    def _drop_modalities(self, present: torch.Tensor) -> torch.Tensor:
        """Training-time modality dropout; every sample keeps at least one present modality."""
        p = self.config.modality_dropout
        if not self.training or p <= 0:
            return present
        keep = present & (torch.rand(present.shape, device=present.device) >= p)  # (B, 3)
        empty = ~keep.any(dim=1) & present.any(dim=1)
        if empty.any():
            scores = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0)
            rescue = F.one_hot(scores.argmax(dim=1), len(MODALITIES)).bool()  # (B, 3)
            keep = keep | (rescue & empty[:, None])
        return keep

    def fuse(self, encoded: dict[str, EncoderOutput], *, modality_mask: torch.Tensor | None = None,
             modalities: object = None, labels: torch.Tensor | None = None,
             sample_weights: torch.Tensor | None = None) -> GiaMicOutput:
        """Runs everything after the encoders: FE, GIA (MSR), MIG (MIR), classifier, loss.

        Args:
            encoded: Raw encoder outputs (``encode``), any subset of modalities.
            modality_mask: ``(B, 3)`` presence flags (video, audio, text); default: present
                wherever ``encoded`` has the modality.
            modalities: Optional subset of modalities to use (others are treated as absent).
            labels: ``(B,)`` class indices; when given the loss is computed.
            sample_weights: Optional ``(B,)`` weights of each sample's cross-entropy (e.g. to
                balance classes or corpora). The loss is ``sum(w * CE) / B``: with weights that
                average 1 over the data it estimates the data-level weighted mean, also when a
                batch holds a single corpus.
        """
        assert encoded, "fuse() needs at least one encoded modality"
        any_out = next(iter(encoded.values()))
        batch, device = any_out.features.shape[0], any_out.features.device
        if modality_mask is None:
            modality_mask = torch.ones(batch, len(MODALITIES), dtype=torch.bool, device=device)
        wanted = normalize_modalities(modalities)  # once, not once per modality
        use = torch.tensor([m in encoded and m in wanted for m in MODALITIES], device=device)
        present = self._drop_modalities(modality_mask.to(device).bool() & use)  # (B, 3)
        tokens, masks = self._tokens(encoded, present, batch)
        h = {m: self.feature_extractors[m](tokens[m], masks[m]) for m in self.fusion_modalities}  # (B, L_M, D)
        msr, gates = self._msr(h, masks)
        mir, mir_mask = self._mir(h, msr, masks) if self.config.use_mir else ({}, None)
        # an absent modality contributes zeros: no learned value of it can reach the classifier
        pooled = [masked_mean(msr[m], masks[m]) for m in self.fusion_modalities]  # (B, D) each
        if mir:
            pooled += [masked_mean(mir[m], mir_mask) * masks[m].any(dim=1, keepdim=True).to(mir[m].dtype)
                       for m in self.fusion_modalities]
        logits = self.classifier(torch.cat(pooled, dim=-1))  # (B, C)
        out = GiaMicOutput(logits=logits, gates=gates, msr=msr, mir=mir,
                           masks={**masks, **({"mir": mir_mask} if mir else {})}, modality_mask=present)
        if labels is not None:
            self._loss(out, labels, present, sample_weights)
        return out

    def _msr(self, h: dict[str, torch.Tensor],
             masks: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Spec §3: H_A^MSR = sum over B != A of G * H_{A->B} + (1 - G) * H_A."""
        if not self.config.use_msr:
            return dict(h), {}
        parts: dict[str, list[torch.Tensor]] = {m: [] for m in self.fusion_modalities}
        gates = {}
        for a, b in self.directions:
            name = direction_name(a, b)
            fused, gates[name] = self.gia[name](h[a], masks[a], h[b], masks[b])  # (B, L_A, D)
            parts[a].append(fused)
        return {m: sum(parts[m]) if parts[m] else h[m] for m in self.fusion_modalities}, gates

    def _mir(self, h: dict[str, torch.Tensor], msr: dict[str, torch.Tensor],
             masks: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Spec §4 on H_VST, packed so each sample's real tokens come first (padding-invariant)."""
        h_vst = torch.cat([h[m] for m in self.fusion_modalities], dim=1)  # (B, L_V+L_S+L_T, D)
        mask_vst = torch.cat([masks[m] for m in self.fusion_modalities], dim=1)  # (B, L_VST)
        order = torch.argsort((~mask_vst).to(torch.int8), dim=1, stable=True)  # real tokens first
        h_vst = torch.gather(h_vst, 1, order[..., None].expand_as(h_vst))
        mask_vst = torch.gather(mask_vst, 1, order)
        mir = {m: self.mig[m](h_vst, mask_vst, msr[m], masks[m]) for m in self.fusion_modalities}  # (B, L', D)
        return mir, downsample_mask(mask_vst, self.config.mig_stride)

    def _loss(self, out: GiaMicOutput, labels: torch.Tensor, present: torch.Tensor,
              sample_weights: torch.Tensor | None = None) -> None:
        """Spec §5-6: CE + gamma * L_MIR, MIC pairs skipped where a modality is absent."""
        if sample_weights is None:
            out.ce_loss = F.cross_entropy(out.logits.float(), labels)
        else:
            weights = sample_weights.to(out.logits.device, torch.float32)
            per_sample = F.cross_entropy(out.logits.float(), labels, reduction="none")  # (B,)
            out.ce_loss = (per_sample * weights).mean()
        mir_loss = out.logits.new_zeros((), dtype=torch.float32)
        if out.mir:
            index = {m: i for i, m in enumerate(MODALITIES)}
            for p, q in self.pairs:
                both = present[:, index[p]] & present[:, index[q]]  # (B,)
                mir_loss = mir_loss + symmetric_kl(out.mir[p], out.mir[q], out.masks["mir"] & both[:, None])
        out.mir_loss = mir_loss
        out.loss = out.ce_loss + self.config.mic_weight * mir_loss

    def forward(self, *, modality_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                modalities: object = None, sample_weights: torch.Tensor | None = None,
                **inputs: torch.Tensor | None) -> GiaMicOutput:
        """Encoders then fusion; ``inputs`` are the processor's outputs."""
        encoded = self.encode(**inputs)
        if not encoded:
            raise ValueError("no input for any modality the model was trained with "
                             f"({', '.join(self.config.modalities)})")
        return self.fuse(encoded, modality_mask=modality_mask, modalities=modalities, labels=labels,
                         sample_weights=sample_weights)

    def probabilities(self, logits: torch.Tensor, modalities: Sequence[Sequence[str]] | None = None) -> torch.Tensor:
        """Calibrated class probabilities ``softmax(logits / T)``: the one decoding path.

        Args:
            logits: ``(B, C)`` as returned in ``GiaMicOutput.logits``.
            modalities: The modalities each row used (``B`` lists): each row gets its set's
                temperature (``config.temperature_for``); ``None``: ``config.temperature`` for all.
        """
        if modalities is None:
            return (logits.float() / self.config.temperature).softmax(dim=-1)
        if len(modalities) != logits.shape[0]:
            raise ValueError(f"modalities: one list per row expected ({logits.shape[0]}), got {len(modalities)}")
        temperatures = torch.tensor([self.config.temperature_for(m) for m in modalities],
                                    dtype=torch.float32, device=logits.device)
        return (logits.float() / temperatures[:, None]).softmax(dim=-1)

    # ------------------------------------------------------------------ checkpoints (the Hub contract)
    processor = None  # the GiaMicProcessor saved beside the weights

    @property
    def device(self) -> torch.device:
        """Where the weights are (transformers' convention, e.g. for ``pipeline``)."""
        return self.classifier[0].weight.device

    @classmethod
    def from_config(cls, config: GiaMicConfig) -> GiaMicForEmotionRecognition:
        """A fresh model: pretrained encoders by id/path (or carried configs), new fusion weights."""
        from gia_mic.processing import GiaMicProcessor

        model = cls(config)
        model.processor = GiaMicProcessor.from_config(model.config)  # one config object for model and processor
        return model

    def save_pretrained(self, save_directory: str | Path, *, dtype: torch.dtype | None = None,
                        quantize: str | None = None, config: object = None, repo_id: str | None = None, push_to_hub: bool = False,
                        model_card_kwargs: dict | None = None, **push_to_hub_kwargs: object) -> str | None:
        """Writes ``config.json``, ``model.safetensors`` and the processor folders atomically.

        Args:
            save_directory: Target folder (created if needed).
            dtype: Optional storage dtype for floating weights (e.g. ``torch.float16``);
                loading restores the compute dtype.
            quantize: ``"int8"`` also stores large 2-D weights as int8 with per-row scales
                (about a quarter of float32); loading dequantizes them.
            config: Ignored (the model's own config is always written); kept for the mixin.
            repo_id: Hub repo for ``push_to_hub``.
            push_to_hub: Also upload to ``repo_id``.
            model_card_kwargs: Passed to ``SAVED_CARD`` (a minimal card, written when no README exists).
            **push_to_hub_kwargs: Passed to ``push_to_hub``.
        """
        from gia_mic.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_weights
        from gia_mic.utils import write_directory

        def write(staging: Path) -> None:
            save_weights(self, staging / WEIGHTS_NAME, dtype, quantize)
            if self.processor is not None:
                self.processor.save_pretrained(staging)
            self.config.to_json_file(staging / CONFIG_NAME)

        save_directory = Path(save_directory)
        write_directory(save_directory, write)
        if not (save_directory / "README.md").exists():
            self.generate_model_card(labels=self.config.labels, modalities=self.config.modalities,
                                     **(model_card_kwargs or {})).save(save_directory / "README.md")
        if push_to_hub:
            return self.push_to_hub(repo_id or save_directory.name, model_card_kwargs=model_card_kwargs,
                                    **push_to_hub_kwargs)
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        device: str | torch.device | None = None, **hub_kwargs: object) -> GiaMicForEmotionRecognition:
        """Loads a checkpoint directory or Hub repo (``org/name``, optional ``revision``), strictly.

        Raises:
            gia_mic.errors.CheckpointError: not found, offline without a cached copy,
                pickle-only weights, corrupt safetensors, or keys that do not match.
        """
        from gia_mic.checkpoint import (
            CONFIG_NAME,
            CheckpointError,
            check_weights_header,
            load_strict,
            parameters_on_meta,
            read_weights,
        )
        from gia_mic.hub import resolve
        from gia_mic.processing import GiaMicProcessor

        directory = resolve(pretrained_model_name_or_path, revision=revision, **hub_kwargs)
        if not (directory / CONFIG_NAME).exists():
            raise CheckpointError(f"{directory} has no {CONFIG_NAME}: not a gia-mic checkpoint")
        config = GiaMicConfig.from_json_file(directory / CONFIG_NAME)
        missing = [m for m in config.modalities if m not in config.encoder_configs]
        if missing:
            raise CheckpointError(f"{directory}/{CONFIG_NAME} does not carry the encoder configs of {missing}: "
                                  "not a self-contained gia-mic checkpoint")
        with torch.device("meta"):  # shapes only: a config asking for a huge model is refused before allocation
            expected = cls(copy.deepcopy(config)).state_dict()
        check_weights_header(directory, expected)
        state = read_weights(directory, expected)
        with parameters_on_meta():  # no random init: the checkpoint's tensors become the parameters
            model = cls(config)
        load_strict(model, state, directory)
        # refuses code-running processor folders; shares the model's config object (one config)
        model.processor = GiaMicProcessor.from_pretrained(directory, model.config)
        model.eval()
        if device is not None:
            model.to(device)
        return model

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, **kwargs: object) -> GiaMicForEmotionRecognition:
        """Mixin hook; loading goes through ``from_pretrained``."""
        return cls.from_pretrained(model_id, revision=revision)
