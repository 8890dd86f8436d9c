"""The one media decoding path: video frames and mono audio from a file, or a raw waveform.

``decode_clip`` opens a file with PyAV, samples ``num_frames`` RGB frames uniformly over
the clip and decodes all audio to mono float32 at a fixed rate. ``prepare_waveform``
brings an in-memory waveform to the same form. Every failure is a ``MediaError`` whose
message names the file and the problem; PyAV exceptions never leak out.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

logger = logging.getLogger(__name__)

MAX_SIDE = 480
"""Long side, in pixels, that decoded frames are scaled down to (aspect kept)."""

_STILL_CODECS = frozenset(
    {
        "png", "apng", "mjpeg", "jpeg2000", "jpegls", "bmp", "tiff", "webp", "gif", "ppm",
        "pgm", "pgmyuv", "pbm", "pam", "qoi", "sgi", "targa", "pcx", "xbm", "xpm", "dds",
        "exr", "hdr", "photocd", "sunrast", "xwd", "jpegxl",
    }
)  # fmt: skip
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"), (b"BM", "bmp"),
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
)  # fmt: skip
_TRUNCATION_SLACK = 0.05  # seconds past max_seconds that still count as "not longer"


class MediaError(ValueError):
    """Bad or unreadable media; the message names the file and the problem."""


@dataclass
class DecodedClip:
    """Frames and audio decoded from one clip (see ``decode_clip``)."""

    path: str | None
    frames: np.ndarray | None
    frame_times: np.ndarray | None
    audio: np.ndarray | None
    sample_rate: int
    duration: float
    truncated: bool
    missing: dict[str, str] = field(default_factory=dict)


def decode_clip(
    path,
    *,
    num_frames: int = 8,
    sample_rate: int = 16000,
    min_seconds: float = 0.1,
    max_seconds: float = 30.0,
    start: float = 0.0,
    end: float | None = None,
) -> DecodedClip:
    """Decodes a video or audio file into sampled RGB frames and mono float32 audio.

    Args:
        path: File to read (mp4, webm, avi, flv, mov, mkv, wav, flac, mp3, ogg, m4a, ...).
        num_frames: Frames sampled at the centres of equal segments of the clip; a video
            with fewer frames repeats frames.
        sample_rate: Rate of the returned audio.
        min_seconds: Shorter clips are refused.
        max_seconds: Longer clips are cut to their first ``max_seconds`` (``truncated``).
        start: Decode only from this time (seconds from the start of the file); frames are
            then sampled over ``[start, end)`` and the audio is cut to it.
        end: Decode only up to this time (default: the end of the file). Reaching ``end``
            is not a truncation; ``max_seconds`` still caps the window.

    Returns:
        A ``DecodedClip``; a missing modality is ``None`` with its reason in ``missing``.

    Raises:
        MediaError: The file is missing, empty, not media, corrupt, too short, or
            has neither an audio nor a video stream.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if sample_rate <= 0 or max_seconds <= 0 or min_seconds < 0:
        raise ValueError("sample_rate and max_seconds must be > 0, min_seconds >= 0")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
    file = Path(os.fspath(path))
    if not file.exists():
        raise MediaError(f"file not found: {file}")
    if file.is_dir():
        raise MediaError(f"{file} is a directory, not a video or audio file")
    if file.stat().st_size == 0:
        raise MediaError(f"{file} is empty (0 bytes)")
    try:
        return _decode(file, num_frames, sample_rate, min_seconds, max_seconds, float(start), end)
    except (MediaError, MemoryError):
        raise
    except av.error.FFmpegError as exc:
        raise MediaError(f"{file} cannot be decoded: {_ffmpeg_reason(exc)}") from exc
    except Exception as exc:  # PyAV raises assorted types on bad input
        raise MediaError(f"{file} cannot be decoded: {type(exc).__name__}: {exc}") from exc


def _ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    """A short human reason for an FFmpeg error, without the file name repeated."""
    if isinstance(exc, av.error.InvalidDataError):
        return "invalid data (not a supported format, or the file is corrupt or truncated)"
    if isinstance(exc, (av.error.EOFError, EOFError)):
        return "unexpected end of file (the file is truncated or corrupt)"
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{text} (the file may be truncated or corrupt)"


