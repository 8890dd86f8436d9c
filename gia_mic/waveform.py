"""In-memory waveforms brought to the model's form: mono float32 in [-1, 1] at one rate.

The file counterpart is ``media.decode_clip``; both end in the same kind of array.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from gia_mic.errors import MediaError

logger = logging.getLogger(__name__)


def prepare_waveform(
    waveform,
    sample_rate: int,
    *,
    target_rate: int = 16000,
    min_seconds: float = 0.1,
    max_seconds: float = 30.0,
) -> tuple[np.ndarray, bool]:
    """Brings an in-memory waveform to mono float32 at ``target_rate``.

    Args:
        waveform: ``(N,)``, ``(C, N)`` or ``(N, C)`` array (or CPU tensor); the shorter
            axis of a 2-D array is taken as channels. Integer samples are scaled to
            [-1, 1]; float samples whose peak exceeds 1 are peak-normalised.
        sample_rate: Rate of ``waveform`` in Hz.
        target_rate: Rate of the result.
        min_seconds: Shorter waveforms are refused.
        max_seconds: Longer waveforms are cut to their first ``max_seconds``.

    Returns:
        ``(waveform, truncated)``: float32 ``(N,)`` in [-1, 1], and whether it was cut.

    Raises:
        MediaError: Empty, too short, non-finite, wrongly shaped or non-numeric input.
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise MediaError(f"waveform: sample_rate must be a positive integer, got {sample_rate!r}")
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().cpu().numpy()
    array = np.asarray(waveform)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise MediaError(f"waveform: expected numeric samples, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise MediaError("waveform: complex samples are not audio")
    if array.ndim not in (1, 2):
        raise MediaError(f"waveform: expected shape (N,), (C, N) or (N, C), got {array.ndim}-D {array.shape}")
    if array.size == 0:
        raise MediaError(f"waveform is empty (shape {array.shape})")
    mono = _to_float(array)
    if mono.ndim == 2:
        if min(mono.shape) > 32:
            raise MediaError(f"waveform: cannot tell channels from samples in shape {mono.shape}")
        mono = mono.mean(axis=0) if mono.shape[0] <= mono.shape[1] else mono.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise MediaError("waveform contains NaN or infinite values")
    seconds = mono.shape[0] / sample_rate
    if seconds < min_seconds:
        raise MediaError(f"waveform: clip is {seconds:.2f} s long; at least {min_seconds:g} s is needed")
    peak = float(np.max(np.abs(mono)))
    if peak > 1.0 + 1e-6:
        logger.warning("waveform peak is %.3g > 1; normalising to [-1, 1]", peak)
        mono = mono / peak
    truncated = seconds > max_seconds
    if truncated:
        logger.warning("waveform is %.2f s long; only the first %g s are used", seconds, max_seconds)
        mono = mono[: int(round(max_seconds * sample_rate))]
    if sample_rate != target_rate:
        from scipy.signal import resample_poly  # 1.6 s to import: only arrays at another rate need it

        factor = math.gcd(int(sample_rate), int(target_rate))
        mono = resample_poly(mono, target_rate // factor, int(sample_rate) // factor)
    return np.clip(mono, -1.0, 1.0).astype(np.float32), truncated


def _to_float(array: np.ndarray) -> np.ndarray:
    """Integer PCM scaled to [-1, 1]; floats as float64."""
    if np.issubdtype(array.dtype, np.signedinteger):
        return array.astype(np.float64) / float(2 ** (8 * array.dtype.itemsize - 1))
    if np.issubdtype(array.dtype, np.unsignedinteger):
        half = float(2 ** (8 * array.dtype.itemsize - 1))
        return (array.astype(np.float64) - half) / half
    return array.astype(np.float64)
