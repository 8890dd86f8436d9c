"""Tests for gia_mic.media: decoding of every supported format, sampling and errors."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest

from gia_mic import media
from gia_mic.media import DecodedClip, MediaError, decode_clip
from gia_mic.waveform import prepare_waveform
from tests.clips import AUDIO_SUFFIXES, VIDEO_SUFFIXES, make_clip, red_level_to_fraction

CREMAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "cremad"


def _write_image(path: Path, codec: str, pix_fmt: str) -> Path:
    fmt = "gif" if codec == "gif" else "image2"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 24, pix_fmt
        frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 120, np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", VIDEO_SUFFIXES)
def test_video_formats_round_trip(tmp_path, suffix):
    clip = decode_clip(make_clip(tmp_path / f"a{suffix}"))
    assert isinstance(clip, DecodedClip)
    assert clip.frames.shape == (8, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.frame_times.shape == (8,)
    assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert clip.sample_rate == 16000
    assert abs(clip.audio.shape[0] - 16000) < 0.2 * 16000
    assert abs(clip.duration - 1.0) <= 0.15
    assert np.abs(clip.audio).max() <= 1.0 and np.abs(clip.audio).max() > 0.1
    assert clip.missing == {} and not clip.truncated
    assert clip.path == str(tmp_path / f"a{suffix}")


@pytest.mark.parametrize("suffix", AUDIO_SUFFIXES)
def test_audio_formats_round_trip(tmp_path, suffix):
    clip = decode_clip(make_clip(tmp_path / f"a{suffix}"))
    assert clip.frames is None and clip.frame_times is None
    assert "video" in clip.missing and "audio-only" in clip.missing["video"]
    assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert abs(clip.duration - 1.0) <= 0.15
    assert abs(clip.audio.shape[0] - 16000) < 0.1 * 16000
    assert 0.2 < np.abs(clip.audio).max() <= 1.0


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mkv"])
def test_uniform_sampling_follows_colour_ramp(tmp_path, suffix):
    clip = decode_clip(make_clip(tmp_path / f"ramp{suffix}", seconds=2.0, fps=10))
    times = clip.frame_times
    assert np.all(np.diff(times) > 0)
    assert times[0] < 0.25 * clip.duration and times[-1] > 0.75 * clip.duration
    position = red_level_to_fraction(clip.frames[..., 0].mean(axis=(1, 2)))
    assert np.all(np.diff(position) > 0)
    # segment centres: (k + 0.5) / 8 of the clip, within a frame or two
    expected = (np.arange(8) + 0.5) / 8
    assert np.allclose(position, expected, atol=0.12)


def test_fewer_frames_than_requested_repeats(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "few.mp4", seconds=1.0, fps=4), num_frames=8)
    assert clip.frames.shape[0] == 8
    assert np.all(np.diff(clip.frame_times) >= 0)
    assert len(np.unique(clip.frame_times)) == 4


def test_large_frames_are_capped(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "big.mp4", seconds=0.4, size=(960, 540)))
    assert clip.frames.shape == (8, 270, 480, 3)


# ---------------------------------------------------------------- missing modalities


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mkv"])
def test_video_without_audio(tmp_path, suffix):
    clip = decode_clip(make_clip(tmp_path / f"mute{suffix}", audio=False))
    assert clip.audio is None and clip.frames.shape[0] == 8
    assert "no audio track" in clip.missing["audio"]
    assert abs(clip.duration - 1.0) <= 0.15


def test_audio_only_mp4(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "voice.mp4", video=False))
    assert clip.frames is None and clip.audio is not None and "video" in clip.missing


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_stereo_48k_becomes_mono_16k(tmp_path, suffix):
    path = make_clip(tmp_path / f"st{suffix}", seconds=1.5, sample_rate=48000, channels=2)
    clip = decode_clip(path)
    assert clip.audio.ndim == 1 and clip.sample_rate == 16000
    assert abs(clip.audio.shape[0] - 24000) <= 0.01 * 24000
    assert np.abs(clip.audio).max() <= 1.0


def test_other_sample_rate(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "a.wav", sample_rate=22050), sample_rate=8000)
    assert clip.sample_rate == 8000 and abs(clip.audio.shape[0] - 8000) <= 80


@pytest.mark.parametrize("suffix", [".wav", ".mp4", ".ogg"])
def test_silent_audio_is_not_an_error(tmp_path, suffix):
    clip = decode_clip(make_clip(tmp_path / f"quiet{suffix}", silent=True))
    assert clip.audio is not None and np.abs(clip.audio).max() < 1e-3


# ---------------------------------------------------------------- truncation


def test_long_clip_is_truncated(tmp_path, caplog):
    path = make_clip(tmp_path / "long.mp4", seconds=2.0, fps=10)
    with caplog.at_level(logging.INFO, logger="gia_mic.media"):  # the caller reports the cut; the decoder notes it
        clip = decode_clip(path, max_seconds=1.0)
    assert clip.truncated and clip.duration <= 1.0 + 1e-6
    assert clip.audio.shape[0] <= 16000
    assert clip.frame_times.max() < 1.0 and clip.frames.shape[0] == 8
    assert any("longer than" in r.getMessage() for r in caplog.records)


def test_long_audio_only_is_truncated(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "long.flac", seconds=2.0), max_seconds=1.0)
    assert clip.truncated and clip.audio.shape[0] == 16000


def test_clip_of_exactly_max_seconds_is_not_truncated(tmp_path):
    clip = decode_clip(make_clip(tmp_path / "one.mp4", seconds=1.0), max_seconds=1.0)
    assert not clip.truncated


# ---------------------------------------------------------------- errors


def _raises(path, *fragments, **kwargs) -> str:
    with pytest.raises(MediaError) as info:
        decode_clip(path, **kwargs)
    message = str(info.value)
    assert Path(path).name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.mp4", "file not found")


def test_directory(tmp_path):
    _raises(tmp_path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    _raises(path, "empty")


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_truncated_file(tmp_path, suffix):
    data = make_clip(tmp_path / f"full{suffix}").read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    _raises(path, "cannot be")


def test_text_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    _raises(path, "text file")


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"),
    [
        ("x.png", "png", "rgb24"),
        ("x.jpg", "mjpeg", "yuvj420p"),
        ("x.bmp", "bmp", "bgr24"),
        ("x.tiff", "tiff", "rgb24"),
        ("x.gif", "gif", "rgb8"),
    ],
)
def test_image_is_refused(tmp_path, name, codec, pix_fmt):
    _raises(_write_image(tmp_path / name, codec, pix_fmt), "is an image", "not a video or audio")


def test_image_with_video_suffix_is_refused(tmp_path):
    path = _write_image(tmp_path / "x.png", "png", "rgb24").rename(tmp_path / "x.mp4")
    _raises(path, "is an image")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".flv", ".avi"])
def test_corrupt_container(tmp_path, suffix):
    header = make_clip(tmp_path / f"ok{suffix}").read_bytes()[:64]
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(header + np.random.default_rng(0).bytes(20000))
    _raises(path, "corrupt")


def test_too_short(tmp_path):
    path = make_clip(tmp_path / "blip.wav", seconds=0.05)
    _raises(path, "clip is 0.05 s long; at least 0.1 s is needed")
    assert decode_clip(path, min_seconds=0.01).audio.shape[0] == 800


def test_too_short_video(tmp_path):
    _raises(make_clip(tmp_path / "blip.mp4", seconds=0.04, fps=25, audio=False), "at least 0.1 s")


def test_no_audio_or_video_stream(tmp_path):
    path = tmp_path / "subs.srt"
    path.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n")
    _raises(path, "no audio or video stream")


def test_pyav_exceptions_are_wrapped(tmp_path, monkeypatch):
    path = make_clip(tmp_path / "a.wav")

    def boom(*args, **kwargs):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(media.av, "open", boom)
    _raises(path, "decoder exploded")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(media.av, "open", interrupt)
    with pytest.raises(KeyboardInterrupt):
        decode_clip(path)


# ---------------------------------------------------------------- prepare_waveform


def _tone(rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_prepare_waveform_mono_passthrough():
    wave, truncated = prepare_waveform(_tone(16000), 16000)
    assert wave.dtype == np.float32 and wave.shape == (16000,) and not truncated
    assert np.allclose(wave, _tone(16000), atol=1e-6)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_prepare_waveform_stereo(layout):
    stereo = np.stack([_tone(16000), -_tone(16000) * 0.5])
    if layout == "channels_last":
        stereo = stereo.T
    wave, _ = prepare_waveform(stereo, 16000)
    assert wave.shape == (16000,)
    assert np.allclose(wave, _tone(16000) * 0.25, atol=1e-6)


def test_prepare_waveform_int16():
    ints = (_tone(16000) * 32767).astype(np.int16)
    wave, _ = prepare_waveform(ints, 16000)
    assert wave.dtype == np.float32 and np.allclose(wave, _tone(16000), atol=1e-3)


def test_prepare_waveform_resamples_48k():
    wave, _ = prepare_waveform(_tone(48000, 1.5), 48000)
    assert abs(wave.shape[0] - 24000) <= 1
    assert 0.45 < np.abs(wave[100:-100]).max() <= 0.55


def test_prepare_waveform_truncates():
    wave, truncated = prepare_waveform(_tone(16000, 2.0), 16000, max_seconds=1.0)
    assert truncated and wave.shape == (16000,)


def test_prepare_waveform_normalises_loud_floats():
    wave, _ = prepare_waveform(_tone(16000) * 1000, 16000)
    assert np.isclose(np.abs(wave).max(), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 0), np.float32), "empty"),
        (np.zeros(800, np.float32), "0.05 s long"),
        (np.array([0.1] * 8000 + [np.nan] * 10, np.float32), "NaN"),
        (np.array([np.inf] * 8000, np.float32), "NaN or infinite"),
        (np.zeros((2, 2, 8000), np.float32), "3-D"),
        (np.array(0.5), "0-D"),
        (np.array(["a"] * 4000), "numeric"),
    ],
)
def test_prepare_waveform_errors(array, fragment):
    with pytest.raises(MediaError, match="waveform") as info:
        prepare_waveform(array, 16000)
    assert fragment in str(info.value)


def test_prepare_waveform_bad_rate():
    with pytest.raises(MediaError, match="sample_rate"):
        prepare_waveform(_tone(16000), 0)


# ---------------------------------------------------------------- real CREMA-D clips


def test_real_cremad_clips():
    if not (CREMAD / "mp4").is_dir() or not (CREMAD / "video").is_dir():
        pytest.skip(f"CREMA-D sample clips not found under {CREMAD}")
    mp4s = sorted((CREMAD / "mp4").glob("*.mp4"))
    assert mp4s, "no mp4 clips"
    for mp4 in mp4s:
        flv = CREMAD / "video" / f"{mp4.stem}.flv"
        decoded = [decode_clip(mp4), decode_clip(flv)]
        for clip in decoded:
            assert clip.frames.shape[0] == 8 and clip.frames.dtype == np.uint8
            assert max(clip.frames.shape[1:3]) <= 480
            assert clip.audio is not None and clip.audio.shape[0] > 16000
            assert np.abs(clip.audio).max() > 0.01 and clip.missing == {}
            assert 1.0 < clip.duration < 5.0
        assert abs(decoded[0].duration - decoded[1].duration) <= 0.2, mp4.name
