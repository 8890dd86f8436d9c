"""EmotionRecognizer: modality subsets, batching, transcripts, caching and every bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf

from gia_mic import ConfigError, InputError
from gia_mic.media import MediaError
from gia_mic.pipeline import EmotionRecognizer
from tests.clips import make_clip
from tests.conftest import FakeWhisper, build_tiny, cremad_dir


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint):
    return EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "talk.mp4", seconds=1.5)


SUBSETS = [list(s) for n in (1, 2, 3) for s in itertools.combinations(["video", "audio", "text"], n)]


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s))
def test_every_modality_subset(recognizer, clip, subset):
    pred = recognizer(video=clip, text="What a lovely day", modalities=subset)
    assert pred.modalities_used == subset
    scores = [s["score"] for s in pred.scores]
    assert sorted(scores, reverse=True) == scores and abs(sum(scores) - 1) < 1e-5
    assert [s["label"] for s in pred.scores][0] == pred.label
    assert sorted(s["label"] for s in pred.scores) == sorted(recognizer.labels)
    expected_gates = {f"{a}<-{b}" for a in subset for b in subset if a != b}
    assert set(pred.gates) == expected_gates
    assert pred.transcript == ("What a lovely day" if "text" in subset else None)
    assert pred.timings_ms["fusion"] > 0 and pred.timings_ms["total"] >= pred.timings_ms["fusion"]
    for m in ("video", "audio", "text"):
        assert (m in pred.missing) == (m not in subset)


def test_gate_axes_carry_time_and_words(recognizer, clip):
    pred = recognizer(video=clip, text="happy happy day")
    assert len(pred.gate_axes["video"]) == 8 and pred.gate_axes["video"] == sorted(pred.gate_axes["video"])
    assert 0 < pred.gate_axes["audio"][-1] <= 1.6
    assert pred.gates["audio<-text"].shape[0] == len(pred.gate_axes["audio"])
    spelled = "".join(pred.gate_axes["text"]).replace("<s>", "").replace("</s>", "")
    assert spelled == "happyhappyday"  # one entry per token of the transcript (the tiny preset's are bytes)
    assert set(pred.contributions) == {"video", "audio", "text"}


def test_batch_matches_single_calls(recognizer, tmp_path):
    clips = [make_clip(tmp_path / f"c{i}.mp4", seconds=s) for i, s in enumerate((0.8, 1.9, 1.2))]
    items = [{"video": c, "text": t} for c, t in zip(clips, ["yes", "no way this is happening", None])]
    batched = recognizer.batch(items, batch_size=3)
    for item, pred in zip(items, batched):
        single = recognizer(**item)
        assert pred.label == single.label
        np.testing.assert_allclose([s["score"] for s in pred.scores], [s["score"] for s in single.scores], atol=1e-5)


def test_audio_file_and_array_inputs(recognizer, tmp_path):
    wav = make_clip(tmp_path / "a.wav", seconds=1.0)
    pred = recognizer(audio=wav)
    assert pred.modalities_used == ["audio"] and "video" in pred.missing
    wave, rate = sf.read(wav, dtype="float32")
    same = recognizer(audio=(wave, rate))
    np.testing.assert_allclose(pred.scores[0]["score"], same.scores[0]["score"], atol=1e-4)


def test_text_only(recognizer):
    pred = recognizer(text="I can't believe you did that!")
    assert pred.modalities_used == ["text"] and pred.transcript_source == "given"


def test_video_without_audio_marks_speech_missing(recognizer, tmp_path):
    silent_video = make_clip(tmp_path / "mute.mp4", seconds=1.0, audio=False)
    pred = recognizer(video=silent_video)
    assert pred.modalities_used == ["video"]
    assert "no audio track" in pred.missing["audio"]


def test_reclassify_runs_only_the_fusion(recognizer, clip, monkeypatch):
    prepared = recognizer.prepare(video=clip, text="calm words")
    monkeypatch.setattr(recognizer.model, "encode", lambda **kw: pytest.fail("encoders re-ran"))
    a = recognizer.classify(prepared, modalities=["audio"])
    b = recognizer.classify(prepared, modalities=["video", "text"])
    assert a.modalities_used == ["audio"] and b.modalities_used == ["video", "text"]


def test_new_transcript_reencodes_only_text(recognizer, clip, monkeypatch):
    prepared = recognizer.prepare(video=clip, text="calm words")
    seen = []
    real = recognizer.model.encode

    def spy(**kw):
        seen.append(sorted(k for k, v in kw.items() if v is not None))
        return real(**kw)

    monkeypatch.setattr(recognizer.model, "encode", spy)
    pred = recognizer.classify(prepared, text="furious shouting")
    assert seen == [["input_ids", "text_attention_mask"]]
    assert pred.transcript == "furious shouting"


def test_whisper_fills_a_missing_transcript(tiny_checkpoint, clip):
    from gia_mic.asr import WhisperTranscriber

    whisper = FakeWhisper("what a lovely day")
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")
    rec.transcriber = WhisperTranscriber(whisper, device="cpu")
    pred = rec(video=clip)
    assert (pred.transcript, pred.transcript_source) == ("what a lovely day", "whisper:custom")
    assert "text" not in pred.missing and "text" in pred.modalities_used and "asr" in pred.timings_ms
    ((audio, _),) = whisper.calls  # the clip's own decoded speech, at the model's rate
    assert audio.ndim == 1 and abs(len(audio) / rec.config.sample_rate - 1.5) < 0.1


def test_real_cremad_clip(recognizer):
    path = cremad_dir() / "mp4" / "1001_DFA_HAP_XX.mp4"
    pred = recognizer(video=path, text="Don't forget a jacket")
    assert pred.modalities_used == ["video", "audio", "text"]
    assert 1.5 < pred.gate_axes["audio"][-1] < 3.5  # the clip lasts about 2 s


def test_untrained_modality_is_refused(tmp_path):
    model = build_tiny(modalities=["audio", "text"])
    model.save_pretrained(tmp_path / "at")
    rec = EmotionRecognizer.from_pretrained(tmp_path / "at", asr_model=None)
    with pytest.raises(InputError, match="not trained on video"):
        rec(text="hi", modalities=["video", "text"])
    assert rec(text="hi").modalities_used == ["text"]


# ---------------------------------------------------------------- bad input: a clear error, nothing else
def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,error,message", [
    (lambda d: d / "nope.mp4", MediaError, "file not found"),
    (lambda d: write(d / "empty.mp4", b""), MediaError, "empty"),
    (lambda d: write(d / "notes.mp4", b"just some text, not a video\n" * 20), MediaError, "text file"),
    (lambda d: write(d / "corrupt.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40), MediaError, "cannot be"),
    (lambda d: make_clip(d / "blink.mp4", seconds=0.05), MediaError, "at least 0.1 s"),
])
def test_bad_media_files(recognizer, tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        recognizer(video=make(tmp_path))


def test_truncated_file(recognizer, tmp_path):
    good = make_clip(tmp_path / "good.mp4", seconds=1.0).read_bytes()
    bad = write(tmp_path / "half.mp4", good[: len(good) // 2])
    with pytest.raises(MediaError, match="half.mp4"):
        recognizer(video=bad)


def test_image_is_not_a_clip(recognizer, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "face.png")
    with pytest.raises(MediaError, match="image"):
        recognizer(video=tmp_path / "face.png")


def test_long_clip_is_truncated_as_documented(tiny_checkpoint, tmp_path):
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None)
    rec.config.max_audio_seconds = 1.0
    try:
        pred = rec(video=make_clip(tmp_path / "long.mp4", seconds=2.5))
    finally:
        rec.config.max_audio_seconds = 30.0
    assert pred.gate_axes["audio"][-1] < 1.05
    assert max(pred.gate_axes["video"]) < 1.0


def test_silent_and_stereo_48k_audio(recognizer, tmp_path):
    silent = recognizer(audio=make_clip(tmp_path / "s.wav", seconds=1.0, silent=True))
    assert np.isfinite([s["score"] for s in silent.scores]).all()
    stereo = recognizer(audio=make_clip(tmp_path / "st.flac", seconds=1.0, sample_rate=48000, channels=2))
    assert 0.9 < stereo.gate_axes["audio"][-1] < 1.05


@pytest.mark.parametrize("text,ok", [("", False), ("   ", False), ("word " * 10_000, True)])
def test_empty_and_huge_transcripts(recognizer, text, ok):
    if ok:
        pred = recognizer(text=text)
        assert len(pred.gate_axes["text"]) <= recognizer.config.max_text_tokens
    else:
        with pytest.raises(InputError, match="give a video, an audio clip or a transcript"):
            recognizer(text=text)


def test_empty_transcript_with_audio_marks_text_missing(recognizer, clip):
    pred = recognizer(video=clip, text="")
    assert "text" not in pred.modalities_used and "ASR is off" in pred.missing["text"]


def test_non_utf8_transcript(recognizer, clip):
    with pytest.raises(InputError, match="not valid UTF-8"):
        recognizer(video=clip, text=b"\xff\xfe bad bytes")
    with pytest.raises(InputError, match="not valid UTF-8"):
        recognizer(video=clip, text="surrogate \udcff escape")


def test_unknown_and_empty_modality_sets(recognizer, clip):
    with pytest.raises(ConfigError, match="unknown modality 'smell'"):
        recognizer(video=clip, modalities=["smell"])
    with pytest.raises(ConfigError, match="empty"):
        recognizer(video=clip, modalities=[])


def test_requested_modality_unavailable(recognizer):
    with pytest.raises(InputError, match="nothing to classify.*video"):
        recognizer(text="hello", modalities=["video"])


def test_classify_never_modifies_the_prepared_clip(recognizer, clip):
    prepared = recognizer.prepare(video=clip, text="calm words")
    encoded = dict(prepared.encoded)
    pred = recognizer.classify(prepared, text="furious shouting")
    assert pred.transcript == "furious shouting"
    assert prepared.transcript.text == "calm words" and prepared.encoded == encoded


def test_truncation_is_reported(tiny_checkpoint, tmp_path):
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None)
    rec.config.max_audio_seconds = 1.0
    try:
        long_clip = rec.prepare(video=make_clip(tmp_path / "long.mp4", seconds=2.5))
        short_clip = rec.prepare(video=make_clip(tmp_path / "short.mp4", seconds=0.8))
    finally:
        rec.config.max_audio_seconds = 30.0
    assert long_clip.truncated and not short_clip.truncated


def test_per_modality_answers_are_the_model_run_with_each_modality_alone(recognizer, clip):
    prepared = recognizer.prepare(video=clip, text="What a lovely day")
    fused = recognizer.classify(prepared, modalities=["video", "audio", "text"])
    assert set(fused.per_modality) == {"video", "audio", "text"}
    for m in ("video", "audio", "text"):
        alone = recognizer.classify(prepared, modalities=[m])
        assert fused.per_modality[m]["label"] == alone.label
        assert fused.per_modality[m]["score"] == pytest.approx(alone.scores[0]["score"], abs=1e-5)
        assert alone.per_modality == {m: {"label": alone.label, "score": alone.scores[0]["score"]}}
        assert alone.agreement is None
    labels = {v["label"] for v in fused.per_modality.values()}
    assert fused.agreement is (len(labels) == 1)
    assert fused.to_dict()["per_modality"] == fused.per_modality



def test_scores_use_the_temperature_of_the_modalities_used(recognizer, clip):
    """Each answer (fused, each modality alone, leave-one-out) is scaled by its own modality set's T."""
    prepared = recognizer.prepare(video=clip, text="What a lovely day")
    plain = {tuple(m): recognizer.classify(prepared, modalities=m) for m in (["audio", "text"], ["audio"], ["text"])}
    config = recognizer.model.config
    config.temperatures = {"audio+text": 3.0, "text": 0.5}  # audio alone: the global T (1)
    try:
        scaled = {m: recognizer.classify(prepared, modalities=list(m)) for m in plain}
    finally:
        config.temperatures = {}
    for m, t in ((("audio", "text"), 3.0), (("audio",), 1.0), (("text",), 0.5)):
        p1 = np.array([s["score"] for s in sorted(plain[m].scores, key=lambda s: s["label"])])
        pt = np.array([s["score"] for s in sorted(scaled[m].scores, key=lambda s: s["label"])])
        expected = np.exp(np.log(p1) / t) / np.exp(np.log(p1) / t).sum()
        np.testing.assert_allclose(pt, expected, atol=1e-5)
    fused = scaled[("audio", "text")]
    assert fused.per_modality["text"]["score"] == pytest.approx(scaled[("text",)].scores[0]["score"], abs=1e-6)
    assert fused.per_modality["audio"]["score"] == pytest.approx(scaled[("audio",)].scores[0]["score"], abs=1e-6)


def test_array_inputs_report_truncation_truthfully(recognizer):
    """Cut means longer than max_audio_seconds, counted in samples per channel (not samples in total)."""
    limit = recognizer.config.max_audio_seconds
    rate = 16000
    t = np.arange(int(rate * 1.5)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    stereo = np.stack([tone, tone])  # (2, N): 1.5 s, twice as many samples
    assert recognizer.prepare(audio=(stereo, rate)).truncated is False
    long = np.zeros(int(rate * (limit + 0.5)), dtype=np.float32)
    long[::50] = 0.1
    assert recognizer.prepare(audio=(long, rate)).truncated is True
    assert recognizer.prepare(audio=(tone, rate)).truncated is False
