"""The Gradio app: /classify and /timeline through gradio_client, bad inputs, the session cache, gate plots, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.app_server import REPO_ROOT, load_app, serve, tiny_recognizer
from tests.clips import make_clip

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

MAX_SECONDS = 3.0
TEXT = "I am so happy today"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-clips")
    good = make_clip(root / "clip.mp4", seconds=1.0)
    bad = {
        "empty": root / "empty.mp4",
        "truncated": root / "truncated.mp4",
        "text": root / "notes.mp4",
        "image": root / "picture.png",
        "corrupt": root / "corrupt.mkv",
        "short": make_clip(root / "short.mp4", seconds=0.04, fps=25),
        "long": make_clip(root / "long.wav", seconds=MAX_SECONDS + 1.5),
    }
    bad["empty"].write_bytes(b"")
    bad["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    bad["text"].write_text("this is not a video\n" * 20)
    bad["image"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    bad["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    odd = {
        "silent": make_clip(root / "silent.wav", seconds=1.0, silent=True),
        "stereo48k": make_clip(root / "stereo.flac", seconds=1.0, channels=2, sample_rate=48000),
    }
    return {"good": good, **bad, **odd}


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint):
    return tiny_recognizer(tiny_checkpoint)


@pytest.fixture(scope="module")
def server(recognizer):
    with serve(recognizer, max_seconds=MAX_SECONDS, concurrency=2, queue_size=16) as (demo, url):
        yield url


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server, verbose=False)


def classify(client, path, text="", modalities=""):
    file = gradio_client.handle_file(str(path)) if path is not None else None
    return client.predict(file, text, modalities, api_name="/classify")


def check_prediction(result, labels, used):
    assert result["modalities_used"] == list(used)
    assert [s["label"] for s in result["scores"]] and {s["label"] for s in result["scores"]} == set(labels)
    assert math.isclose(sum(s["score"] for s in result["scores"]), 1.0, abs_tol=1e-4)
    assert result["label"] == result["scores"][0]["label"]
    assert "total" in result["timings_ms"]


# ---------------------------------------------------------------------------------------------- /classify
def test_api_is_documented(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert set(info["named_endpoints"]) == {"/classify", "/timeline"}
    assert [p["label"] for p in info["named_endpoints"]["/classify"]["parameters"]] == ["file", "transcript", "modalities"]
    assert [p["label"] for p in info["named_endpoints"]["/timeline"]["parameters"]] == ["file", "modalities"]


def test_classify_says_what_each_modality_says_and_names_the_file(client, clips, recognizer):
    result = classify(client, clips["good"], TEXT, "audio,text")
    assert result["file"] == "clip.mp4"
    assert set(result["per_modality"]) == {"audio", "text"}
    for alone in result["per_modality"].values():
        assert alone["label"] in recognizer.labels and 0 < alone["score"] <= 1
    labels = {v["label"] for v in result["per_modality"].values()}
    assert result["agreement"] is (len(labels) == 1)


def test_timeline_endpoint_returns_segments_and_summary(client, clips, recognizer):
    speech = make_clip(clips["good"].parent / "speechlike.wav", seconds=2.5)
    result = client.predict(gradio_client.handle_file(str(speech)), "", api_name="/timeline")
    assert result["source"] == "speechlike.wav" and result["labels"] == recognizer.labels
    assert result["duration"] == pytest.approx(2.5, abs=0.1)
    for seg in result["segments"]:
        assert 0 <= seg["start"] < seg["end"] <= result["duration"] + 0.01 and seg["label"] in recognizer.labels
    assert (result["summary"] is None) == (result["segments"] == []) and (result["message"] is None) == bool(result["segments"])


@pytest.mark.parametrize("subset", ["video", "audio", "text", "video,audio", "video,text", "audio,text", "video,audio,text"])
def test_each_modality_subset(client, clips, recognizer, subset):
    result = classify(client, clips["good"], TEXT, subset)
    check_prediction(result, recognizer.labels, subset.split(","))
    assert set(result["missing"]) == {"video", "audio", "text"} - set(subset.split(","))
    if "text" in subset:
        assert result["transcript"] == TEXT and result["transcript_source"] == "given"
    if "," in subset:
        assert set(result["contributions"]) == set(subset.split(","))


def test_modalities_as_list_or_default(client, clips, recognizer):
    as_list = classify(client, clips["good"], TEXT, ["speech", "text"])
    as_string = classify(client, clips["good"], TEXT, "audio,text")
    assert as_list["modalities_used"] == as_string["modalities_used"] == ["audio", "text"]
    assert [s["score"] for s in as_list["scores"]] == pytest.approx([s["score"] for s in as_string["scores"]])
    check_prediction(classify(client, clips["good"], TEXT), recognizer.labels, ["video", "audio", "text"])
    check_prediction(classify(client, None, TEXT, "text"), recognizer.labels, ["text"])


def test_real_cremad_clip(client, recognizer):
    clip = REPO_ROOT / "examples" / "1001_DFA_HAP_XX.mp4"
    if not clip.exists():
        pytest.skip("examples/ has no CREMA-D clips")
    result = classify(client, clip, "Don't forget a jacket")
    check_prediction(result, recognizer.labels, ["video", "audio", "text"])
    assert result["missing"] == {}


BAD = {
    "empty": "empty (0 bytes)",
    "truncated": "truncated",
    "text": "is a text file, not a video or audio clip",
    "image": "not a video or audio clip",
    "corrupt": "cannot be",
    "short": "at least 0.1 s is needed",
    "long": f"up to {MAX_SECONDS:g} s",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_file_is_a_readable_error_and_the_app_keeps_serving(client, clips, recognizer, kind):
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        classify(client, clips[kind], TEXT, "video,audio")
    message = str(info.value)
    assert BAD[kind] in message, message
    assert "/tmp/gradio" not in message  # server paths are shown as file names
    check_prediction(classify(client, clips["good"], TEXT, "video"), recognizer.labels, ["video"])


@pytest.mark.parametrize("kind", ["silent", "stereo48k"])
def test_unusual_but_valid_audio_is_classified(client, clips, recognizer, kind):
    check_prediction(classify(client, clips[kind], TEXT, "audio,text"), recognizer.labels, ["audio", "text"])


@pytest.mark.parametrize(("with_file", "text", "modalities", "expected"), [
    (False, "", "text", "give a video, a speech clip or a transcript"),
    (True, "", "text", "no transcript given and ASR is off"),
    (True, " ".join(["word"] * 10_000), "video,text", "10,000 words"),
    (True, TEXT, [], "modality set is empty"),
    (True, TEXT, "smell", "unknown modality"),
])  # fmt: skip
def test_bad_text_or_modalities_are_readable_errors(client, clips, recognizer, with_file, text, modalities, expected):
    with pytest.raises(gradio_client.exceptions.AppError, match=expected):
        classify(client, clips["good"] if with_file else None, text, modalities)
    check_prediction(classify(client, None, TEXT, "text"), recognizer.labels, ["text"])


def test_non_utf8_text_over_raw_http_is_a_readable_error(server, client, recognizer):
    import httpx

    body = b'{"data": [null, "bad \\ud800 text", "text"]}'  # valid JSON, a lone surrogate once decoded
    event = httpx.post(f"{server}gradio_api/call/classify", content=body,
                       headers={"content-type": "application/json"}).json()["event_id"]
    stream = httpx.get(f"{server}gradio_api/call/classify/{event}", timeout=30).text
    assert "event: error" in stream and "not valid UTF-8" in stream, stream
    check_prediction(classify(client, None, TEXT, "text"), recognizer.labels, ["text"])


def test_missing_file_is_a_readable_error(recognizer, tmp_path):
    from gia_mic.errors import InputError

    backend = load_app().DemoBackend(recognizer)
    with pytest.raises(InputError, match="file not found: missing.mp4"):
        backend.classify_json(str(tmp_path / "missing.mp4"), TEXT, None)


def test_untrained_modality_is_hidden_and_the_page_says_so(tiny_checkpoint, tmp_path):
    from tests.conftest import build_tiny

    path = tmp_path / "av"
    build_tiny(modalities=["video", "audio"]).save_pretrained(path)
    demo = load_app().build_demo(tiny_recognizer(path))
    boxes = {b.elem_id: b for b in demo.blocks.values() if isinstance(b, gr.Checkbox)}
    assert boxes["use-video"].visible is not False and boxes["use-text"].visible is False
    header = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "header")
    assert "Emotion from face and voice" in header.value and "not trained on text" in header.value


# ---------------------------------------------------------------------------------------------- UI path and cache
class CountingRecognizer:
    """Wraps an EmotionRecognizer and records every ``prepare`` call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prepare(self, **kwargs):
        self.calls.append(kwargs)
        return self.inner.prepare(**kwargs)

    def classify(self, clip, **kwargs):
        return type(self.inner).classify(self, clip, **kwargs)  # its own text re-encode goes through self.prepare


