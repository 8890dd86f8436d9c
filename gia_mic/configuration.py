"""The one model config: a validated dataclass that *is* ``config.json``.

Every preprocessing constant (labels, frame count, sample rate, text length), every
encoder id and revision, and every architectural choice of ``SPEC.md`` marked
**[choice]** lives here once and travels inside the checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODALITIES: tuple[str, ...] = ("video", "audio", "text")
_ALIASES = {"speech": "audio", "visual": "video", "vision": "video", "v": "video", "s": "audio", "a": "audio", "t": "text"}
PRESETS_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A config value or field is invalid; the message names it."""


def normalize_modalities(modalities: Any) -> tuple[str, ...]:
    """Turns ``"video,audio"`` or ``["speech", "text"]`` into canonical, ordered names.

    Raises:
        ConfigError: on an unknown name or an empty set.
    """
    if modalities is None:
        return MODALITIES
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split(",") if m.strip()]
    names = []
    for m in modalities:
        key = str(m).strip().lower()
        key = _ALIASES.get(key, key)
        if key not in MODALITIES:
            raise ConfigError(f"unknown modality {m!r}: choose from video, audio (alias speech), text")
        names.append(key)
    if not names:
        raise ConfigError("the modality set is empty: give at least one of video, audio, text")
    return tuple(m for m in MODALITIES if m in names)


