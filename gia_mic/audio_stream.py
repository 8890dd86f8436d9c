"""Long recordings in bounded memory: a file's headers (``probe_media``) and its audio in chunks.

``stream_audio`` never holds more than about one chunk of samples, so an hour-long file can be
segmented and classified piece by piece (``gia_mic.timeline``). It shares ``media``'s opening,
error and down-mix code with ``decode_clip``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from gia_mic.errors import MediaError
from gia_mic.media import _AudioCollector, _existing_file, _ffmpeg_reason, _is_attached_picture, _open, _packets

logger = logging.getLogger(__name__)


@dataclass
class MediaInfo:
    """What a file holds, read from its headers without decoding (see ``probe_media``).

    Attributes:
        path: The file.
        duration: Declared duration in seconds (``None`` when the container does not say).
        has_audio: It has an audio stream.
        has_video: It has a video stream (attached cover pictures do not count).
    """

    path: str
    duration: float | None
    has_audio: bool
    has_video: bool


def probe_media(path) -> MediaInfo:
    """Reads a file's streams and declared duration (headers only: cheap for any length).

    Raises:
        MediaError: The file is missing, empty, not media, or has neither audio nor video.
    """
    file = _existing_file(path)
    try:
        with _open(file) as container:
            video = any(s.codec_context and not _is_attached_picture(s) for s in container.streams.video)
            audio = any(s.codec_context for s in container.streams.audio)
            duration = container.duration / av.time_base if container.duration and container.duration > 0 else None
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises assorted types on bad input
        raise MediaError(f"{file} cannot be read: {type(exc).__name__}: {exc}") from exc
    if not (audio or video):
        raise MediaError(f"{file} has no audio or video stream (not a media file, or corrupt)")
    return MediaInfo(str(file), duration, audio, video)


def stream_audio(path, *, sample_rate: int = 16000, chunk_seconds: float = 30.0, start: float = 0.0,
                 end: float | None = None) -> Iterator[np.ndarray]:
    """Yields a file's audio track as consecutive mono float32 chunks, never the whole track at once.

    Memory stays at about one chunk whatever the file's length, so an hour-long recording can
    be segmented and classified piece by piece. Chunk ``k`` starts ``start + k * chunk_seconds``
    seconds into the file; every chunk has ``round(chunk_seconds * sample_rate)`` samples except
    the last, which may be shorter. Video streams are not decoded (see ``decode_clip`` with
    ``start``/``end`` for the frames of one window).

    Args:
        path: An audio or video file.
        sample_rate: Rate of the yielded samples.
        chunk_seconds: Length of each chunk.
        start: First second to yield (seeks there).
        end: Stop at this second (default: the end of the track).

    Raises:
        MediaError: On the first ``next()``: the file is missing, empty, not media, has no
            audio track, or no audio could be decoded. A demuxer error after some audio ends
            the stream early with a warning (like ``decode_clip``).
    """
    if sample_rate <= 0 or chunk_seconds <= 0:
        raise ValueError("sample_rate and chunk_seconds must be > 0")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
    file = _existing_file(path)
    try:
        yield from _stream_audio(file, sample_rate, max(1, round(chunk_seconds * sample_rate)), float(start), end)
    except (MediaError, MemoryError, GeneratorExit):
        raise
    except av.error.FFmpegError as exc:
        raise MediaError(f"{file} cannot be decoded: {_ffmpeg_reason(exc)}") from exc
    except Exception as exc:  # PyAV raises assorted types on bad input
        raise MediaError(f"{file} cannot be decoded: {type(exc).__name__}: {exc}") from exc


def _stream_audio(file: Path, sample_rate: int, chunk: int, start: float, end: float | None) -> Iterator[np.ndarray]:
    with _open(file) as container:
        astream = next((s for s in container.streams.audio if s.codec_context), None)
        if astream is None:
            raise MediaError(f"{file} has no audio track")
        origin = container.start_time / av.time_base if container.start_time is not None else 0.0
        if start > 0:
            container.seek(int((origin + start) * av.time_base))  # the keyframe at or before start
        collector = _AudioCollector(sample_rate)
        remaining = None if end is None else int(round((end - start) * sample_rate))
        skip: int | None = None  # samples decoded before ``start`` (pre-roll after a seek)
        yielded = bad = 0
        for frame in _audio_frames(container, astream, file):
            if frame is None:
                bad += 1
                continue
            if skip is None:
                first = frame.time - origin - start if frame.time is not None else 0.0
                skip = max(0, int(round(-first * sample_rate)))
            collector.add(frame)
            while collector.samples - skip >= chunk and remaining != 0:
                piece = _drain(collector, file, skip, chunk if remaining is None else min(chunk, remaining))
                remaining, skip = None if remaining is None else remaining - len(piece), 0
                yielded += len(piece)
                yield piece
            if remaining == 0:
                break
        else:
            collector.flush()
        tail = collector.result(file, skip or 0, collector.samples if remaining is None else remaining)
        if tail is not None and len(tail):
            yielded += len(tail)
            yield tail
        if yielded == 0:
            problem = f"; {bad} packets were unreadable" if bad else ""
            raise MediaError(f"{file} has no decodable audio (the file is truncated or corrupt{problem})")


def _audio_frames(container, astream, file: Path) -> Iterator:
    """Decoded audio frames in order; ``None`` stands for a packet that could not be decoded."""
    for packet in _packets(container, [astream], file):
        try:
            decoded = packet.decode()
        except av.error.FFmpegError as exc:
            logger.debug("%s: skipping undecodable packet: %s", file, exc)
            yield None
            continue
        yield from decoded


def _drain(collector: _AudioCollector, file: Path, skip: int, count: int) -> np.ndarray:
    """The ``count`` samples after ``skip`` taken out of ``collector``; what follows them stays in it."""
    piece = collector.result(file, skip, count)  # (count,) clean mono float32
    rest = np.concatenate(collector.chunks)[skip + count :]  # about one frame
    collector.chunks, collector.samples = [rest], len(rest)
    return piece