def test_toggles_and_text_edits_rerun_only_the_fusion(recognizer, clips):
    counting = CountingRecognizer(recognizer)
    backend = load_app().DemoBackend(counting)
    cache: dict = {}
    first, cached = backend.run(cache, str(clips["good"]), None, TEXT, ["video", "audio", "text"])
    assert not cached and len(counting.calls) == 1
    for subset in (["video"], ["audio", "text"], ["video", "text"]):
        pred, cached = backend.run(cache, str(clips["good"]), None, TEXT, subset)
        assert cached and pred.modalities_used == subset
    edited, cached = backend.run(cache, str(clips["good"]), None, "I am furious", ["text"])
    assert cached and edited.transcript == "I am furious"
    assert [c.get("video") for c in counting.calls] == [str(clips["good"])]  # 1 full prepare; the text re-encodes inside classify
    again, _ = backend.run(cache, str(clips["good"]), None, TEXT, ["video", "audio", "text"])
    assert again.transcript == TEXT and [x["score"] for x in again.scores] == pytest.approx([x["score"] for x in first.scores])
    assert len(counting.calls) == 1  # the original text's encoding was still cached


def test_ui_event_renders_label_heatmaps_and_contributions(recognizer, clips):
    counting = CountingRecognizer(recognizer)
    with serve(counting) as (_, url):
        client = gradio_client.Client(url, verbose=False)
        video = gradio_client.handle_file(str(clips["good"]))
        out = client.predict(video, None, TEXT, True, True, True, api_name="/analyze")
        verdict, label, explain, details, download, plot, table, transcript = out
        assert verdict.startswith("## ") and "File: `clip.mp4`" in verdict and "the voice says" in verdict.lower()
        assert ("they agree" in verdict) != ("they disagree" in verdict)
        assert {c["label"] for c in label["value"]["confidences"]} == set(recognizer.labels)
        assert "reading the clip included" in details and "Words used** (typed)" in details
        assert explain["value"]["plot"].startswith("data:image/png;base64,")
        assert json.loads(open(download["value"]).read())["file"] == "clip.mp4"
        assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png;base64,")
        assert [row[0] for row in table["data"]] == ["video", "speech", "text"]
        out = client.predict(video, None, TEXT, True, False, True, api_name="/analyze")
        assert "only the last step ran" in out[3] and out[6]["data"][1][1] == "not used: switched off"
        assert "speech (switched off)" in out[0]
    assert len(counting.calls) == 1