@dataclass
class GiaMicConfig:
    """GIA-MIC model configuration (``SPEC.md`` sections 1-6 and 8).

    Attributes:
        labels: Class names, in logit order.
        modalities: Modalities the checkpoint was trained with; an encoder is built for
            each. Inference may use any non-empty subset of them.
        video_encoder: Hub id or local path of a CLIP checkpoint (vision tower used).
            ``None`` with ``encoder_configs["video"]`` set builds it from that config.
        video_encoder_revision: Hub revision (branch, tag or commit) of ``video_encoder``.
        audio_encoder: Hub id or path of a WavLM / wav2vec2 / HuBERT / Whisper checkpoint.
        audio_encoder_revision: Hub revision of ``audio_encoder``.
        text_encoder: Hub id or path of a RoBERTa- or BERT-family checkpoint.
        text_encoder_revision: Hub revision of ``text_encoder``.
        encoder_configs: Per modality, the encoder's own ``transformers`` config dict.
            Filled when a checkpoint is saved so that loading never touches another repo.
        freeze_video_encoder: Keep the video encoder frozen (spec: frozen).
        freeze_audio_encoder: Keep the speech encoder frozen (spec: fine-tuned, with its
            CNN feature encoder frozen either way).
        freeze_text_encoder: Keep the text encoder frozen (spec: frozen).
        hidden_size: Model width D.
        num_heads: Attention heads in every attention block.
        ffn_multiplier: Feed-forward width of the feature extractor, in units of D.
        dropout: Dropout of the feature extractor and attention blocks [choice].
        classifier_dropout: Dropout between the classifier's two linear layers.
        num_frames: Video frames sampled uniformly over a clip.
        sample_rate: Audio sample rate in Hz (mono).
        min_audio_seconds: Shorter clips are rejected with a clear error.
        max_audio_seconds: Longer clips are truncated to this length (documented).
        max_text_tokens: Transcripts are truncated to this many tokens.
        mic_weight: gamma in ``L = CE + gamma * L_MIR``; 0 is the "without MIC" ablation.
        gate_pool_kernel: Kernel of the masked token-axis average pool in the GIA gate;
            0 means a global pool (one gate vector per clip) [choice].
        mig_kernel: Kernel of the MIG strided convolution [choice].
        mig_stride: Stride of the MIG strided convolution and residual pool [choice].
        mig_shared_weights: One MIG block shared by the three modalities [choice].
        modality_dropout: Per-sample probability, in training, of dropping each present
            modality (at least one is always kept).
        use_msr: ``False`` is the "without MSR" ablation (GIA removed, MSR := H).
        use_mir: ``False`` is the "without MIR" ablation (classifier on the MSR only).
    """

    labels: list[str] = field(default_factory=lambda: ["neutral", "happy", "angry", "sad"])
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    video_encoder: str | None = "openai/clip-vit-large-patch14"
    video_encoder_revision: str = "main"
    audio_encoder: str | None = "microsoft/wavlm-large"
    audio_encoder_revision: str = "main"
    text_encoder: str | None = "FacebookAI/roberta-base"
    text_encoder_revision: str = "main"
    encoder_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    freeze_video_encoder: bool = True
    freeze_audio_encoder: bool = False
    freeze_text_encoder: bool = True
    hidden_size: int = 768
    num_heads: int = 8
    ffn_multiplier: int = 4
    dropout: float = 0.1
    classifier_dropout: float = 0.1
    num_frames: int = 8
    sample_rate: int = 16000
    min_audio_seconds: float = 0.1
    max_audio_seconds: float = 30.0
    max_text_tokens: int = 128
    mic_weight: float = 0.1
    gate_pool_kernel: int = 3
    mig_kernel: int = 3
    mig_stride: int = 2
    mig_shared_weights: bool = False
    modality_dropout: float = 0.0
    use_msr: bool = True
    use_mir: bool = True

    def __post_init__(self) -> None:
        self.modalities = list(normalize_modalities(self.modalities))
        self.labels = list(self.labels)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Checks every field; raises ``ConfigError`` naming the first bad one."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(len(self.labels) >= 2, f"labels: need at least 2 classes, got {self.labels}")
        need(all(isinstance(x, str) and x for x in self.labels), "labels: every label must be a non-empty string")
        need(len(set(self.labels)) == len(self.labels), f"labels: duplicates in {self.labels}")
        for m in self.modalities:
            has_id = getattr(self, f"{m}_encoder") is not None
            need(has_id or m in self.encoder_configs,
                 f"{m}_encoder: the model uses {m} but neither an encoder id nor encoder_configs[{m!r}] is set")
        unknown = set(self.encoder_configs) - set(MODALITIES)
        need(not unknown, f"encoder_configs: unknown modality keys {sorted(unknown)}")
        for name in ("hidden_size", "num_heads", "ffn_multiplier", "num_frames", "sample_rate",
                     "max_text_tokens", "mig_kernel", "mig_stride"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name}: must be a positive integer, got {value!r}")
        need(self.hidden_size % self.num_heads == 0,
             f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        need(isinstance(self.gate_pool_kernel, int) and self.gate_pool_kernel >= 0,
             f"gate_pool_kernel: must be 0 (global) or a positive integer, got {self.gate_pool_kernel!r}")
        need(self.gate_pool_kernel == 0 or self.gate_pool_kernel % 2 == 1,
             f"gate_pool_kernel: must be odd for 'same' padding, got {self.gate_pool_kernel}")
        need(self.mig_kernel % 2 == 1, f"mig_kernel: must be odd, got {self.mig_kernel}")
        for name in ("dropout", "classifier_dropout", "modality_dropout"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and 0.0 <= value < 1.0, f"{name}: must be in [0, 1), got {value!r}")
        need(isinstance(self.mic_weight, (int, float)) and self.mic_weight >= 0,
             f"mic_weight: must be >= 0, got {self.mic_weight!r}")
        need(0 < self.min_audio_seconds < self.max_audio_seconds,
             f"min_audio_seconds ({self.min_audio_seconds}) must be > 0 and < max_audio_seconds ({self.max_audio_seconds})")

    # ------------------------------------------------------------------ helpers
    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.labels)

    @property
    def label2id(self) -> dict[str, int]:
        """Label name to logit index."""
        return {label: i for i, label in enumerate(self.labels)}

    def encoder_source(self, modality: str) -> tuple[str | None, str]:
        """The (id or path, revision) of one modality's encoder."""
        return getattr(self, f"{modality}_encoder"), getattr(self, f"{modality}_encoder_revision")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; exactly the contents of ``config.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GiaMicConfig:
        """Builds a config, refusing unknown fields with a suggestion.

        Raises:
            ConfigError: on an unknown field or an invalid value.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a GIA-MIC config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, known, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"unknown config field(s): {', '.join(hints)}")
        return cls(**data)

    def to_json_file(self, path: str | Path) -> None:
        """Writes ``config.json`` atomically."""
        from gia_mic.utils import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json_file(cls, path: str | Path) -> GiaMicConfig:
        """Reads a ``config.json`` (or a preset file)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GiaMicConfig:
        """Loads ``paper``, ``base`` or ``tiny`` from ``gia_mic/presets/``, with overrides.

        ``encoder_configs`` overrides are merged per modality; carried configs of modalities
        not in ``modalities`` are dropped.
        """
        path = PRESETS_DIR / f"{name}.json"
        if not path.exists():
            available = sorted(p.stem for p in PRESETS_DIR.glob("*.json"))
            raise ConfigError(f"unknown preset {name!r}: available presets are {available}")
        data = json.loads(path.read_text(encoding="utf-8"))
        carried = {**data.get("encoder_configs", {}), **overrides.pop("encoder_configs", {})}
        data.update(overrides)
        data["encoder_configs"] = {m: c for m, c in carried.items() if m in data.get("modalities", MODALITIES)}
        return cls.from_dict(data)
