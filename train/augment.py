"""Waveform augmentation written out as files, so that a frozen encoder's feature cache still works.

With frozen encoders the trainer caches each clip's features once; augmenting on the fly would
defeat the cache. Instead each training clip gets ``k`` augmented copies on disk (16-bit WAV),
listed in the manifest like any other clip. A copy is a deterministic function of the clip's id,
the copy index and the seed, so rebuilding the data gives the same files.

One copy applies, in order: speed perturbation (resampling by a factor in ``SPEEDS``: tempo and
pitch change together, as Kaldi's speed perturbation), a random gain (+-6 dB), a first-order
spectral tilt, and white noise at a random SNR (15-35 dB).
"""

from __future__ import annotations

import io
import wave
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import lfilter, resample_poly

from gia_mic.media import decode_clip
from gia_mic.utils import atomic_write_bytes

SPEEDS = (0.9, 0.95, 1.05, 1.1)
"""Speed factors; copy ``k`` uses ``SPEEDS[(k - 1) % 4]`` so every factor is used as often."""
SAMPLE_RATE = 16000


def augment_waveform(waveform: np.ndarray, speed: float, rng: np.random.Generator) -> np.ndarray:
    """Returns one augmented copy of a mono float waveform (same rate; length scaled by 1/speed)."""
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(f"augment_waveform needs a non-empty mono waveform, got shape {waveform.shape}")
    if not 0.5 <= speed <= 2.0:
        raise ValueError(f"speed factor {speed} is outside [0.5, 2]")
    out = waveform.astype(np.float64)
    if speed != 1.0:
        ratio = Fraction(1 / speed).limit_denominator(100)  # output length / input length
        out = resample_poly(out, ratio.numerator, ratio.denominator)
    out = out * 10 ** (rng.uniform(-6.0, 6.0) / 20)
    out = lfilter([1.0, rng.uniform(-0.5, 0.5)], [1.0], out)
    power = float(np.mean(out**2))
    if power > 0:
        snr_db = rng.uniform(15.0, 35.0)
        out = out + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), out.shape)
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:  # keep 16-bit storage from clipping
        out = out * (0.99 / peak)
    return out.astype(np.float32)


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Writes mono 16-bit PCM atomically (``gia_mic.utils.atomic_write_bytes``)."""
    pcm = (np.clip(waveform, -1.0, 1.0) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def copy_rng(clip_id: str, copy: int, seed: int) -> np.random.Generator:
    """The random stream of one copy: depends on the clip id, the copy index and the seed only."""
    return np.random.default_rng([seed, zlib.crc32(clip_id.encode("utf-8")), copy])


def augmented_copies(source: str | Path, clip_id: str, out_dir: str | Path, copies: int, *,
                     seed: int = 0) -> list[Path]:
    """Writes ``copies`` augmented versions of one clip as ``<out_dir>/<clip_id>-a<k>.wav``.

    Files already there are kept (the copy is deterministic), so an interrupted run resumes.
    The clip is decoded through ``gia_mic.media.decode_clip``, the project's one decoding path.
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    out_dir = Path(out_dir)
    targets = [out_dir / f"{clip_id}-a{k}.wav" for k in range(1, copies + 1)]
    missing = [(k, t) for k, t in enumerate(targets, start=1) if not t.exists()]
    if missing:
        audio = decode_clip(source, num_frames=1, sample_rate=SAMPLE_RATE).audio
        for k, target in missing:
            speed = SPEEDS[(k - 1) % len(SPEEDS)]
            write_wav(target, augment_waveform(audio, speed, copy_rng(clip_id, k, seed)))
    return targets