class FakeWhisper:
    """Stands in for WhisperTranscriber: always hears the same words."""

    name = "fake"

    def available(self):
        return True, None

    def transcribe(self, waveform):
        from gia_mic.asr import Transcript

        return Transcript("hello there", "whisper:fake")


def test_empty_transcript_box_is_filled_by_whisper_and_kept_cached(recognizer, clips):
    from gia_mic.pipeline import EmotionRecognizer

    counting = CountingRecognizer(EmotionRecognizer(recognizer.model, transcriber=FakeWhisper(), device="cpu"))
    with serve(counting) as (_, url):
        client = gradio_client.Client(url, verbose=False)
        video = gradio_client.handle_file(str(clips["good"]))
        out = client.predict(video, None, "", True, True, True, api_name="/analyze")
        assert out[7] == "hello there" and "Whisper fake" in out[3]
        out = client.predict(video, None, "hello there", False, True, True, api_name="/analyze")  # toggle only
        assert "only the last step ran" in out[3] and "Whisper fake" in out[3]
    assert len(counting.calls) == 1


def test_selecting_a_timeline_row_shows_that_stretch_and_a_new_file_clears_it(recognizer, tmp_path):
    import soundfile as sf

    from gia_mic.pipeline import EmotionRecognizer
    from tests.clips import speech_like

    load_app()
    from gia_app import ui

    rate = recognizer.config.sample_rate
    wave = np.zeros(int(9 * rate), np.float32)  # (samples,): speech at 1-2.5 s and 4-6 s
    for start, seconds, f0 in ((1.0, 1.5, 110.0), (4.0, 2.0, 170.0)):
        piece = speech_like(seconds, rate=rate, f0=f0)
        wave[int(start * rate) : int(start * rate) + len(piece)] = piece
    path = tmp_path / "talk.wav"
    sf.write(path, wave, rate)
    backend = load_app().DemoBackend(EmotionRecognizer(recognizer.model, transcriber=FakeWhisper(), device="cpu"))
    st = {"clips": {}, "auto_text": None, "ready": False, "timeline": None}
    assert "first" in ui._show_segment(backend, st, 0)[0]
    out = ui._show_timeline(backend, str(path), (True, True, True), st)
    timeline = st["timeline"]["timeline"]
    assert out[-1] is st and len(timeline.segments) == 2 and out[5] == ""  # no stretch selected yet
    for index, seg in enumerate(timeline.segments):
        text, plot = ui._show_segment(backend, st, index)
        assert text.startswith(f"### Stretch {index + 1}: {seg.start:.2f}\u2013{seg.end:.2f} s: {seg.label} (")
        assert seg.label in recognizer.labels
        assert all(f"{label} " in text.split("Scores: ")[1].split("\n")[0] for label in recognizer.labels)
        assert "The voice says **" in text and "the words say **" in text and ("they agree" in text or "they disagree" in text)
        assert "**Words** (written by Whisper fake): \u201chello there\u201d" in text
        assert plot.visible and plot.value is not None and "gate is the model" in text
    assert ui._show_segment(backend, st, 5)[0] == ""
    cleared = ui._timeline_cleared()
    assert cleared[5] == "" and cleared[6].visible is False
    st["timeline"]["file"] = str(tmp_path / "gone.wav")  # Gradio removed the upload: the words stay, the plot says why
    text, plot = ui._show_segment(backend, st, 0)
    assert "Stretch 1" in text and "could not be drawn" in text and "gone\\.wav" in text and not plot.visible


