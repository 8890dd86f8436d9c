"""Emotion over time: streaming decode, voice activity, segmentation methods, batching, summary."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from gia_mic import timeline as timeline_module
from gia_mic.asr import SpokenSegment, Transcript
from gia_mic.audio_stream import probe_media, stream_audio
from gia_mic.media import MediaError, decode_clip
from gia_mic.pipeline import EmotionRecognizer
from gia_mic.processing import InputError
from gia_mic.timeline import context_windows, cut_regions, split_long, summarize
from gia_mic.vad import VadOptions, speech_probabilities, speech_regions
from tests.clips import make_clip, speech_like
from tests.conftest import SHARED_DATA, build_tiny

RATE = 16000
# Three utterances between silences: (start, end) of each in seconds
LAYOUT = ((1.0, 2.5), (4.0, 6.0), (7.0, 7.8))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), np.float32)


def utterances(layout=LAYOUT, total: float = 8.5) -> np.ndarray:
    wave = silence(total)
    for i, (a, b) in enumerate(layout):
        piece = speech_like(b - a, f0=110 + 60 * i)
        wave[int(a * RATE) : int(a * RATE) + len(piece)] = piece
    return wave


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint):
    return EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")


@pytest.fixture(scope="module")
def short_window():
    """A tiny model whose window is 3 s, so that long stretches must be split."""
    return EmotionRecognizer(build_tiny(max_audio_seconds=3.0), device="cpu")


class FakeTranscriber:
    """Duck-typed WhisperTranscriber: words name the length they heard; segments are scripted."""

    name = "fake"

    def __init__(self, segments=()):
        self.scripted, self.heard = list(segments), []

    def available(self):
        return True, None

    def transcribe(self, wave):
        self.heard.append(len(wave))
        return Transcript(f"heard {len(wave)} samples", "whisper:fake")

    def segments(self, wave):
        self.heard.append(len(wave))
        return list(self.scripted)


# ---------------------------------------------------------------------------------- streaming decode
@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp4", ".ogg"])
def test_stream_audio_chunks_add_up_to_decode_clip(tmp_path, suffix):
    path = make_clip(tmp_path / f"long{suffix}", seconds=7.3, sample_rate=44100, channels=2)
    whole = decode_clip(path, max_seconds=100).audio
    chunks = list(stream_audio(path, chunk_seconds=2.0))
    assert [len(c) for c in chunks[:-1]] == [32000] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 32000
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_stream_audio_downmixes_many_channels_in_a_child_process(tmp_path):
    # planar audio with 8+ channels crashed PyAV's to_ndarray: a child process, so a crash fails only this test
    t = np.arange(2 * RATE) / RATE
    data = np.stack([0.05 * np.sin(2 * np.pi * (200 + 50 * c) * t) for c in range(12)], axis=1).astype(np.float32)
    sf.write(tmp_path / "twelve.wav", data, RATE, subtype="FLOAT")
    code = ("import sys, numpy as np; from gia_mic.audio_stream import stream_audio; "
            "np.save(sys.argv[2], np.concatenate(list(stream_audio(sys.argv[1], chunk_seconds=0.5))))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "twelve.wav"), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), data.mean(axis=1), atol=1e-6)


def test_stream_audio_window_matches_decode_clip_window(tmp_path):
    path = make_clip(tmp_path / "w.flac", seconds=6.0)
    got = np.concatenate(list(stream_audio(path, chunk_seconds=1.0, start=2.5, end=5.0)))
    assert len(got) == 40000
    np.testing.assert_array_equal(got, decode_clip(path, start=2.5, end=5.0).audio)


def test_stream_audio_is_lazy(tmp_path):
    path = make_clip(tmp_path / "lazy.wav", seconds=5.0)
    stream = stream_audio(path, chunk_seconds=1.0)
    assert len(next(stream)) == 16000  # one chunk decoded, the rest not yet
    stream.close()


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "nope.wav", "file not found"),
    (lambda d: make_clip(d / "mute.mp4", seconds=1.0, audio=False), "has no audio track"),
    (lambda d: (d / "notes.wav").write_text("hello there, not audio\n" * 20) and d / "notes.wav", "text file"),
])
def test_stream_audio_errors_name_the_file(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(MediaError, match=fragment) as err:
        next(stream_audio(path))
    assert str(path) in str(err.value)


def test_probe_media(tmp_path):
    video = probe_media(make_clip(tmp_path / "v.mp4", seconds=2.0))
    audio = probe_media(make_clip(tmp_path / "a.wav", seconds=3.0))
    assert (video.has_video, video.has_audio) == (True, True) and video.duration == pytest.approx(2.0, abs=0.1)
    assert (audio.has_video, audio.has_audio, audio.duration) == (False, True, pytest.approx(3.0, abs=0.01))
    with pytest.raises(MediaError, match="empty"):
        probe_media((tmp_path / "empty.wav").open("w").name)


# ---------------------------------------------------------------------------------- voice activity
def test_vad_scores_do_not_depend_on_chunking():
    wave = utterances()
    whole = speech_probabilities([wave])
    pieces = speech_probabilities(np.split(wave, [1000, 8777, 40000, 40001]))
    assert len(whole) == int(np.ceil(len(wave) / 512))
    np.testing.assert_allclose(pieces, whole, atol=1e-6)


def test_vad_finds_speech_like_sound_and_not_a_tone_or_silence():
    wave = utterances()
    regions = speech_regions(speech_probabilities([wave]), len(wave))
    assert len(regions) == len(LAYOUT)
    for (a, b), (start, end) in zip(LAYOUT, regions):
        assert abs(start - a) < 0.3 and abs(end - b) < 0.3
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    assert speech_regions(speech_probabilities([tone]), len(tone)) == []
    assert speech_regions(speech_probabilities([silence(3)]), 3 * RATE) == []


def test_vad_options_shape_the_regions():
    probs = np.zeros(200, np.float32)
    probs[50:80] = probs[90:120] = 0.9  # two bursts 10 windows (0.32 s) apart
    merged = speech_regions(probs, 200 * 512, options=VadOptions(min_silence_seconds=0.5, pad_seconds=0.0))
    apart = speech_regions(probs, 200 * 512, options=VadOptions(min_silence_seconds=0.1, pad_seconds=0.0))
    assert merged == [(50 * 512 / RATE, 120 * 512 / RATE)]
    assert apart == [(50 * 512 / RATE, 80 * 512 / RATE), (90 * 512 / RATE, 120 * 512 / RATE)]
    with pytest.raises(ValueError, match="threshold"):
        VadOptions(threshold=1.5)


def test_vad_leaves_torch_threads_alone():
    before = torch.get_num_threads()
    speech_probabilities([silence(1)])
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------- building blocks
def test_split_long_makes_equal_parts_within_the_window():
    parts = split_long([(0.0, 7.0, "words"), (8.0, 9.0, "kept")], 3.0)
    assert [(round(a, 3), round(b, 3)) for a, b, _ in parts] == [(0, 2.333), (2.333, 4.667), (4.667, 7), (8, 9)]
    assert [t for _, _, t in parts] == [None, None, None, "kept"]


def test_cut_regions_slices_and_reads_lazily():
    wave = np.arange(100 * RATE, dtype=np.float32)
    pulled = []

    def chunks():
        for i in range(0, len(wave), RATE):
            pulled.append(i // RATE)
            yield wave[i : i + RATE]

    cut = cut_regions(chunks(), [(2.5, 3.25), (50.0, 51.5), (99.5, 104.0)], RATE)
    np.testing.assert_array_equal(next(cut), wave[40000:52000])
    assert max(pulled) == 3  # nothing past the first span's end was decoded yet
    np.testing.assert_array_equal(next(cut), wave[800000:824000])
    assert max(pulled) == 51
    np.testing.assert_array_equal(next(cut), wave[1592000:])  # past the end: short


def test_context_windows_stop_at_neighbours_and_the_model_window():
    regions = [(1.0, 2.0, None), (2.4, 3.0, None), (10.0, 17.5, None), (30.0, 31.0, None)]
    windows = context_windows(regions, 1.0, 8.0)
    assert windows == [(0.0, 2.2), (2.2, 4.0), (9.75, 17.75), (29.0, 32.0)]
    assert context_windows(regions, 0.0, 8.0) == [(s, e) for s, e, _ in regions]
    overlapping = [(0.0, 5.0, None), (1.0, 2.0, None)]  # given spans may overlap: starts never go back
    assert context_windows(overlapping, 1.0, 8.0) == [(0.0, 6.0), (0.0, 3.0)]


def test_summary_weights_by_duration():
    from gia_mic.timeline import Segment

    labels = ["neutral", "happy"]
    # not a tie (0.6/0.4 would give 0.5/0.5, decided by rounding): the long neutral segment outweighs the short one
    segs = [Segment(0, 1, "happy", {"neutral": 0.2, "happy": 0.8}), Segment(1, 4, "neutral", {"neutral": 0.7, "happy": 0.3})]
    s = summarize(segs, labels)
    assert s.scores == pytest.approx({"neutral": (0.2 + 3 * 0.7) / 4, "happy": (0.8 + 3 * 0.3) / 4})
    assert s.shares == pytest.approx({"neutral": 0.75, "happy": 0.25}) and s.label == "neutral"
    assert s.speech_seconds == 4 and summarize([], labels) is None


# ---------------------------------------------------------------------------------- timelines
def test_vad_timeline_of_a_waveform(recognizer):
    tl = recognizer.timeline(utterances())
    assert tl.method == "vad" and tl.message is None and tl.duration == pytest.approx(8.5)
    assert len(tl.segments) == len(LAYOUT)
    for (a, b), seg in zip(LAYOUT, tl.segments):
        assert abs(seg.start - a) < 0.3 and abs(seg.end - b) < 0.3
        assert seg.label in recognizer.labels and list(seg.scores) == recognizer.labels
        assert sum(seg.scores.values()) == pytest.approx(1, abs=1e-5) and seg.label == max(seg.scores, key=seg.scores.get)
        assert seg.modalities_used == ["audio"] and seg.transcript is None and seg.transcript_source == "missing"
    assert tl.summary.speech_seconds == pytest.approx(sum(s.duration for s in tl.segments))


def test_segment_scores_equal_classifying_the_cut_audio(recognizer):
    wave = utterances()
    for context in (0.0, 0.5):
        tl = recognizer.timeline(wave, batch_size=2, context_seconds=context)
        regions = [(s.start, s.end, None) for s in tl.segments]
        for seg, (low, high) in zip(tl.segments, context_windows(regions, context, recognizer.config.max_audio_seconds)):
            assert (low < seg.start) == (context > 0)
            alone = recognizer(audio=(wave[int(round(low * RATE)) : int(round(high * RATE))], RATE))
            assert seg.label == alone.label
            assert seg.scores[alone.label] == pytest.approx(alone.scores[0]["score"], abs=1e-4)


def test_explain_segment_repeats_the_segment_with_gates_on_the_recording_clock(recognizer, tmp_path):
    path = tmp_path / "talk.wav"
    sf.write(path, utterances(), RATE, subtype="FLOAT")
    tl = recognizer.timeline(path, spans=[(a, b, "I am so happy today") for a, b in LAYOUT])
    assert all(set(s.per_modality) == {"audio", "text"} for s in tl.segments)
    for index, seg in enumerate(tl.segments):
        pred = timeline_module.explain_segment(recognizer, path, tl, index)
        assert pred.label == seg.label and pred.scores[0]["score"] == pytest.approx(seg.scores[seg.label], abs=1e-4)
        assert {m: v["label"] for m, v in pred.per_modality.items()} == {m: v["label"] for m, v in seg.per_modality.items()}
        assert pred.agreement == seg.agreement
        assert seg.agreement == (len({v["label"] for v in seg.per_modality.values()}) == 1)
        assert set(pred.gates) == {"audio<-text", "text<-audio"}
        times = pred.gate_axes["audio"]
        assert seg.start - 1.0 - 0.05 <= times[0] and times[-1] <= seg.end + 1.0 + 0.05, (times[0], times[-1], seg)
    with pytest.raises(InputError, match="segment 9 does not exist"):
        timeline_module.explain_segment(recognizer, path, tl, 9)


def test_file_and_waveform_give_the_same_timeline(recognizer, tmp_path):
    wave = utterances()
    path = tmp_path / "talk.wav"
    sf.write(path, wave, RATE, subtype="FLOAT")
    from_file, from_array = recognizer.timeline(path), recognizer.timeline((wave, RATE))
    assert from_file.source == str(path) and from_array.source is None
    assert [(s.start, s.end, s.label) for s in from_file.segments] == [(s.start, s.end, s.label) for s in from_array.segments]


def test_encoders_run_in_batches(recognizer, monkeypatch):
    sizes = []
    real = recognizer.prepare_batch
    monkeypatch.setattr(recognizer, "prepare_batch", lambda items, **kw: sizes.append(len(items)) or real(items, **kw))
    tl = recognizer.timeline(utterances(), batch_size=2)
    assert sizes == [2, 1] and len(tl.segments) == 3


@pytest.mark.parametrize("source", ["array", "file"])
def test_silence_gives_an_empty_timeline_with_a_message(recognizer, tmp_path, source):
    wave = silence(4.0) + (np.random.default_rng(0).standard_normal(4 * RATE) * 1e-3).astype(np.float32)
    if source == "file":
        wave = make_clip(tmp_path / "quiet.wav", seconds=4.0, silent=True)
    tl = recognizer.timeline(wave)
    assert tl.segments == [] and tl.summary is None and "no speech" in tl.message
    assert tl.duration == pytest.approx(4.0, abs=0.05)


def test_long_speech_is_split_to_the_model_window(short_window):
    wave = np.concatenate([silence(0.5), speech_like(10.0), silence(0.5)])
    for method in ("vad", "fixed"):
        tl = short_window.timeline(wave, method=method)
        assert tl.segments and all(s.duration <= 3.0 + 1e-6 for s in tl.segments), method
        assert sum(s.duration for s in tl.segments) > 9.0


def test_fixed_windows_skip_windows_without_signal(short_window):
    wave = np.concatenate([speech_like(3.0), silence(3.0), speech_like(2.0)])
    tl = short_window.timeline(wave, method="fixed")
    assert [(s.start, s.end) for s in tl.segments] == [(0.0, 3.0), (6.0, 8.0)]
    assert short_window.timeline(wave, method="fixed", window_seconds=1.0).segments[0].end == 1.0


def test_video_file_is_read_for_its_audio(short_window, tmp_path):
    video = make_clip(tmp_path / "talk.mp4", seconds=7.0)  # a tone: no speech, but signal in every window
    assert "no speech" in short_window.timeline(video).message
    tl = short_window.timeline(video, method="fixed")
    assert tl.source == str(video) and tl.duration == pytest.approx(7.0, abs=0.1)  # AAC pads a little
    assert [t for s in tl.segments for t in (s.start, s.end)] == pytest.approx([0, 3, 3, 6, 6, tl.duration])


def test_asr_transcribes_each_segment(tiny_checkpoint):
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")
    rec.transcriber = FakeTranscriber()
    tl = rec.timeline(utterances(), modalities=["audio", "text"], context_seconds=0.0)
    assert len(rec.transcriber.heard) == 3
    for seg, heard in zip(tl.segments, rec.transcriber.heard):
        assert seg.transcript == f"heard {heard} samples" and seg.transcript_source == "whisper:fake"
        assert heard == pytest.approx(seg.duration * RATE, abs=2) and seg.modalities_used == ["audio", "text"]


def test_spans_are_classified_with_their_text(recognizer):
    wave = utterances()
    spans = [(4.0, 6.0, "so  happy"), (1.0, 2.5), (8.0, 12.0), (9.0, 10.0)]  # the recording ends at 8.5 s
    tl = recognizer.timeline(wave, spans=spans, modalities=["audio", "text"])
    assert tl.method == "spans"
    assert [(s.start, s.end) for s in tl.segments] == [(1.0, 2.5), (4.0, 6.0), (8.0, 8.5)]
    assert tl.segments[1].transcript == "so happy" and tl.segments[1].transcript_source == "given"
    assert tl.segments[0].transcript is None
    with pytest.raises(InputError, match="start < end"):
        recognizer.timeline(wave, spans=[(3.0, 2.0)])


def test_whisper_segments_with_blocks_and_word_splits(short_window, monkeypatch):
    words = [(0.5 + 0.5 * i, 0.9 + 0.5 * i, f" w{i}") for i in range(10)]  # 0.5 .. 5.4 s: too long for 3 s
    scripted = [SpokenSegment(0.5, 5.4, "w0 ... w9", words), SpokenSegment(6.0, 7.0, "last one", [(6.0, 7.0, " last")])]
    short_window.transcriber = FakeTranscriber(scripted)
    monkeypatch.setattr(timeline_module, "WHISPER_BLOCK_SECONDS", 8.0)
    monkeypatch.setattr(timeline_module, "CHUNK_SECONDS", 4.0)
    try:
        tl = short_window.timeline(speech_like(12.0), method="whisper", modalities=["audio", "text"])
    finally:
        short_window.transcriber = None
    # block 1 (0-8 s) keeps its first segment and cuts at its end (5.4 s); the last 6.6 s are one more block,
    # where the same script lands 5.4 s later; the last segment is cut at the recording's end
    spans = [(round(s.start, 2), round(s.end, 2), s.transcript) for s in tl.segments]
    assert spans[:2] == [(0.5, 2.95, "w0 w1 w2 w3 w4"), (2.95, 5.4, "w5 w6 w7 w8 w9")]
    assert spans[2:] == [(5.9, 8.35, "w0 w1 w2 w3 w4"), (8.35, 10.8, "w5 w6 w7 w8 w9"), (11.4, 12.0, "last one")]
    assert all(s.transcript_source == "whisper:fake" for s in tl.segments)


def test_whisper_method_needs_asr(recognizer):
    with pytest.raises(InputError, match="needs Whisper: ASR is off"):
        recognizer.timeline(utterances(), method="whisper")


def test_progress_reaches_the_end(recognizer):
    calls = []
    recognizer.timeline(utterances(), batch_size=1, progress=lambda done, total: calls.append((done, total)))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (8.5, 8.5) and len(calls) == 4


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"method": "energy"}, InputError, "unknown timeline method"),
    ({"batch_size": 0}, InputError, "batch_size"),
    ({"modalities": ["smell"]}, Exception, "smell"),
])
def test_bad_options(recognizer, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        recognizer.timeline(utterances(), **kwargs)


def test_bad_sources_name_the_file(recognizer, tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        recognizer.timeline(tmp_path / "missing.mp4")
    mute = make_clip(tmp_path / "mute.mp4", seconds=1.0, audio=False)
    with pytest.raises(MediaError, match=f"{mute}.*no audio track"):
        recognizer.timeline(mute)
    with pytest.raises(MediaError, match="NaN"):
        recognizer.timeline(np.full(RATE, np.nan, np.float32))


def test_real_ravdess_clips_in_a_row():
    root = SHARED_DATA / "ravdess"
    if not root.is_dir():
        pytest.skip("../shared/data/ravdess is absent (a fresh clone): real-clip test skipped")
    with open(root / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["actor"] == "17" and r["emotion"] in ("angry", "sad")][:4]
    parts = []
    for row in rows:
        wave, rate = sf.read(root / row["path"], dtype="float32")
        assert rate == RATE
        parts += [wave, silence(1.0)]
    from gia_mic.hub import default_model

    rec = EmotionRecognizer.from_pretrained(default_model(), asr_model=None, device="cpu")
    tl = rec.timeline(np.concatenate(parts))
    assert len(tl.segments) == 4  # one per sentence: pauses inside a sentence do not split it
    assert all(s.duration < 3.5 for s in tl.segments)
