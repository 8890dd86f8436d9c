"""Samples, corpus readers (manifest CSV, synthetic), label mapping and speaker-independent folds.

A ``Sample`` names where a clip's modalities come from; ``load_raw`` turns it into raw
frames / waveform / transcript through the processor's one decoding path
(``GiaMicProcessor.decode``). Everything after that goes through the processor too.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gia_mic.configuration import ConfigError
from gia_mic.errors import InputError
from gia_mic.manifest import read_manifest as read_rows
from gia_mic.media import is_audio_file
from hub_card import fold_key

logger = logging.getLogger(__name__)

VAL_SPLITS = ("val", "valid", "validation", "dev")
SYNTHETIC_WORDS = {
    "neutral": ["okay", "fine", "normal", "alright"],
    "happy": ["great", "wonderful", "love", "glad"],
    "angry": ["hate", "furious", "stupid", "annoyed"],
    "sad": ["sorry", "miss", "lonely", "tired"],
}


@dataclass(frozen=True)
class Sample:
    """One utterance.

    Attributes:
        id: Unique id (also the feature-cache file name stem).
        label: Class index into the model's labels.
        speaker: Speaker id (splits never put one speaker on both sides).
        video: File with the frames (may also carry the audio), or ``None``.
        audio: File with the speech, or ``None``; may equal ``video``.
        text: Transcript, or ``None``.
        start: Window start in ``video`` (and in ``audio`` when it is the same file), seconds.
        end: Window end, or ``None`` for the end of the file.
        crop: ``"left"`` / ``"right"``: keep that half of every frame (IEMOCAP); ``None``: all.
        split: ``"train"`` or ``"val"`` when the corpus fixes the split.
        fold: Cross-validation group (IEMOCAP session) when the corpus fixes folds.
        synthetic_seed: Set for generated samples: the seed of their content.
        weight: Weight of the sample's cross-entropy in training (manifest column ``weight``).
        corpus: Name of the corpus the row comes from (manifest column ``corpus``), for
            validation metrics per corpus when a run mixes corpora.
    """

    id: str
    label: int
    speaker: str
    video: str | None = None
    audio: str | None = None
    text: str | None = None
    start: float = 0.0
    end: float | None = None
    crop: str | None = None
    split: str | None = None
    fold: str | None = None
    synthetic_seed: int | None = None
    weight: float = 1.0
    corpus: str | None = None


@dataclass
class Fold:
    """One train/validation partition; ``name`` is ``"0"`` for a single split."""

    name: str
    train: list[Sample]
    val: list[Sample]


@dataclass
class RawClip:
    """Raw inputs of one sample (``None`` where a modality is absent)."""

    frames: np.ndarray | None = None
    audio: np.ndarray | None = None
    text: str | None = None


def map_label(raw: str, labels: Sequence[str], label_map: dict[str, str]) -> int | None:
    """Class index of a raw emotion name via ``label_map`` (case-insensitive), else ``None``."""
    name = str(raw).strip().lower()
    lowered = {k.lower(): v for k, v in label_map.items()}
    name = lowered.get(name, name)
    return list(labels).index(name) if name in labels else None


# ---------------------------------------------------------------------- manifest CSV
def _weight(value: str, path: Path, line: int) -> float:
    if not value:
        return 1.0
    try:
        weight = float(value)
    except ValueError:
        raise ConfigError(f"{path} line {line}: weight {value!r} is not a number") from None
    if not weight > 0:
        raise ConfigError(f"{path} line {line}: weight must be > 0, got {value}")
    return weight


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def read_manifest(path: str | Path, *, labels: Sequence[str], label_map: dict[str, str],
                  root: str | Path | None = None) -> tuple[list[Sample], Counter]:
    """Reads a corpus CSV.

    Columns (case-insensitive): ``path`` (a video with sound, or an audio file; empty for
    text-only rows) or ``video`` and ``audio``; ``transcript`` (or ``text``); ``label`` (or
    ``emotion``); ``speaker`` (or ``actor``); optional ``split`` (train / val|dev / test),
    ``fold``, ``id``, ``weight`` (the sample's loss weight, default 1) and ``corpus`` (for
    validation metrics per corpus). Relative
    paths are taken from ``root`` (default: the CSV's folder).

    Returns:
        The samples, and per raw label the number of rows dropped because it maps to no
        model label (``test`` rows are counted under ``"<split test>"``).

    Raises:
        ConfigError: the file is missing or has no label or speaker column.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.manifest: file not found: {path}")
    try:  # a researcher's own training manifest may point anywhere (train.prepare writes absolute paths)
        rows = read_rows(path, root=root, allow_outside_root=True, required=(("label", "emotion"), ("speaker", "actor")))
    except InputError as err:
        raise ConfigError(str(err)) from None
    samples, dropped = [], Counter()
    for i, row in enumerate(rows):
        if row.error:
            raise ConfigError(f"{path} line {row.line}: {row.error}")
        raw_label = row.get("label", "emotion")
        label = map_label(raw_label, labels, label_map)
        split = row.get("split").lower() or None
        if label is None:
            dropped[raw_label] += 1
            continue
        if split == "test":
            dropped["<split test>"] += 1
            continue
        speech_from_video = row.media is not None and not is_audio_file(row.media)  # the video's own audio track
        audio = row.audio or (row.media if speech_from_video else None)
        samples.append(Sample(
            id=row.get("id") or f"{path.stem}-{i:06d}", label=label, speaker=row.get("speaker", "actor"),
            video=_str(row.video), audio=_str(audio), text=row.get("transcript", "text") or None,
            split="val" if split in VAL_SPLITS else split, fold=row.get("fold") or None,
            weight=_weight(row.get("weight"), path, row.line), corpus=row.get("corpus") or None,
        ))
    if dropped:
        logger.info("%s: dropped %d rows outside the label map: %s", path.name, sum(dropped.values()), dict(dropped))
    return samples, dropped


# ---------------------------------------------------------------------- synthetic corpus
def synthetic_samples(*, count: int, speakers: int, labels: Sequence[str], seed: int) -> list[Sample]:
    """A balanced generated corpus: every speaker speaks every class; content from a seed."""
    samples = []
    for i in range(count):
        label = i % len(labels)
        rng = random.Random(seed * 1_000_003 + i)
        words = SYNTHETIC_WORDS.get(labels[label], [labels[label]])
        filler = rng.sample(["today", "really", "you", "know", "that", "is", "so", "just"], 3)
        text = " ".join(["i", "feel", rng.choice(words), *filler])
        samples.append(Sample(id=f"syn-{seed}-{i:06d}", label=label, speaker=f"spk{(i // len(labels)) % speakers:02d}",
                              text=text, synthetic_seed=seed * 1_000_003 + i))
    return samples


def synthetic_media(sample: Sample, *, num_frames: int, sample_rate: int, seconds: float,
                    num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(F, 32, 32, 3)`` uint8 and a mono waveform whose colour and pitch carry the class."""
    rng = np.random.default_rng(sample.synthetic_seed)
    hue = sample.label / max(num_labels, 1)
    colour = 255 * (0.5 + 0.4 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3]))))
    frames = np.clip(colour + rng.normal(0, 40, (num_frames, 32, 32, 3)), 0, 255).astype(np.uint8)
    n = int(sample_rate * seconds * rng.uniform(0.8, 1.0))
    t = np.arange(n) / sample_rate
    tone = 0.4 * np.sin(2 * np.pi * 150.0 * (sample.label + 1) * t)
    audio = (tone + rng.normal(0, 0.1, n)).astype(np.float32)
    return frames, np.clip(audio, -1, 1)


# ---------------------------------------------------------------------- raw inputs
def crop_frames(frames: np.ndarray, side: str | None) -> np.ndarray:
    """Keeps the left or right half of ``(F, H, W, 3)`` frames (IEMOCAP's two actors)."""
    if side is None:
        return frames
    half = frames.shape[2] // 2
    if side == "left":
        return np.ascontiguousarray(frames[:, :, :half])
    if side == "right":
        return np.ascontiguousarray(frames[:, :, half:])
    raise ValueError(f"crop side must be 'left', 'right' or None, got {side!r}")


def load_raw(sample: Sample, processor, modalities: Iterable[str], *, synthetic_seconds: float = 1.0) -> RawClip:
    """Raw frames / audio / text of one sample for the wanted modalities.

    Files go through ``processor.decode`` (the one decoding path); a ``video`` window
    (``start``/``end``) and crop apply to the frames, and to the audio only when it comes
    from the same file.

    Raises:
        gia_mic.media.MediaError: a file cannot be decoded (the message names the sample).
    """
    from gia_mic.media import MediaError

    wanted = set(modalities)
    config = processor.config
    clip = RawClip(text=sample.text if "text" in wanted else None)
    if sample.synthetic_seed is not None:
        frames, audio = synthetic_media(sample, num_frames=config.num_frames, sample_rate=config.sample_rate,
                                        seconds=synthetic_seconds, num_labels=config.num_labels)
        clip.frames = frames if "video" in wanted else None
        clip.audio = audio if "audio" in wanted else None
        return clip
    try:
        if "video" in wanted and sample.video:
            decoded = processor.decode(sample.video, start=sample.start, end=sample.end)
            clip.frames = crop_frames(decoded.frames, sample.crop) if decoded.frames is not None else None
            if "audio" in wanted and sample.audio == sample.video:
                clip.audio = decoded.audio
        if "audio" in wanted and sample.audio and sample.audio != sample.video:
            clip.audio = processor.decode(sample.audio).audio
    except MediaError as err:
        raise MediaError(f"sample {sample.id}: {err}") from None
    return clip


# ---------------------------------------------------------------------- splits
def make_folds(samples: list[Sample], *, val_fraction: float, num_folds: int, seed: int,
               only: Sequence[str] = ()) -> list[Fold]:
    """Train/validation partitions.

    A ``fold`` column gives leave-one-fold-out; else a ``split`` column gives one split;
    else speakers are shuffled with ``seed`` and either ``val_fraction`` of them are held
    out (``num_folds == 1``) or they are dealt into ``num_folds`` groups (leave-one-group-out).
    No speaker is ever on both sides.
    """
    if not samples:
        raise ConfigError("the data set is empty (after dropping labels outside the label map)")
    if any(s.fold is not None for s in samples):
        names = sorted({s.fold for s in samples if s.fold is not None}, key=fold_key)
        folds = [Fold(n, [s for s in samples if s.fold != n], [s for s in samples if s.fold == n]) for n in names]
    elif any(s.split is not None for s in samples):
        folds = [Fold("0", [s for s in samples if s.split == "train"], [s for s in samples if s.split == "val"])]
    else:
        speakers = sorted({s.speaker for s in samples})
        if len(speakers) < 2:
            raise ConfigError("a speaker-independent split needs at least 2 speakers")
        random.Random(seed).shuffle(speakers)
        if num_folds > 1:
            groups = [set(speakers[k::num_folds]) for k in range(min(num_folds, len(speakers)))]
        else:
            n_val = min(len(speakers) - 1, max(1, round(len(speakers) * val_fraction)))
            groups = [set(speakers[:n_val])]
        folds = [Fold(str(k + 1) if num_folds > 1 else "0", [s for s in samples if s.speaker not in g],
                      [s for s in samples if s.speaker in g]) for k, g in enumerate(groups)]
    if only:
        unknown = sorted(set(only) - {f.name for f in folds})
        if unknown:
            raise ConfigError(f"data.folds: no fold named {unknown}; folds are {[f.name for f in folds]}")
        folds = [f for f in folds if f.name in set(only)]
    for f in folds:
        if not f.train or not f.val:
            raise ConfigError(f"fold {f.name}: {len(f.train)} training and {len(f.val)} validation samples; both must be > 0")
    return folds
