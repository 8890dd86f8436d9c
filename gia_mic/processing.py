"""The one preprocessing path: raw frames / waveform / transcript -> model inputs.

Training, inference, the app and the tests all go through ``GiaMicProcessor``. Its
constants (frame count, sample rate, text length) come from the model config; its
components (image processor, feature extractor, tokenizer) are saved beside the weights
in ``image_processor/``, ``feature_extractor/`` and ``tokenizer/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gia_mic.configuration import MODALITIES, GiaMicConfig, normalize_modalities
from gia_mic.encoders import EncoderLoadError, load_error
from gia_mic.errors import InputError
from gia_mic.text import clean_text

logger = logging.getLogger(__name__)

COMPONENT_DIRS = {"video": "image_processor", "audio": "feature_extractor", "text": "tokenizer"}


def _default_component(modality: str, config: GiaMicConfig) -> Any:
    """Components for encoders built from a carried config with no Hub id (the tiny preset)."""
    carried = config.encoder_configs.get(modality, {})
    if modality == "video":
        try:  # the PIL backend: torchvision is not a dependency
            from transformers import CLIPImageProcessorPil as CLIPImageProcessor
        except ImportError:
            from transformers import CLIPImageProcessor

        size = carried.get("image_size", 224)
        return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    if modality == "audio":
        if carried.get("model_type") == "whisper":
            from transformers import WhisperFeatureExtractor

            return WhisperFeatureExtractor(feature_size=carried.get("num_mel_bins", 80), sampling_rate=config.sample_rate)
        from transformers import Wav2Vec2FeatureExtractor

        return Wav2Vec2FeatureExtractor(sampling_rate=config.sample_rate, do_normalize=True, return_attention_mask=True)
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizerFast

    # A byte-level tokenizer built in code (one id per byte, no merges, RoBERTa's special ids):
    # encoders built from a carried config have no vocabulary to go with them, and a debug model
    # needs no file or download.
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({char: i + 4 for i, char in enumerate(sorted(ByteLevel.alphabet()))})
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizerFast(vocab=vocab, merges=[], model_max_length=512)


def _hub_component(modality: str, source: str, revision: str) -> Any:
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    loader = {"video": AutoImageProcessor, "audio": AutoFeatureExtractor, "text": AutoTokenizer}[modality]
    try:
        return loader.from_pretrained(source, revision=revision, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise load_error(f"{modality} preprocessor", source, revision, err) from None


# Component classes a checkpoint may name (``*_type`` / ``tokenizer_class`` in its JSON); each is
# loaded by this explicit class, so no file of the checkpoint can pick code to run.
COMPONENT_CLASSES: dict[str, tuple[str, str, tuple[str, ...]]] = {  # modality -> (file, key, classes)
    "video": ("preprocessor_config.json", "image_processor_type",
              ("CLIPImageProcessor", "CLIPImageProcessorFast", "CLIPImageProcessorPil")),
    "audio": ("preprocessor_config.json", "feature_extractor_type",
              ("WhisperFeatureExtractor", "Wav2Vec2FeatureExtractor")),
    "text": ("tokenizer_config.json", "tokenizer_class",
             ("BertTokenizer", "BertTokenizerFast", "RobertaTokenizer", "RobertaTokenizerFast",
              "XLMRobertaTokenizer", "XLMRobertaTokenizerFast", "CamembertTokenizer", "CamembertTokenizerFast",
              "PreTrainedTokenizerFast")),
}
MAX_COMPONENT_JSON_BYTES = 64 * 1024 * 1024
MAX_COMPONENT_INT = 10_000_000  # image / audio preprocessing sizes (frame counts, FFT sizes, pixels)


def _read_component_json(file: Path) -> Any:
    if file.stat().st_size > MAX_COMPONENT_JSON_BYTES:
        raise EncoderLoadError(f"{file} is larger than {MAX_COMPONENT_JSON_BYTES >> 20} MB; refused")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EncoderLoadError(f"{file} is not valid JSON ({err})") from None


def _walk_ints(data: Any, prefix: str = "") -> Iterator[tuple[str, int]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _walk_ints(v, f"{prefix}{k}.")
    elif isinstance(data, list):
        for v in data:
            yield from _walk_ints(v, prefix)
    elif isinstance(data, int) and not isinstance(data, bool):
        yield prefix.rstrip("."), data


def component_class(modality: str, folder: Path, config: GiaMicConfig) -> type:
    """The explicit ``transformers`` class of a checkpoint's processor folder, after safety checks.

    Refuses a folder that ships Python files or whose JSON asks for custom code (``auto_map``),
    names a class outside ``COMPONENT_CLASSES``, or asks for sizes no real preprocessor uses.

    Raises:
        EncoderLoadError: in one line naming the file.
    """
    import transformers

    code = sorted(p.name for p in folder.iterdir() if p.suffix in (".py", ".pyc", ".so"))
    if code:
        raise EncoderLoadError(f"{folder} contains code ({', '.join(code)}); gia-mic never runs code from a checkpoint")
    for file in sorted(folder.glob("*.json")):
        data = _read_component_json(file)
        if isinstance(data, dict) and "auto_map" in data:
            raise EncoderLoadError(f"{file} asks to run custom code (auto_map); gia-mic never runs code from a checkpoint")
        if modality != "text":
            for key, value in _walk_ints(data):
                if abs(value) > MAX_COMPONENT_INT:
                    raise EncoderLoadError(f"{file}: {key} = {value} exceeds the bound {MAX_COMPONENT_INT:,}")
    name, key, allowed = COMPONENT_CLASSES[modality]
    file = folder / name
    if not file.is_file():
        raise EncoderLoadError(f"{folder} has no {name}")
    data = _read_component_json(file)
    chosen = data.get(key) if isinstance(data, dict) else None
    if chosen not in allowed:
        raise EncoderLoadError(f"{file}: {key} {chosen!r} is not a supported {modality} preprocessor "
                               f"(supported: {', '.join(allowed)})")
    rate = data.get("sampling_rate")
    if modality == "audio" and rate != config.sample_rate:
        raise EncoderLoadError(f"{file}: sampling_rate {rate!r} differs from the model's sample_rate {config.sample_rate}")
    if chosen == "CLIPImageProcessor" and hasattr(transformers, "CLIPImageProcessorPil"):
        chosen = "CLIPImageProcessorPil"  # the same preprocessing on PIL: torchvision is not a dependency
    return getattr(transformers, chosen)


class GiaMicProcessor:
    """Turns raw clips into batched model inputs.

    Args:
        config: The model config (constants and modalities).
        components: Per modality, its image processor / feature extractor / tokenizer.
    """

    def __init__(self, config: GiaMicConfig, components: dict[str, Any]) -> None:
        missing = [m for m in config.modalities if m not in components]
        if missing:
            raise EncoderLoadError(f"processor components missing for: {', '.join(missing)}")
        self.config = config
        self.components = components

    # ------------------------------------------------------------------ construction / IO
    @classmethod
    def from_config(cls, config: GiaMicConfig) -> GiaMicProcessor:
        """Loads each component from its encoder's Hub id/path (or builds the default)."""
        components = {}
        for m in config.modalities:
            source, revision = config.encoder_source(m)
            components[m] = _hub_component(m, source, revision) if source else _default_component(m, config)
        return cls(config, components)

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: GiaMicConfig) -> GiaMicProcessor:
        """Loads the components saved beside a checkpoint's weights."""
        components = {}
        for m in config.modalities:
            path = Path(directory) / COMPONENT_DIRS[m]
            if not path.is_dir():
                raise EncoderLoadError(f"checkpoint {directory} has no {COMPONENT_DIRS[m]}/ folder for {m}: "
                                       "it was not saved by gia_mic, or is incomplete")
            loader = component_class(m, path, config)
            try:
                components[m] = loader.from_pretrained(str(path), trust_remote_code=False)
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise EncoderLoadError(f"could not read {path}: {str(err).splitlines()[0] if str(err) else err}") from None
        return cls(config, components)

    def save_pretrained(self, directory: str | Path) -> None:
        """Writes each component into its own sub-folder of ``directory``."""
        for m, component in self.components.items():
            component.save_pretrained(str(Path(directory) / COMPONENT_DIRS[m]))

    # ------------------------------------------------------------------ single inputs
    def decode(self, path: str | Path, *, start: float = 0.0, end: float | None = None,
               decoder: Any = None) -> Any:
        """Decodes a media file with the config's frame count, sample rate and limits.

        ``start``/``end`` (seconds) decode only that window of the file, e.g. one utterance
        of a long dialog recording. ``decoder`` replaces ``media.decode_clip`` with a callable
        of the same signature, e.g. an ``isolation.IsolatedDecoder`` for untrusted files.
        """
        from gia_mic.media import decode_clip

        c = self.config
        return (decoder or decode_clip)(path, num_frames=c.num_frames, sample_rate=c.sample_rate,
                                        min_seconds=c.min_audio_seconds, max_seconds=c.max_audio_seconds,
                                        start=start, end=end)

    def prepare_waveform(self, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, bool]:
        """Mono, resampled, length-checked float32 waveform for an array input, and whether it was cut."""
        from gia_mic.waveform import prepare_waveform

        c = self.config
        return prepare_waveform(waveform, sample_rate, target_rate=c.sample_rate,
                                min_seconds=c.min_audio_seconds, max_seconds=c.max_audio_seconds)

    # ------------------------------------------------------------------ batching
    def __call__(self, *, frames: Sequence[np.ndarray | None] | None = None,
                 audio: Sequence[np.ndarray | None] | None = None,
                 text: Sequence[str | None] | None = None, modalities: object = None) -> dict[str, torch.Tensor]:
        """Batches raw inputs; ``None`` entries mark a modality missing for that sample.

        Args:
            frames: Per sample ``(F, H, W, 3)`` uint8 frames (``F == num_frames``) or None.
            audio: Per sample mono float32 waveform at ``sample_rate`` or None.
            text: Per sample transcript or None.
            modalities: Subset to use; others are dropped here (their encoders never run).

        Returns:
            ``pixel_values``, ``audio_values`` + ``audio_attention_mask``, ``input_ids`` +
            ``text_attention_mask`` (each only when some sample has it) and
            ``modality_mask`` ``(B, 3)``.
        """
        wanted = set(normalize_modalities(modalities)) & set(self.config.modalities)
        columns = {"video": frames, "audio": audio, "text": text}
        sizes = {len(v) for v in columns.values() if v is not None}
        if len(sizes) != 1:
            raise InputError(f"frames, audio and text must be lists of one length per batch, got sizes {sorted(sizes)}")
        batch = sizes.pop()
        if batch == 0:
            raise InputError("empty batch")
        columns["text"] = [clean_text(t) for t in text] if text is not None else None
        present = torch.zeros(batch, len(MODALITIES), dtype=torch.bool)
        out: dict[str, torch.Tensor] = {}
        for i, m in enumerate(MODALITIES):
            values = columns[m]
            if m not in wanted or values is None or all(v is None for v in values):
                continue
            present[:, i] = torch.tensor([v is not None for v in values])
            out.update(getattr(self, f"_batch_{m}")(values))
        out["modality_mask"] = present
        return out

    def _batch_video(self, frames: Sequence[np.ndarray | None]) -> dict[str, torch.Tensor]:
        f = self.config.num_frames
        filler = next(x for x in frames if x is not None)
        images = []
        for x in frames:
            x = np.zeros_like(filler) if x is None else x
            if x.ndim != 4 or x.shape[0] != f or x.shape[-1] != 3:
                raise InputError(f"frames must be ({f}, H, W, 3) uint8, got shape {tuple(x.shape)}")
            images.extend(list(x))
        pixels = self.components["video"](images=images, return_tensors="pt")["pixel_values"]  # (B*F, 3, H, W)
        return {"pixel_values": pixels.view(len(frames), f, *pixels.shape[1:])}  # (B, F, 3, H, W)

    def _batch_audio(self, audio: Sequence[np.ndarray | None]) -> dict[str, torch.Tensor]:
        min_len = int(self.config.min_audio_seconds * self.config.sample_rate)
        waves = [np.zeros(min_len, np.float32) if a is None else np.asarray(a, np.float32) for a in audio]
        for a in waves:
            if a.ndim != 1 or len(a) < min_len:
                raise InputError(f"audio must be mono with at least {min_len} samples, got shape {a.shape}")
        extractor = self.components["audio"]
        if type(extractor).__name__ == "WhisperFeatureExtractor":
            # Whisper's encoder takes exactly 30 s (or its configured window) of log-mel frames.
            window = self.config.encoder_configs["audio"].get("max_source_positions", 1500) * 2
            feats = extractor(waves, sampling_rate=self.config.sample_rate, return_tensors="pt",
                              return_attention_mask=True, padding="max_length",
                              max_length=window * extractor.hop_length, truncation=True)
            return {"audio_values": feats["input_features"], "audio_attention_mask": feats["attention_mask"]}
        feats = extractor(waves, sampling_rate=self.config.sample_rate, return_tensors="pt",
                          padding=True, return_attention_mask=True)
        return {"audio_values": feats["input_values"], "audio_attention_mask": feats["attention_mask"]}

    def _batch_text(self, text: Sequence[str | None]) -> dict[str, torch.Tensor]:
        enc = self.components["text"]([t or "" for t in text], padding=True, truncation=True,
                                      max_length=self.config.max_text_tokens, return_tensors="pt")
        # Rows without text still get a valid (empty) encoding; ``modality_mask`` marks them absent.
        return {"input_ids": enc["input_ids"], "text_attention_mask": enc["attention_mask"]}
