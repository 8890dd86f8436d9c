"""The one model config: a validated dataclass that *is* ``config.json``.

Every preprocessing constant (labels, frame count, sample rate, text length), every
encoder id and revision, and every architectural choice of ``SPEC.md`` marked
**[choice]** lives here once and travels inside the checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gia_mic.errors import ConfigError

MODALITIES: tuple[str, ...] = ("video", "audio", "text")
_ALIASES = {"speech": "audio", "visual": "video", "vision": "video", "v": "video", "s": "audio", "a": "audio", "t": "text"}
PRESETS_DIR = Path(__file__).parent / "presets"
MODEL_TYPE = "gia-mic"
"""``model_type`` in ``config.json``: what ``transformers.AutoConfig`` / ``AutoModel`` dispatch on."""
ARCHITECTURES = ["GiaMicForEmotionRecognition"]
"""``architectures`` in ``config.json``: the model class a checkpoint is loaded as."""


# Encoder families each modality accepts (``model_type`` of the carried ``transformers`` config).
ENCODER_FAMILIES: dict[str, tuple[str, ...]] = {
    "video": ("clip", "clip_vision_model"),
    "audio": ("wavlm", "wav2vec2", "hubert", "data2vec-audio", "unispeech", "unispeech-sat", "wav2vec2-conformer",
              "whisper"),
    "text": ("bert", "roberta", "xlm-roberta", "camembert", "data2vec-text", "roberta-prelayernorm"),
}

# Upper bounds on every size a config can ask for, checked before anything is allocated: a
# checkpoint's config.json is untrusted input, and these are far above any released encoder.
SIZE_BOUNDS: dict[str, int] = {
    "hidden_size": 4096, "num_heads": 64, "ffn_multiplier": 16, "num_frames": 64, "max_text_tokens": 4096,
    "mig_kernel": 63, "mig_stride": 16, "gate_pool_kernel": 255, "num_labels": 1000,
}
SAMPLE_RATES = (8000, 48000)
MAX_WINDOW_SECONDS = 120.0
ENCODER_SIZE_BOUNDS: dict[str, int] = {
    "hidden_size": 8192, "d_model": 8192, "projection_dim": 8192, "intermediate_size": 65536,
    "encoder_ffn_dim": 65536, "decoder_ffn_dim": 65536, "num_hidden_layers": 128, "encoder_layers": 128,
    "decoder_layers": 128, "num_attention_heads": 256, "encoder_attention_heads": 256,
    "decoder_attention_heads": 256, "vocab_size": 1_000_000, "type_vocab_size": 1024,
    "max_position_embeddings": 65536, "max_source_positions": 65536, "max_target_positions": 65536,
    "num_mel_bins": 512, "image_size": 4096, "patch_size": 1024, "num_channels": 16,
    "conv_dim": 8192, "conv_kernel": 1024, "conv_stride": 1024, "num_conv_pos_embeddings": 4096,
    "num_conv_pos_embedding_groups": 1024, "num_buckets": 4096, "max_bucket_distance": 65536,
}
ANY_ENCODER_INT_BOUND = 10_000_000  # any other integer in an encoder config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_encoder_config(modality: str, data: Any) -> None:
    """Refuses an unsupported, code-running or oversized carried encoder config.

    Checked before any weight is allocated: the family must be one the modality supports, no
    ``auto_map`` (custom code), and every size within ``ENCODER_SIZE_BOUNDS``.

    Raises:
        ConfigError: naming ``encoder_configs.<modality>.<field>``.
    """
    where = f"encoder_configs.{modality}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a JSON object, got {type(data).__name__}")
    if "auto_map" in data:
        raise ConfigError(f"{where}.auto_map: the encoder config asks to run custom code; gia-mic never runs "
                          "code from a checkpoint")
    family = data.get("model_type")
    if family not in ENCODER_FAMILIES[modality]:
        raise ConfigError(f"{where}.model_type: {family!r} is not a supported {modality} encoder "
                          f"(supported: {', '.join(ENCODER_FAMILIES[modality])})")
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        bound = ENCODER_SIZE_BOUNDS.get(key, ANY_ENCODER_INT_BOUND)
        for v in values:
            if _is_int(v) and v > bound:
                raise ConfigError(f"{where}.{key}: {v} exceeds the bound {bound:,} (no real encoder is that large)")
            if key in ENCODER_SIZE_BOUNDS and isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ConfigError(f"{where}.{key}: must not be negative, got {v}")


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


def modality_set_key(modalities: Any) -> str:
    """``["text", "audio"]`` -> ``"audio+text"``: a modality set's name, in ``MODALITIES`` order."""
    wanted = set(modalities)
    return "+".join(m for m in MODALITIES if m in wanted)


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
        temperature: Calibration temperature T: scores are ``softmax(logits / T)``. Fitted on the
            selection split after training (``train.calibrate``); 1.0 means uncalibrated.
        temperatures: Per modality set, e.g. ``{"audio+text": 1.6, "text": 1.1}`` (keys from
            ``modality_set_key``): the temperature of a row that used exactly those modalities.
            A set not listed uses ``temperature``. One global T over-softens a modality set whose
            selection scores were already calibrated (measured on the lite model: MELD text-only
            ECE 0.06 -> 0.12 under the speech-driven T).
        model_type: Always ``"gia-mic"`` (transformers' key for ``AutoConfig``/``AutoModel``);
            absent from configs saved before it existed, which load the same.
        architectures: Always ``["GiaMicForEmotionRecognition"]`` (transformers' convention).
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
    temperature: float = 1.0
    temperatures: dict[str, float] = field(default_factory=dict)
    model_type: str = MODEL_TYPE
    architectures: list[str] = field(default_factory=lambda: list(ARCHITECTURES))

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

        need(self.model_type == MODEL_TYPE,
             f"model_type: {self.model_type!r} is not a GIA-MIC config (expected {MODEL_TYPE!r})")
        need(self.architectures == ARCHITECTURES,
             f"architectures: {self.architectures!r} is not a GIA-MIC architecture (expected {ARCHITECTURES!r})")
        need(isinstance(self.labels, list) and 2 <= len(self.labels) <= SIZE_BOUNDS["num_labels"],
             f"labels: need at least 2 classes and at most {SIZE_BOUNDS['num_labels']}, got {len(self.labels)}")
        need(all(isinstance(x, str) and 0 < len(x) <= 64 for x in self.labels),
             "labels: every label must be a non-empty string of at most 64 characters")
        need(len(set(self.labels)) == len(self.labels), f"labels: duplicates in {self.labels}")
        for m in self.modalities:
            has_id = getattr(self, f"{m}_encoder") is not None
            need(has_id or m in self.encoder_configs,
                 f"{m}_encoder: the model uses {m} but neither an encoder id nor encoder_configs[{m!r}] is set")
        need(isinstance(self.encoder_configs, dict), "encoder_configs: must be a JSON object")
        unknown = set(self.encoder_configs) - set(MODALITIES)
        need(not unknown, f"encoder_configs: unknown modality keys {sorted(unknown)}")
        for m, data in self.encoder_configs.items():
            check_encoder_config(m, data)
        for name in ("hidden_size", "num_heads", "ffn_multiplier", "num_frames", "sample_rate",
                     "max_text_tokens", "mig_kernel", "mig_stride"):
            value = getattr(self, name)
            need(_is_int(value) and value > 0, f"{name}: must be a positive integer, got {value!r}")
            need(value <= SIZE_BOUNDS.get(name, value), f"{name}: {value} exceeds the bound {SIZE_BOUNDS.get(name)}")
        low, high = SAMPLE_RATES
        need(low <= self.sample_rate <= high, f"sample_rate: {self.sample_rate} Hz is outside {low}-{high} Hz")
        for name in ("min_audio_seconds", "max_audio_seconds"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                 f"{name}: must be a number of seconds, got {value!r}")
        need(self.max_audio_seconds <= MAX_WINDOW_SECONDS,
             f"max_audio_seconds: {self.max_audio_seconds} exceeds the bound {MAX_WINDOW_SECONDS:g} s "
             "(longer recordings are split into segments, not read in one window)")
        need(self.hidden_size % self.num_heads == 0,
             f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        need(_is_int(self.gate_pool_kernel) and 0 <= self.gate_pool_kernel <= SIZE_BOUNDS["gate_pool_kernel"],
             f"gate_pool_kernel: must be 0 (global) or a positive integer up to {SIZE_BOUNDS['gate_pool_kernel']}, "
             f"got {self.gate_pool_kernel!r}")
        need(self.gate_pool_kernel == 0 or self.gate_pool_kernel % 2 == 1,
             f"gate_pool_kernel: must be odd for 'same' padding, got {self.gate_pool_kernel}")
        need(self.mig_kernel % 2 == 1, f"mig_kernel: must be odd, got {self.mig_kernel}")
        for name in ("dropout", "classifier_dropout", "modality_dropout"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and 0.0 <= value < 1.0, f"{name}: must be in [0, 1), got {value!r}")
        need(isinstance(self.temperature, (int, float)) and not isinstance(self.temperature, bool)
             and math.isfinite(self.temperature) and 0.01 <= self.temperature <= 100.0,
             f"temperature: must be a number in [0.01, 100], got {self.temperature!r}")
        need(isinstance(self.temperatures, dict), f"temperatures: must be an object, got {self.temperatures!r}")
        for key, value in self.temperatures.items():
            parts = key.split("+") if isinstance(key, str) else []
            need(bool(parts) and all(m in self.modalities for m in parts) and key == modality_set_key(parts),
                 f"temperatures: key {key!r} must be a '+'-joined set of this model's modalities "
                 f"in the order {'+'.join(m for m in MODALITIES if m in self.modalities)}")
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                 and 0.01 <= value <= 100.0, f"temperatures[{key!r}]: must be a number in [0.01, 100], got {value!r}")
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

    def temperature_for(self, modalities: Any = None) -> float:
        """The calibration temperature of a row that used ``modalities`` (``None``: the global one)."""
        if modalities is None:
            return float(self.temperature)
        return float(self.temperatures.get(modality_set_key(modalities), self.temperature))

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