# ---------------------------------------------------------------------------------------------- gate plots
def test_plot_gates_six_panels_shared_scale_real_axes(recognizer, clips):
    from matplotlib.figure import Figure

    from gia_mic.plots import plot_gates

    pred = recognizer(video=clips["good"], text=TEXT)
    fig = plot_gates(pred.gates, pred.gate_axes, max_channels=8)
    assert isinstance(fig, Figure)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 6 and len({im.get_clim() for im in images}) == 1
    assert all(im.get_array().shape[0] <= 8 for im in images)
    titles = {ax.get_title(): ax for ax in fig.axes}
    assert "time (s)" in titles["speech \u2190 video"].get_xlabel()
    words = [t.get_text() for t in titles["text \u2190 speech"].get_xticklabels()]
    assert "".join(words).replace("<s>", "").replace("</s>", "").startswith("Iamsohappy"), words
    fig.savefig(REPO_ROOT / "artifacts" / "gates-tiny.png") if (REPO_ROOT / "artifacts").is_dir() else None


def test_plot_gates_with_one_pair_and_none():
    from gia_mic.plots import plot_gates

    gate = np.linspace(0, 1, 5 * 100, dtype=np.float32).reshape(5, 100)
    fig = plot_gates({"video<-audio": gate, "audio<-video": gate[:3]}, {"video": [0.1 * i for i in range(5)],
                                                                        "audio": [0.02 * i for i in range(3)]})
    assert sum(len(ax.get_images()) for ax in fig.axes) == 2
    assert {ax.get_title() for ax in fig.axes if ax.get_images()} == {"video \u2190 speech", "speech \u2190 video"}
    assert not any("not computed" in t.get_text() for ax in fig.axes for t in ax.texts)  # only pairs that exist
    empty = plot_gates({}, {})
    assert any("no gates" in t.get_text() for ax in empty.axes for t in ax.texts)


