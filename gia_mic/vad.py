"""Voice activity: where a long recording has speech, with Silero VAD (MIT; model inside the wheel).

The recording arrives in chunks (``audio_stream.stream_audio``). The TorchScript model scores every
32-ms window (512 samples at 16 kHz) with its recurrent state carried from chunk to chunk, so
the scores equal those of one call over the whole signal, and only one float per window is
kept (~112,500 for an hour). ``silero_vad.get_speech_timestamps_from_probs`` then turns the
scores into regions (hysteresis, minimum speech and silence, padding, and a split of regions
longer than the model window at their longest pause).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

VAD_RATE = 16000
"""The rate the Silero model scores (it also takes 8 kHz; gia_mic always feeds 16 kHz)."""
WINDOW = 512
"""Samples per scored window at ``VAD_RATE``."""

_import_lock = threading.Lock()


class VadUnavailable(RuntimeError):
    """silero-vad is not installed; the message says how to get it or what to use instead."""


@dataclass(frozen=True)
class VadOptions:
    """How speech scores become regions (``silero_vad.get_speech_timestamps_from_probs``).

    Attributes:
        threshold: A window whose score is at least this starts or continues speech.
        min_speech_seconds: Shorter regions are dropped.
        min_silence_seconds: A pause must last this long to end a region; shorter pauses
            (between words of one sentence) stay inside it.
        pad_seconds: Each region is widened by this much on both sides (never past its
            neighbours or the recording). The defaults were chosen on RAVDESS actors 15-16
            (``benchmarks/timeline.py --actors 15-16``): 0.2 s gave boundary F1 0.931 and
            0.940 of speech time labelled right, against 0.924 and 0.925 with 0.1 s.
    """

    threshold: float = 0.5
    min_speech_seconds: float = 0.25
    min_silence_seconds: float = 0.3
    pad_seconds: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if min(self.min_speech_seconds, self.min_silence_seconds, self.pad_seconds) < 0:
            raise ValueError("min_speech_seconds, min_silence_seconds and pad_seconds must be >= 0")


def _silero():
    """The ``silero_vad`` module; importing it must not change torch's thread count."""
    with _import_lock:
        threads = torch.get_num_threads()
        try:
            import silero_vad
        except ImportError:
            raise VadUnavailable("voice-activity segmentation needs silero-vad (pip install silero-vad); "
                                 "fixed windows (method='fixed') work without it") from None
        finally:
            if torch.get_num_threads() != threads:  # silero_vad.model calls torch.set_num_threads(1)
                torch.set_num_threads(threads)
    return silero_vad


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Runs torch on one thread meanwhile (restored after).

    The model's ops are tiny: on a busy 2-core machine two threads made scoring 6x slower
    (measured: 0.2 s vs 1.2 s for 30 s of audio).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def speech_probabilities(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Scores every ``WINDOW`` of a 16-kHz mono signal given as consecutive chunks.

    Args:
        chunks: float32 mono pieces at ``VAD_RATE``, in order, of any lengths.

    Returns:
        ``(ceil(N / WINDOW),)`` float32 speech probabilities; the last window is zero-padded.
    """
    model = _silero().load_silero_vad()  # ~50 ms; a fresh model per call keeps calls thread-safe
    model.reset_states()
    scores: list[float] = []
    carry = np.zeros(0, np.float32)
    with torch.inference_mode(), _one_thread():
        for chunk in chunks:
            signal = np.concatenate([carry, np.asarray(chunk, np.float32)])
            usable = len(signal) - len(signal) % WINDOW
            windows = torch.from_numpy(np.ascontiguousarray(signal[:usable])).view(-1, WINDOW)  # (W, 512)
            scores.extend(model(window, VAD_RATE).item() for window in windows)
            carry = signal[usable:]
        if len(carry):
            last = torch.from_numpy(np.pad(carry, (0, WINDOW - len(carry))))
            scores.append(model(last, VAD_RATE).item())
    return np.asarray(scores, np.float32)


def speech_regions(probabilities: np.ndarray, num_samples: int, *, options: VadOptions = VadOptions(),
                   max_seconds: float = float("inf")) -> list[tuple[float, float]]:
    """Speech regions ``[(start, end)]`` in seconds from ``speech_probabilities``' scores.

    Args:
        probabilities: One score per ``WINDOW``.
        num_samples: Length of the scored signal (the last region ends there at most).
        options: Thresholds, minimum durations and padding.
        max_seconds: Longer regions are split at their longest inner pause (silero's rule);
            the padding is included in this limit.
    """
    timestamps = _silero().get_speech_timestamps_from_probs(
        [float(p) for p in probabilities], sampling_rate=VAD_RATE, threshold=options.threshold,
        min_speech_duration_ms=int(round(options.min_speech_seconds * 1000)),
        min_silence_duration_ms=int(round(options.min_silence_seconds * 1000)),
        speech_pad_ms=int(round(options.pad_seconds * 1000)), max_speech_duration_s=max_seconds,
        audio_length_samples=int(num_samples))
    return [(t["start"] / VAD_RATE, t["end"] / VAD_RATE) for t in timestamps]