def _sniff(file: Path) -> str | None:
    """Names what a file that FFmpeg cannot open looks like ("an image", "a text file")."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic):
            return f"an image ({kind})"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "an image (webp)"
    if head and b"\x00" not in head:
        printable = sum(b in (9, 10, 13) or 32 <= b < 127 or b >= 128 for b in head)
        if printable / len(head) > 0.95:
            return "a text file"
    return None


def _open(file: Path):
    try:
        return av.open(str(file), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        kind = _sniff(file)
        if kind is not None:
            raise MediaError(f"{file} is {kind}, not a video or audio clip") from exc
        raise MediaError(f"{file} cannot be opened: {_ffmpeg_reason(exc)}") from exc


def _is_attached_picture(stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


class _FrameSampler:
    """Keeps only the frames nearest (at or before) each target time, as RGB arrays."""

    def __init__(self, targets: np.ndarray):
        self.targets = targets
        self.chosen: list[np.ndarray] = []
        self.times: list[float] = []
        self.size: tuple[int, int] | None = None
        self._prev = None
        self._prev_time = 0.0
        self._prev_array: np.ndarray | None = None
        self.count = 0
        self.last_time: float | None = None

    @property
    def done(self) -> bool:
        return len(self.chosen) >= len(self.targets)

    def _array(self) -> np.ndarray:
        if self._prev_array is None:
            frame = self._prev
            if self.size is None:
                scale = min(1.0, MAX_SIDE / max(frame.width, frame.height))
                self.size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
            width, height = self.size
            rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
            self._prev_array = np.ascontiguousarray(rgb, dtype=np.uint8)
        return self._prev_array

    def _assign_until(self, time: float | None) -> None:
        while not self.done and (time is None or self.targets[len(self.chosen)] < time):
            self.chosen.append(self._array())
            self.times.append(self._prev_time)

    def add(self, frame, time: float) -> None:
        """Offers the next decoded frame (presentation order) at ``time`` seconds."""
        if self._prev is None:
            self._prev, self._prev_time = frame, time
        self._assign_until(time)
        self._prev, self._prev_time, self._prev_array = frame, time, None
        self.count += 1
        self.last_time = time

    def finish(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Fills the remaining targets with the last frame; ``None`` if none was seen."""
        if self._prev is None:
            return None
        self._assign_until(None)
        self._prev = self._prev_array = None
        return np.stack(self.chosen), np.asarray(self.times, dtype=np.float64)


def _video_window(container, vstream, origin: float) -> float | None:
    """Seconds of video to sample over, from metadata or a demux-only packet scan."""
    if vstream.duration and vstream.time_base:
        start = float(vstream.start_time * vstream.time_base) if vstream.start_time is not None else origin
        return float(vstream.duration * vstream.time_base) + max(0.0, start - origin)
    if container.duration:
        return container.duration / av.time_base
    end = None
    for packet in container.demux(vstream):
        if packet.pts is None:
            continue
        stop = packet.pts + (packet.duration or 0)
        end = stop if end is None else max(end, stop)
    container.seek(0)
    return None if end is None else float(end * vstream.time_base) - origin


def _decode(file, num_frames, sample_rate, min_seconds, max_seconds, start=0.0, end=None) -> DecodedClip:
    with _open(file) as container:
        return _decode_open(container, file, num_frames, sample_rate, min_seconds, max_seconds, start, end)


def _packets(container, streams, file):
    """Demuxes ``streams``; a demuxer error after some packets ends the clip early."""
    iterator = container.demux(*streams)
    count = 0
    while True:
        try:
            packet = next(iterator)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            if count == 0:
                raise
            logger.warning("%s: stopped reading after a container error (%s); the file may be damaged", file, exc)
            return
        count += 1
        yield packet