def test_short_clip_time_ticks_are_distinct():
    from gia_mic.plots import plot_gates

    times = [0.02 * i for i in range(25)]  # a 0.5-s clip
    fig = plot_gates({"audio<-text": np.random.default_rng(0).random((25, 16))}, {"audio": times})
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels


def test_gate_summary_draws_time_and_words_without_special_tokens():
    from gia_mic.plots import gate_openness, plot_gate_summary

    gates = {"audio<-text": np.full((10, 4), 0.25, dtype=np.float32), "text<-audio": np.full((4, 4), 0.75, dtype=np.float32)}
    axes = {"audio": [0.1 * i for i in range(10)], "text": ["<s>", "hello", "there", "</s>"]}
    assert gate_openness(gates)["audio<-text"] == pytest.approx([0.25] * 10)
    fig = plot_gate_summary(gates, axes)
    speech_ax, words_ax = fig.axes
    assert speech_ax.get_xlabel() == "time (s)" and speech_ax.get_ylim() == (0, 1)
    assert [t.get_text() for t in words_ax.get_xticklabels()] == ["hello", "there"]
    assert [p.get_height() for p in words_ax.patches] == pytest.approx([0.75, 0.75])
    assert all(t.get_fontsize() >= 11 for t in words_ax.get_xticklabels())  # legible on a phone


# ---------------------------------------------------------------------------------------------- CLI and model choice
def test_no_model_exits_2_with_the_fix(monkeypatch, tmp_path, capsys):
    app = load_app()
    monkeypatch.delenv("GIA_MIC_MODEL", raising=False)
    monkeypatch.setattr("gia_mic.hub.EMBEDDED_DEFAULT", tmp_path / "absent")
    monkeypatch.setattr("gia_mic.hub.PACKAGED_DEFAULT", tmp_path / "absent")
    monkeypatch.setattr("gia_app.server.APP_DIR", tmp_path)
    assert app.main([]) == 2
    assert "--model" in capsys.readouterr().err


def test_model_choice_order(monkeypatch, tmp_path):
    app = load_app()
    monkeypatch.setattr("gia_app.server.APP_DIR", tmp_path)
    monkeypatch.setenv("GIA_MIC_MODEL", "org/env@v2")
    assert app.choose_model("org/flag") == ("org/flag", None)
    assert app.choose_model(None) == ("org/env", "v2")
    monkeypatch.delenv("GIA_MIC_MODEL")
    sha = "a" * 40
    card = f"---\nsdk: gradio\nmodels:\n- org/m\npreload_from_hub:\n- org/m config.json {sha}\n---\n"
    (tmp_path / "README.md").write_text(card)
    assert app.choose_model(None) == ("org/m", sha)


def test_spaces_decorator_is_a_noop_without_spaces():
    app = load_app()
    try:
        import spaces  # noqa: F401
    except ImportError:
        assert app.gpu(json.dumps) is json.dumps


# ---------------------------------------------------------------------------------------------- load
def test_small_load_all_requests_succeed(server, clips):
    from benchmarks.app import run_load

    report = run_load(server, clips["good"], clients=4, requests=2)
    assert report["ok"] == 8 and report["errors"] == []
    assert report["p50_ms"] > 0 and report["throughput_rps"] > 0
