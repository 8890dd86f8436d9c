"""Pretrained encoders for video (CLIP vision), speech (WavLM family, Whisper) and text.

An encoder is built either from a Hub id / local path (``from_pretrained``) or, inside a
saved checkpoint, from the encoder's own config carried in ``config.json`` (weights then
come from the checkpoint's ``model.safetensors``). Nothing here reaches another repo
when a checkpoint is loaded. ``transformers`` model classes are imported when an encoder is
built, and only those of the families the checkpoint uses (importing this module is cheap).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gia_mic.configuration import ENCODER_FAMILIES
from gia_mic.errors import EncoderLoadError

logger = logging.getLogger(__name__)

WAV2VEC2_FAMILY = tuple(m for m in ENCODER_FAMILIES["audio"] if m != "whisper")


@dataclass
class EncoderOutput:
    """Raw encoder tokens of one modality, before projection to D.

    Attributes:
        features: ``(B, L, E)`` tokens.
        mask: ``(B, L)`` bool, True on real tokens.
    """

    features: torch.Tensor
    mask: torch.Tensor


def load_error(what: str, source: str, revision: str, err: Exception) -> EncoderLoadError:
    """A readable error for an encoder or processor that failed to load."""
    return EncoderLoadError(
        f"could not load the {what} from {source!r} (revision {revision!r}): {type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}. "
        f"Fix: check the id or path; if it is a Hub id, connect once so it is cached (or unset "
        f"HF_HUB_OFFLINE), or download it with `hf download {source} --revision {revision}` and pass the local path."
    )


def _from_hub(loader: Any, what: str, source: str, revision: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(source, revision=revision, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise load_error(what, source, revision, err) from None


class VideoEncoder(nn.Module):
    """CLIP vision tower: one token per frame, the projected image embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.width = model.config.projection_dim

    @classmethod
    def from_config_dict(cls, data: dict[str, Any]) -> VideoEncoder:
        """Builds a randomly initialised tower from a carried config."""
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        data = {k: v for k, v in data.items() if k != "model_type"}
        return cls(CLIPVisionModelWithProjection(CLIPVisionConfig(**data)))

    @classmethod
    def from_pretrained(cls, source: str, revision: str) -> VideoEncoder:
        """Loads the vision tower of a CLIP checkpoint (full CLIP or vision-only)."""
        from transformers import CLIPVisionModelWithProjection

        return cls(_from_hub(CLIPVisionModelWithProjection, "video encoder", source, revision))

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        """``pixel_values`` (B, F, 3, H, W) -> features (B, F, E)."""
        b, f = pixel_values.shape[:2]
        embeds = self.model(pixel_values=pixel_values.flatten(0, 1)).image_embeds  # (B*F, E)
        features = embeds.view(b, f, -1)  # (B, F, E)
        return EncoderOutput(features, torch.ones(b, f, dtype=torch.bool, device=features.device))


class AudioEncoder(nn.Module):
    """Speech encoder: last hidden state of a WavLM-family model (or Whisper's encoder)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.model_type = model.config.model_type
        self.width = model.config.hidden_size if self.model_type != "whisper" else model.config.d_model
        # Group-norm feature encoders (WavLM base/base+) normalise over time, so zero padding
        # changes every frame: such models run one sample at a time, unpadded.
        self.per_sample = getattr(model.config, "feat_extract_norm", "layer") == "group"

    @classmethod
    def from_config_dict(cls, data: dict[str, Any]) -> AudioEncoder:
        """Builds a randomly initialised encoder from a carried config."""
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.for_model(**data)
        if config.model_type == "whisper":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            return cls(WhisperEncoder(config))
        return cls(AutoModel.from_config(config))

    @classmethod
    def from_pretrained(cls, source: str, revision: str) -> AudioEncoder:
        """Loads a WavLM / wav2vec2 / HuBERT checkpoint, or the encoder of a Whisper one."""
        from transformers import AutoConfig, AutoModel

        config = _from_hub(AutoConfig, "speech encoder config", source, revision)
        if config.model_type == "whisper":
            from transformers import WhisperModel

            return cls(_from_hub(WhisperModel, "speech encoder", source, revision).get_encoder())
        if config.model_type not in WAV2VEC2_FAMILY:
            raise EncoderLoadError(f"speech encoder {source!r} is a {config.model_type!r} model; "
                                   f"supported: {', '.join(WAV2VEC2_FAMILY)}, whisper")
        return cls(_from_hub(AutoModel, "speech encoder", source, revision))

    def freeze_feature_encoder(self) -> None:
        """Freezes the CNN feature encoder (spec §1: it stays frozen even when fine-tuning)."""
        if hasattr(self.model, "feature_extractor"):
            for p in self.model.feature_extractor.parameters():
                p.requires_grad = False

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        """``input_values`` (B, N) waveform or (B, n_mels, T) log-mel; mask (B, N or T)."""
        if self.model_type == "whisper":
            return self._forward_whisper(input_values, attention_mask)
        lengths = attention_mask.sum(dim=1)  # (B,)
        out_lengths = self.model._get_feat_extract_output_lengths(lengths).long()  # (B,)
        if self.per_sample:
            rows = [self.model(input_values[i : i + 1, : int(lengths[i])]).last_hidden_state[0]
                    for i in range(input_values.shape[0])]
            features = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, L, E)
        else:
            features = self.model(input_values, attention_mask=attention_mask.long()).last_hidden_state
        positions = torch.arange(features.shape[1], device=features.device)
        return EncoderOutput(features, positions[None, :] < out_lengths[:, None].to(features.device))

    def _forward_whisper(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        features = self.model(input_features).last_hidden_state  # (B, T/2, E)
        frames = attention_mask.sum(dim=1)  # (B,) valid mel frames
        out_lengths = (frames + 1) // 2  # conv2 has stride 2
        positions = torch.arange(features.shape[1], device=features.device)
        return EncoderOutput(features, positions[None, :] < out_lengths[:, None])


class TextEncoder(nn.Module):
    """RoBERTa / BERT family: last hidden state per subword token."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.width = model.config.hidden_size

    @classmethod
    def from_config_dict(cls, data: dict[str, Any]) -> TextEncoder:
        """Builds a randomly initialised encoder from a carried config."""
        from transformers import AutoConfig, AutoModel

        return cls(AutoModel.from_config(AutoConfig.for_model(**data), add_pooling_layer=False))

    @classmethod
    def from_pretrained(cls, source: str, revision: str) -> TextEncoder:
        """Loads a RoBERTa- or BERT-family checkpoint."""
        from transformers import AutoModel

        return cls(_from_hub(AutoModel, "text encoder", source, revision, add_pooling_layer=False))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        """``input_ids`` (B, L) -> features (B, L, E)."""
        features = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return EncoderOutput(features, attention_mask.bool())


ENCODER_CLASSES = {"video": VideoEncoder, "audio": AudioEncoder, "text": TextEncoder}


def build_encoder(modality: str, source: str | None, revision: str, carried: dict[str, Any] | None) -> nn.Module:
    """Builds one modality's encoder: from its carried config if any, else from the Hub/path."""
    cls = ENCODER_CLASSES[modality]
    if carried is not None:
        return cls.from_config_dict(carried)
    assert source is not None, f"{modality}: no encoder id and no carried config"
    logger.info("loading %s encoder %s@%s", modality, source, revision)
    return cls.from_pretrained(source, revision)


def encoder_config_dict(encoder: nn.Module) -> dict[str, Any]:
    """The encoder's own ``transformers`` config, as carried inside ``config.json``."""
    data = encoder.model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype"):
        data.pop(key, None)
    return data