def _decode_open(container, file, num_frames, sample_rate, min_seconds, max_seconds, start=0.0, end=None) -> DecodedClip:
    fmt = container.format.name
    vstream = next(
        (s for s in container.streams.video if s.codec_context and not _is_attached_picture(s)),
        None,
    )
    astream = next((s for s in container.streams.audio if s.codec_context), None)
    if fmt == "tty" or (vstream is not None and vstream.codec_context.name == "ansi"):
        raise MediaError(f"{file} is a text file, not a video or audio clip")
    if vstream is None and astream is None:
        raise MediaError(f"{file} has no audio or video stream (not a media file, or corrupt)")
    image_format = fmt.endswith("_pipe") or fmt in ("image2", "image2pipe")
    if vstream is not None and astream is None and image_format:
        codec = vstream.codec_context.name
        raise MediaError(f"{file} is an image ({codec}), not a video or audio clip")

    origin = container.start_time / av.time_base if container.start_time is not None else 0.0
    # A [start, end) window: ``limit`` is its length; cutting at ``end`` is not a truncation.
    limit = max_seconds if end is None else min(max_seconds, end - start)
    cut_truncates = end is None or end - start > max_seconds
    sampler = None
    frame_step = None
    window = limit
    declared = None
    if vstream is not None:
        vstream.codec_context.thread_type = "AUTO"
        declared = _video_window(container, vstream, origin)
        declared = declared - start if declared else None
        window = min(declared, limit) if declared and declared > 0 else limit
    if start > 0:
        container.seek(int((origin + start) * av.time_base))  # the keyframe at or before start
        origin += start
    if vstream is not None:
        targets = (np.arange(num_frames) + 0.5) * (window / num_frames)
        sampler = _FrameSampler(targets)
        if vstream.average_rate:
            frame_step = 1.0 / float(vstream.average_rate)
    resampler = av.AudioResampler(format="fltp", rate=sample_rate) if astream else None
    chunks: list[np.ndarray] = []
    audio_samples = 0
    max_samples = int(round(limit * sample_rate))
    skip = None  # audio samples decoded before ``start`` (pre-roll after a seek)
    video_done = vstream is None
    audio_done = astream is None
    truncated = False
    bad_packets = 0

    streams = [s for s in (vstream, astream) if s is not None]
    for packet in _packets(container, streams, file):
        is_video = vstream is not None and packet.stream.index == vstream.index
        if (is_video and video_done) or (not is_video and audio_done):
            if video_done and audio_done:
                break
            continue
        try:
            decoded = packet.decode()
        except av.error.FFmpegError as exc:
            bad_packets += 1
            logger.debug("%s: skipping undecodable packet: %s", file, exc)
            continue
        for frame in decoded:
            if is_video:
                time = frame.time
                if time is None:
                    time = origin + sampler.count * (frame_step or 1.0 / 25)
                rel = time - origin
                if rel >= limit - 1e-3:
                    truncated, video_done = cut_truncates, True
                    break
                if sampler.done and rel > sampler.targets[-1]:
                    video_done = True  # past the sampled window; only timing is left
                sampler.add(frame, rel)
            else:
                if skip is None:
                    first = frame.time - origin if frame.time is not None else 0.0
                    skip = max(0, int(round(-first * sample_rate)))
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
                    audio_samples += chunks[-1].shape[0]
                if audio_samples > (skip or 0) + max_samples + _TRUNCATION_SLACK * sample_rate:
                    truncated, audio_done = truncated or cut_truncates, True
                    break
    if resampler is not None and not audio_done:
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))

    video = sampler.finish() if sampler is not None else None
    audio = np.concatenate(chunks) if chunks else None
    if video is None and audio is None:
        problem = f"; {bad_packets} packets were unreadable" if bad_packets else ""
        raise MediaError(f"{file} has no decodable audio or video (the file is truncated or corrupt{problem})")
    if video is not None and audio is None and sampler.count <= 1 and vstream.codec_context.name in _STILL_CODECS:
        codec = vstream.codec_context.name
        raise MediaError(f"{file} is an image ({codec}), not a video or audio clip")

    if video is not None and not truncated and sampler.last_time is not None:
        shortfall = window - sampler.last_time - (frame_step or 0.0)
        if shortfall > max(0.25, 0.1 * window):
            logger.warning("%s: video ends %.2f s before its declared end; it may be truncated", file, shortfall)
    if audio is not None:
        audio = np.clip(audio[skip or 0 :][:max_samples], -1.0, 1.0).astype(np.float32, copy=False)
    duration = _duration(container, sampler, frame_step, audio, sample_rate, limit, start)
    if duration < min_seconds:
        raise MediaError(f"{file}: clip is {duration:.2f} s long; at least {min_seconds:g} s is needed")
    if audio is not None and len(audio) < min_seconds * sample_rate:
        seconds = len(audio) / sample_rate
        raise MediaError(f"{file}: its audio is {seconds:.2f} s long; at least {min_seconds:g} s is needed")
    if truncated:
        logger.warning("%s is longer than %g s; only the first %g s are used", file, max_seconds, max_seconds)
    missing: dict[str, str] = {}
    if video is None:
        missing["video"] = "audio-only file" if vstream is None else "the video stream could not be decoded"
    if audio is None:
        missing["audio"] = (
            "the video file has no audio track" if astream is None else "the audio track could not be decoded"
        )
    return DecodedClip(
        path=str(file),
        frames=video[0] if video else None,
        frame_times=video[1] if video else None,
        audio=audio,
        sample_rate=sample_rate,
        duration=duration,
        truncated=truncated,
        missing=missing,
    )


def _duration(container, sampler, frame_step, audio, sample_rate, max_seconds, start=0.0) -> float:
    """Decoded extent in seconds, capped by the container's own duration and max_seconds."""
    extent = 0.0
    if sampler is not None and sampler.last_time is not None:
        step = frame_step if frame_step and math.isfinite(frame_step) else 0.0
        extent = sampler.last_time + step
    if audio is not None:
        extent = max(extent, audio.shape[0] / sample_rate)
    if container.duration and container.duration > 0:
        extent = min(extent, container.duration / av.time_base - start)
    return float(min(extent, max_seconds))


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
