"""What the page says (gia_app.views): the verdict, errors, examples and the API snippet, without a server."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gia_mic.pipeline import Prediction
from tests.app_server import REPO_ROOT, load_app

load_app()  # puts the repository root (gia_app) on sys.path
from gia_app import views  # noqa: E402

CONFIG = SimpleNamespace(labels=["neutral", "happy", "angry", "sad"], modalities=["audio", "text"])


def prediction(top: float, voice: str, words: str) -> Prediction:
    rest = (1 - top) / 3
    scores = [{"label": "neutral", "score": top}] + [{"label": x, "score": rest} for x in ("happy", "angry", "sad")]
    return Prediction(label="neutral", scores=scores, transcript="Don't forget a jacket", transcript_source="given",
                      modalities_used=["audio", "text"], missing={"video": "the model was not trained on it"},
                      per_modality={"audio": {"label": voice, "score": 0.84}, "text": {"label": words, "score": 0.69}},
                      agreement=voice == words, timings_ms={"total": 1504.0, "fusion": 37.0})


def test_verdict_says_what_voice_and_words_say_and_that_they_disagree():
    text = views.verdict_markdown(prediction(0.91, "angry", "neutral"), "/tmp/gradio/abc/my_clip.mp4", CONFIG)
    assert text.startswith("## neutral (91%)") and "File: `my_clip.mp4`" in text and "/tmp/gradio" not in text
    assert "The voice says **angry** (84%); the words say **neutral** (69%): **they disagree**" in text
    assert "Low confidence" not in text
    assert "knows only neutral, happy, angry, sad" in text
    assert "video" not in text.split("<small>")[0]  # an untrained modality is not listed as 'not used'


def test_verdict_agreement_and_low_confidence_notice():
    text = views.verdict_markdown(prediction(views.LOW_CONFIDENCE - 0.01, "neutral", "neutral"), None, CONFIG)
    assert "**they agree**" in text and "Low confidence" in text
    assert "Low confidence" not in views.verdict_markdown(prediction(views.LOW_CONFIDENCE, "sad", "sad"), None, CONFIG)


def test_details_use_plain_words_not_jargon():
    text = views.details_markdown(prediction(0.9, "sad", "sad"), cached=False)
    assert "Took 1.5 s" in text and "Words used** (typed)" in text and "Scores under 60% mean the model is unsure" in text
    assert "Fusion" not in text and "ms" not in text


def test_header_says_what_the_model_reads_and_ignores():
    text = views.header_markdown(CONFIG)
    assert text.startswith("# Emotion from voice and words") and "not trained on video" in text
    assert "face" not in text.split("\n")[0]


def test_examples_only_for_classes_the_model_outputs():
    clips = views.example_clips(REPO_ROOT / "examples", CONFIG.labels)
    if not clips:
        pytest.skip("examples/ has no CREMA-D clips")
    assert {emotion for _, emotion in clips} <= set(CONFIG.labels)
    assert not any("_DIS_" in p.name or "_FEA_" in p.name for p, _ in clips)
    assert all(Path(p).name.split("_")[2] in {"ANG", "HAP", "NEU", "SAD"} for p, _ in clips)


def test_api_snippet_uses_the_page_url_and_the_model_modalities():
    snippet = views.api_snippet("http://127.0.0.1:9999/", ["audio", "text"])
    assert 'Client("http://127.0.0.1:9999/")' in snippet and '"audio,text"' in snippet and "video" not in snippet
    compile(snippet, "snippet", "exec")
    assert "/gradio_api/mcp/" in views.api_markdown("http://host:1/", ["audio"])


def test_error_and_new_input_messages():
    assert views.error_markdown("notes.mp4 is a text file").startswith("### Could not classify this")
    fresh = views.new_input_markdown("/tmp/x/b.wav", "old words")
    assert "`b.wav`" in fresh and "transcript box is not empty" in fresh
    assert "transcript box" not in views.new_input_markdown("/tmp/x/b.wav", "")


def test_speech_words_in_errors():
    from gia_app.backend import speech_words

    assert speech_words("this model was not trained on video (it was trained on audio, text)") == \
        "this model was not trained on video (it was trained on speech, text)"
    assert speech_words("x.wav: its audio is 0.04 s long") == "x.wav: its speech is 0.04 s long"


def test_downloads_are_bounded_and_written_whole():
    import shutil

    from gia_app.backend import Downloads

    store = Downloads(keep=2)
    try:
        paths = [store.write("r.json", f"{{\"n\": {i}}}\n") for i in range(3)]
        assert not Path(paths[0]).exists() and [Path(p).read_text() for p in paths[1:]] == ['{"n": 1}\n', '{"n": 2}\n']
        assert len(list(store.root.iterdir())) == 2 and not list(store.root.rglob("*.tmp"))
    finally:
        shutil.rmtree(store.root)


def test_segment_details_say_span_scores_voice_and_words():
    from gia_mic.timeline import Segment

    scores = {"neutral": 0.1, "happy": 0.2, "angry": 0.55, "sad": 0.15}
    seg = Segment(12.0, 15.456, "angry", scores, "no *way*", "given", ["audio", "text"],
                  per_modality={"audio": {"label": "angry", "score": 0.8}, "text": {"label": "sad", "score": 0.4}},
                  agreement=False)
    text = views.segment_markdown(seg, 2, CONFIG.labels)
    assert text.startswith("### Stretch 3: 12.00\u201315.46 s: angry (55%)")
    assert "Scores: angry 55%, happy 20%, sad 15%, neutral 10%" in text and "Low confidence" in text
    assert "The voice says **angry** (80%); the words say **sad** (40%): **they disagree**" in text
    assert "**Words** (typed): \u201cno \\*way\\*\u201d" in text
    alone = Segment(0, 1, "sad", {**scores, "sad": 0.9}, None, "missing", ["audio"], {"audio": {"label": "sad", "score": 0.9}})
    text = views.segment_markdown(alone, 0, CONFIG.labels)
    assert "From the voice alone." in text and "Words not used" in text and "Low confidence" not in text
