"""Synthetic media clips for tests, written with PyAV (no system ffmpeg needed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# suffix -> (container format, video codec or None, audio codec)
_FORMATS: dict[str, tuple[str, str | None, str]] = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "flac"),
    ".webm": ("webm", "libvpx", "libvorbis"),
    ".avi": ("avi", "mpeg4", "pcm_s16le"),
    ".flv": ("flv", "flv", "libmp3lame"),
    ".wav": ("wav", None, "pcm_s16le"),
    ".flac": ("flac", None, "flac"),
    ".mp3": ("mp3", None, "libmp3lame"),
    ".ogg": ("ogg", None, "libvorbis"),
    ".m4a": ("ipod", None, "aac"),
}

# Containers that only carry some sample rates; the nearest allowed one is used.
_ALLOWED_RATES: dict[str, tuple[int, ...]] = {
    ".flv": (11025, 22050, 44100),
    ".mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
}

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".flv", ".mov", ".mkv")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")


def frame_pattern(index: int, count: int, size: tuple[int, int]) -> np.ndarray:
    """RGB frame ``index`` of ``count``: red level ramps with time, a green square moves.

    The mean red value is ``40 + 180 * index / max(count - 1, 1)`` (before encoding).
    """
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = int(round(40 + 180 * index / max(count - 1, 1)))
    image[..., 2] = 60
    side = max(2, min(width, height) // 4)
    x = int((width - side) * index / max(count - 1, 1))
    image[:side, x : x + side, 1] = 200
    return image


def red_level_to_fraction(red_mean: float) -> float:
    """Inverse of the red ramp in ``frame_pattern``: position in the clip, 0..1."""
    return (red_mean - 40.0) / 180.0


def _tone(seconds: float, rate: int, channels: int, tone_hz: float, silent: bool) -> np.ndarray:
    count = max(1, int(round(seconds * rate)))
    if silent:
        return np.zeros((channels, count), dtype=np.float32)
    t = np.arange(count, dtype=np.float64) / rate
    rows = [0.5 * np.sin(2 * np.pi * tone_hz * (1 + 0.5 * c) * t) for c in range(channels)]
    return np.asarray(rows, dtype=np.float32)


def make_clip(
    path,
    *,
    seconds: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    video: bool = True,
    sample_rate: int = 16000,
    channels: int = 1,
    tone_hz: float = 440.0,
    silent: bool = False,
    audio_seconds: float | None = None,
) -> Path:
    """Writes a synthetic clip; the container and codecs follow the suffix of ``path``.

    Video (skipped for audio-only suffixes or ``video=False``) uses ``frame_pattern``;
    audio (skipped with ``audio=False``) is a sine tone, or zeros when ``silent``.
    ``size`` is ``(width, height)``. flv only carries 11025/22050/44100 Hz, so the
    nearest of those is used there. ``audio_seconds`` gives the audio track its own length.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"make_clip: unsupported suffix {suffix!r}")
    fmt, vcodec, acodec = _FORMATS[suffix]
    if vcodec is None:
        video = False
    if not (audio or video):
        raise ValueError("make_clip: a clip needs audio or video")
    rate = sample_rate
    if suffix in _ALLOWED_RATES:
        rate = min(_ALLOWED_RATES[suffix], key=lambda r: abs(r - sample_rate))
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = "mono" if channels == 1 else "stereo" if channels == 2 else f"{channels}c"

    with av.open(str(path), mode="w", format=fmt) as container:
        vstream = astream = None
        if video:
            vstream = container.add_stream(vcodec, rate=fps)
            vstream.width, vstream.height = size
            vstream.pix_fmt = "yuv420p"
            if vcodec == "libx264":
                vstream.options = {"preset": "ultrafast", "tune": "zerolatency"}
            elif vcodec == "libvpx":
                vstream.options = {"deadline": "realtime", "cpu-used": "8"}
                vstream.bit_rate = 500_000
        if audio:
            astream = container.add_stream(acodec, rate=rate)
            astream.layout = layout
        if vstream is not None:
            count = max(1, int(round(seconds * fps)))
            for i in range(count):
                frame = av.VideoFrame.from_ndarray(frame_pattern(i, count, size), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            samples = _tone(audio_seconds or seconds, rate, channels, tone_hz, silent)
            block = 1024
            for start in range(0, samples.shape[1], block):
                chunk = np.ascontiguousarray(samples[:, start : start + block])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate = rate
                frame.pts = start
                frame.time_base = Fraction(1, rate)
                container.mux(astream.encode(frame))
            container.mux(astream.encode(None))
    return path


_VOWEL_FORMANTS = ((700, 1200, 2500), (300, 2200, 3000), (500, 900, 2400), (400, 1900, 2600))


def speech_like(seconds: float, *, rate: int = 16000, f0: float = 120.0, amplitude: float = 0.5) -> np.ndarray:
    """A voice-like float32 signal that Silero VAD takes for speech (a sine tone it does not).

    Glottal pulses at a wavering pitch ``f0`` go through three formant resonators that change
    vowel every 150 ms, with a 4-Hz syllable envelope.
    """
    from scipy.signal import lfilter

    t = np.arange(int(round(seconds * rate))) / rate
    phase = np.cumsum(f0 + 0.25 * f0 * np.sin(2 * np.pi * 1.5 * t)) / rate
    pulses = np.zeros_like(t)
    pulses[1:][np.diff(np.floor(phase)) > 0] = 1.0
    out = np.zeros_like(t)
    step = int(0.15 * rate)
    for k, start in enumerate(range(0, len(t), step)):
        voiced = np.zeros_like(t)
        for f in _VOWEL_FORMANTS[k % len(_VOWEL_FORMANTS)]:
            r, theta = np.exp(-np.pi * 90 / rate), 2 * np.pi * f / rate
            voiced += lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], pulses)
        out[start : start + step] = voiced[start : start + step]
    out *= (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    return (amplitude * out / max(np.abs(out).max(), 1e-9)).astype(np.float32)
