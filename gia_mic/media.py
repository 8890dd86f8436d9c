"""The one media decoding path: video frames and mono audio from a file.

``decode_clip`` opens a file with PyAV, samples ``num_frames`` RGB frames uniformly over
the clip and decodes all audio to mono float32 at a fixed rate. Long recordings are read in
chunks by ``audio_stream`` and in-memory waveforms prepared by ``waveform``, on the same
opening, error and down-mix code. Every failure is a ``MediaError`` whose message names the
file and the problem; PyAV exceptions never leak out.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from gia_mic.errors import MediaError

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
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff")
"""File suffixes read as speech only (everything else is read as a video, whose audio track is the speech)."""
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".wmv")
MEDIA_SUFFIXES = AUDIO_SUFFIXES + VIDEO_SUFFIXES
"""What a folder given to ``gia-mic predict`` is searched for (a file named directly may have any suffix)."""
_TRUNCATION_SLACK = 0.05  # seconds past max_seconds that still count as "not longer"


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an audio-only file (by suffix)."""
    return Path(os.fspath(path)).suffix.lower() in AUDIO_SUFFIXES


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
    file = _existing_file(path)
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
        return _ClipDecoder(container, file, num_frames, sample_rate, min_seconds, max_seconds, start, end).run()


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


class _AudioCollector:
    """Decoded audio frames -> mono float32 at ``rate``.

    Frames are converted to *packed* float samples and averaged over channels in NumPy:
    PyAV's conversion of a planar frame with 8 or more channels to an array crashes the
    process (it reads past the frame's 8 data pointers), whatever the channel layout.
    """

    def __init__(self, rate: int) -> None:
        self.resampler = av.AudioResampler(format="flt", rate=rate)
        self.chunks: list[np.ndarray] = []
        self.samples = 0

    def _keep(self, frames) -> None:
        for out in frames:
            channels = max(1, out.layout.nb_channels)
            mono = out.to_ndarray().reshape(-1, channels).mean(axis=1, dtype=np.float32)  # (N,)
            self.chunks.append(mono)
            self.samples += mono.shape[0]

    def add(self, frame) -> None:
        """Converts one decoded frame."""
        self._keep(self.resampler.resample(frame))

    def flush(self) -> None:
        """Emits what the resampler still holds."""
        self._keep(self.resampler.resample(None))

    def result(self, file, skip: int, max_samples: int) -> np.ndarray | None:
        """The waveform after ``skip`` samples, at most ``max_samples`` long; non-finite samples become 0."""
        if not self.chunks:
            return None
        audio = np.concatenate(self.chunks)[skip:][:max_samples]
        bad = ~np.isfinite(audio)
        if bad.any():
            logger.warning("%s: %d non-finite audio samples (NaN/Inf) replaced with silence", file, int(bad.sum()))
            audio = np.where(bad, 0.0, audio)
        return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


class _ClipDecoder:
    """One pass over a container's packets: sampled frames and mono audio of a time window.

    ``run`` picks the streams, plans the window (``[start, start + limit)``), decodes, then
    checks what came out. ``limit`` is the window's length; cutting at ``end`` is not a truncation.
    """

    def __init__(self, container, file, num_frames, sample_rate, min_seconds, max_seconds, start, end) -> None:
        self.container, self.file = container, file
        self.num_frames, self.sample_rate = num_frames, sample_rate
        self.min_seconds, self.max_seconds, self.start = min_seconds, max_seconds, start
        self.limit = max_seconds if end is None else min(max_seconds, end - start)
        self.cut_truncates = end is None or end - start > max_seconds
        self.truncated = False
        self.bad_packets = 0
        self.vstream = next((s for s in container.streams.video
                             if s.codec_context and not _is_attached_picture(s)), None)
        self.astream = next((s for s in container.streams.audio if s.codec_context), None)
        self.origin = container.start_time / av.time_base if container.start_time is not None else 0.0
        self.sampler: _FrameSampler | None = None
        self.frame_step: float | None = None
        self.window = self.limit
        self.audio = _AudioCollector(sample_rate) if self.astream is not None else None
        self.skip: int | None = None  # audio samples decoded before ``start`` (pre-roll after a seek)

    def run(self) -> DecodedClip:
        """Decodes the window and returns the clip (or raises ``MediaError``)."""
        self._check_streams()
        declared = self._plan()
        self._decode_packets()
        if declared is not None and declared > self.limit + _TRUNCATION_SLACK and self.cut_truncates:
            self.truncated = True  # the video runs on past the window, even where its audio stops early
        return self._finish()

    def _check_streams(self) -> None:
        fmt, file, vstream = self.container.format.name, self.file, self.vstream
        if fmt == "tty" or (vstream is not None and vstream.codec_context.name == "ansi"):
            raise MediaError(f"{file} is a text file, not a video or audio clip")
        if vstream is None and self.astream is None:
            raise MediaError(f"{file} has no audio or video stream (not a media file, or corrupt)")
        image_format = fmt.endswith("_pipe") or fmt in ("image2", "image2pipe")
        if vstream is not None and self.astream is None and image_format:
            raise MediaError(f"{file} is an image ({vstream.codec_context.name}), not a video or audio clip")

    def _plan(self) -> float | None:
        """Seeks to ``start`` and sets the frame targets; returns the video's declared length after ``start``."""
        declared = None
        if self.vstream is not None:
            self.vstream.codec_context.thread_type = "AUTO"
            declared = _video_window(self.container, self.vstream, self.origin)
            declared = declared - self.start if declared else None
            self.window = min(declared, self.limit) if declared and declared > 0 else self.limit
        if self.start > 0:
            self.container.seek(int((self.origin + self.start) * av.time_base))  # the keyframe at or before start
            self.origin += self.start
        if self.vstream is not None:
            self.sampler = _FrameSampler((np.arange(self.num_frames) + 0.5) * (self.window / self.num_frames))
            if self.vstream.average_rate:
                self.frame_step = 1.0 / float(self.vstream.average_rate)
        return declared

    def _decode_packets(self) -> None:
        video_done, audio_done = self.vstream is None, self.astream is None
        max_audio = self.limit * self.sample_rate + _TRUNCATION_SLACK * self.sample_rate
        streams = [s for s in (self.vstream, self.astream) if s is not None]
        for packet in _packets(self.container, streams, self.file):
            is_video = self.vstream is not None and packet.stream.index == self.vstream.index
            if (is_video and video_done) or (not is_video and audio_done):
                if video_done and audio_done:
                    break
                continue
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                self.bad_packets += 1
                logger.debug("%s: skipping undecodable packet: %s", self.file, exc)
                continue
            if is_video:
                video_done = self._video_frames(decoded)
            else:
                audio_done = self._audio_frames(decoded, max_audio)
        if self.audio is not None and not audio_done:
            self.audio.flush()

    def _video_frames(self, frames) -> bool:
        """Offers decoded frames to the sampler; True once the window is passed."""
        sampler = self.sampler
        for frame in frames:
            time = frame.time
            if time is None:
                time = self.origin + sampler.count * (self.frame_step or 1.0 / 25)
            rel = time - self.origin
            if rel >= self.limit - 1e-3:
                self.truncated = self.cut_truncates
                return True
            done = sampler.done and rel > sampler.targets[-1]  # past the sampled window; only timing is left
            sampler.add(frame, rel)
            if done:
                return True
        return False

    def _audio_frames(self, frames, max_audio: float) -> bool:
        """Collects decoded audio; True once the window is full."""
        for frame in frames:
            if self.skip is None:
                first = frame.time - self.origin if frame.time is not None else 0.0
                self.skip = max(0, int(round(-first * self.sample_rate)))
            self.audio.add(frame)
            if self.audio.samples > self.skip + max_audio:
                self.truncated = self.truncated or self.cut_truncates
                return True
        return False

    def _finish(self) -> DecodedClip:
        file, sampler = self.file, self.sampler
        video = sampler.finish() if sampler is not None else None
        max_samples = int(round(self.limit * self.sample_rate))
        audio = self.audio.result(file, self.skip or 0, max_samples) if self.audio is not None else None
        if video is None and audio is None:
            problem = f"; {self.bad_packets} packets were unreadable" if self.bad_packets else ""
            raise MediaError(f"{file} has no decodable audio or video (the file is truncated or corrupt{problem})")
        codec = self.vstream.codec_context.name if self.vstream is not None else None
        if video is not None and audio is None and sampler.count <= 1 and codec in _STILL_CODECS:
            raise MediaError(f"{file} is an image ({codec}), not a video or audio clip")
        if video is not None and not self.truncated and sampler.last_time is not None:
            shortfall = self.window - sampler.last_time - (self.frame_step or 0.0)
            if shortfall > max(0.25, 0.1 * self.window):
                logger.warning("%s: video ends %.2f s before its declared end; it may be truncated", file, shortfall)
        duration = _duration(self.container, sampler, self.frame_step, audio, self.sample_rate, self.limit, self.start)
        self._check_length(duration, audio)
        if self.truncated:
            # the caller decides what a cut means (a note, a refusal, a timeline): DecodedClip.truncated says it
            logger.info("%s is longer than %g s; only the first %g s were decoded", file, self.max_seconds, self.max_seconds)
        return DecodedClip(path=str(file), frames=video[0] if video else None, frame_times=video[1] if video else None,
                           audio=audio, sample_rate=self.sample_rate, duration=duration, truncated=self.truncated,
                           missing=self._missing(video, audio))

    def _check_length(self, duration: float, audio: np.ndarray | None) -> None:
        if duration < self.min_seconds:
            raise MediaError(f"{self.file}: clip is {duration:.2f} s long; at least {self.min_seconds:g} s is needed")
        if audio is not None and len(audio) < self.min_seconds * self.sample_rate:
            seconds = len(audio) / self.sample_rate
            raise MediaError(f"{self.file}: its audio is {seconds:.2f} s long; at least {self.min_seconds:g} s is needed")

    def _missing(self, video, audio) -> dict[str, str]:
        missing: dict[str, str] = {}
        if video is None:
            missing["video"] = "audio-only file" if self.vstream is None else "the video stream could not be decoded"
        if audio is None:
            missing["audio"] = ("the video file has no audio track" if self.astream is None
                                else "the audio track could not be decoded")
        return missing


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


def _existing_file(path) -> Path:
    """The path as a ``Path``, or a ``MediaError`` when it is missing, a folder or empty."""
    file = Path(os.fspath(path))
    if not file.exists():
        raise MediaError(f"file not found: {file}")
    if file.is_dir():
        raise MediaError(f"{file} is a directory, not a video or audio file")
    if file.stat().st_size == 0:
        raise MediaError(f"{file} is empty (0 bytes)")
    return file
