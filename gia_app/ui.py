"""The page: inputs, the verdict first, explanations, the timeline, downloads, examples and the API/MCP endpoints.

Every event goes through ``DemoBackend``; the words on the page come from ``views``. A user
mistake is shown where the verdict goes (inputs untouched, no toast) and is replaced by the
next result; a new file clears the previous clip's result and timeline.

The session state holds the decoded clips of the last few classifications (``SESSION_CACHE_SIZE``)
and, once a timeline is shown, that ``Timeline`` with the path of the upload it came from: no
audio. Selecting a row re-cuts that one segment's window (at most the model window plus its
context) from the upload for its gates, so a 10-minute recording costs the session only its
segments' numbers and words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from gia_app import views
from gia_app.backend import UI_NAMES, DemoBackend, logged_errors
from gia_mic.configuration import MODALITIES
from gia_mic.errors import InputError
from gia_mic.plots import GATE_CAPTION, GATE_SENTENCE, plot_gate_summary, plot_gates, plot_timeline
from gia_mic.timeline import CONTEXT_SECONDS
from gia_mic.timeline_formats import segment_rows, to_csv, to_srt

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
DEFAULT_MAX_UPLOAD_MB = 50.0
UPLOAD_MAX_AGE_S = 3600
DEFAULT_CONCURRENCY = 2
DEFAULT_QUEUE_SIZE = 32
SCROLL_TO_VERDICT = """() => { if (window.innerWidth < 768) {
  document.getElementById('verdict')?.scrollIntoView({block: 'start'}); } }"""
"""On a phone the result column sits under the inputs: bring the verdict into view after Classify."""
CSS = "#verdict h2 { margin-top: 0; } #verdict { min-height: 3em; }"


def _toggle(backend: DemoBackend, modality: str) -> gr.Checkbox:
    trained = modality in backend.config.modalities
    return gr.Checkbox(value=trained, label=f"use {UI_NAMES[modality]}", interactive=True, elem_id=f"use-{modality}",
                       visible=trained)


def _transcript_box(backend: DemoBackend) -> gr.Textbox:
    if backend.asr_ok:
        info = "Optional. Left empty, Whisper writes it from the speech."
    else:
        info = f"Optional. Whisper is not available here ({backend.asr_reason}): without a transcript, words are not used."
    return gr.Textbox(label="Transcript (the words spoken)", info=info, lines=2, placeholder=views.EXAMPLE_TRANSCRIPT,
                      elem_id="transcript")


def _inputs(backend: DemoBackend) -> tuple[gr.Video, gr.Audio, gr.Textbox, list[gr.Checkbox], gr.Button]:
    video_label = "Video (upload or webcam)" if "video" in backend.config.modalities else "Video (only its sound is used)"
    video = gr.Video(label=video_label, sources=["upload", "webcam"], include_audio=True, elem_id="video-in")
    audio = gr.Audio(label="Or a speech recording", type="filepath", sources=["upload", "microphone"],
                     elem_id="audio-in")
    transcript = _transcript_box(backend)
    with gr.Row(visible=len(backend.modalities) > 1):
        toggles = [_toggle(backend, m) for m in MODALITIES]
    run = gr.Button("Classify", variant="primary", elem_id="classify")
    return video, audio, transcript, toggles, run


def build_demo(recognizer: Any, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_seconds: float | None = None,
               concurrency: int = DEFAULT_CONCURRENCY, queue_size: int = DEFAULT_QUEUE_SIZE) -> gr.Blocks:
    """The Gradio app over a loaded ``EmotionRecognizer`` (launch it with ``gia_app.launch``).

    Args:
        recognizer: The inference pipeline; labels and limits are read from its config.
        max_upload_mb: Largest upload (enforced by ``launch``), shown in the page.
        max_seconds: Longest clip (default: the model's ``max_audio_seconds``).
        concurrency: Predictions running at once; others wait in the queue.
        queue_size: Requests that may wait; more are refused with "queue full".
    """
    backend = DemoBackend(recognizer, max_seconds=max_seconds)
    limits = f"Uploads up to {max_upload_mb:g} MB; one classification reads up to {backend.max_seconds:g} s."
    with gr.Blocks(title="GIA-MIC emotion recognition", delete_cache=(600, UPLOAD_MAX_AGE_S)) as demo:
        gr.Markdown(views.header_markdown(backend.config) + f"\n\n<small>{limits}</small>", elem_id="header")
        state = gr.State({"clips": {}, "auto_text": None, "ready": False, "timeline": None}, time_to_live=3600)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                video, audio, transcript, toggles, run = _inputs(backend)
            with gr.Column(scale=1, min_width=320):
                out = _result_column(backend)
        timeline = _timeline_section()
        _examples(backend, video, transcript)
        with gr.Accordion("Use it from code: Python API and MCP", open=False):
            api_help = gr.Markdown(views.api_markdown("http://127.0.0.1:7860/", backend.modalities), elem_id="api-help")
        _wire(backend, state, [video, audio, transcript, *toggles], run, out, timeline)

        def api_help_for(request: gr.Request) -> str:
            return views.api_markdown(_page_url(request), backend.modalities)

        demo.load(api_help_for, None, api_help, api_visibility="private", queue=False)
        _api(backend)
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.gia_mic_max_upload_mb = max_upload_mb
    demo.gia_mic_backend = backend
    demo.gia_mic_css = CSS
    return demo


def _page_url(request: gr.Request | None) -> str:
    """The URL the visitor opened (Gradio's root URL behind proxies), for the API snippet."""
    from gradio import route_utils

    if request is None:
        return "http://127.0.0.1:7860/"
    try:
        url = route_utils.get_root_url(request=request.request, route_path="/", root_path=None)
    except Exception:  # the snippet falls back to the address the browser used
        url = str(request.request.base_url)
    return url.rstrip("/") + "/"


def _result_column(backend: DemoBackend) -> dict[str, Any]:
    out = {"verdict": gr.Markdown("Results appear here.", elem_id="verdict")}
    out["scores"] = gr.Label(num_top_classes=len(backend.config.labels), label="Scores of every class",
                             elem_id="label-out", visible=False)
    out["explain"] = gr.Plot(label="How much each modality let the other in (the gates)", format="png", show_label=False,
                             elem_id="explain-out", visible=False)
    out["details"] = gr.Markdown(elem_id="status-out")
    out["json"] = gr.DownloadButton("Download the result (JSON)", visible=False, elem_id="download-json")
    with gr.Accordion("Advanced: gates per channel and each modality's share", open=False):
        out["gates"] = gr.Plot(label="Gate heat maps", format="png", elem_id="gates-out")
        gr.Markdown(GATE_CAPTION)
        out["contributions"] = gr.Dataframe(headers=["modality", "used", "top score without it"],
                                            datatype=["str", "str", "str"], interactive=False, wrap=True,
                                            label="What each modality adds", elem_id="contrib-out")
    return out


def _timeline_section() -> dict[str, Any]:
    with gr.Accordion("Emotion over time (longer recordings)", open=False, elem_id="timeline-section"):
        gr.Markdown("Splits the recording into stretches of speech and classifies each one. "
                    "Click a row of the table to see that stretch in detail.")
        out = {"run": gr.Button("Show emotion over time", elem_id="timeline-run")}
        out["summary"] = gr.Markdown(elem_id="timeline-summary")
        out["plot"] = gr.Plot(label="Emotion over time", format="png", show_label=False, elem_id="timeline-plot", visible=False)
        out["table"] = gr.Dataframe(headers=["start (s)", "end (s)", "emotion", "score", "words"], interactive=False,
                                    wrap=True, elem_id="timeline-table", visible=False)
        out["segment"] = gr.Markdown(elem_id="timeline-segment")
        out["segment_gates"] = gr.Plot(label="How much each modality let the other in, in this stretch", format="png",
                                       show_label=False, elem_id="timeline-segment-gates", visible=False)
        with gr.Row():
            out["csv"] = gr.DownloadButton("Download the timeline (CSV)", visible=False, elem_id="download-csv")
            out["srt"] = gr.DownloadButton("Download subtitles (SRT)", visible=False, elem_id="download-srt")
    return out


def _examples(backend: DemoBackend, video: gr.Video, transcript: gr.Textbox) -> None:
    clips = views.example_clips(EXAMPLES_DIR, backend.config.labels)
    if clips:
        gr.Examples([[str(c), views.EXAMPLE_TRANSCRIPT] for c, _ in clips], inputs=[video, transcript],
                    label="Examples: CREMA-D actor 1001 (ODbL, see examples/ATTRIBUTION.md); the label is the acted emotion",
                    example_labels=[f"acted: {emotion}" for _, emotion in clips], cache_examples=False)


def _cleared(out: dict[str, Any], verdict: str) -> tuple:
    return (verdict, gr.Label(value=None, visible=False), gr.Plot(value=None, visible=False), "",
            gr.DownloadButton(value=None, visible=False), None, None)


def _wire(backend: DemoBackend, state: gr.State, inputs: list, run: gr.Button, out: dict, timeline: dict) -> None:
    """Classify runs everything; toggles and transcript edits re-run the fusion; a new file clears the result."""
    video, audio, transcript, *toggles = inputs
    outputs = [out[k] for k in ("verdict", "scores", "explain", "details", "json", "gates", "contributions")]
    tl_outputs = [timeline[k] for k in ("summary", "plot", "table", "csv", "srt", "segment", "segment_gates")]

    def analyze(video_path, audio_path, text, use_video, use_audio, use_text, st, *, rerun=False):
        if rerun and not st["ready"]:
            return (gr.skip(),) * (len(outputs) + 2)
        file = video_path or audio_path
        auto = st["auto_text"]
        given = None if (text or "") == (auto or "") and auto else text
        try:
            with logged_errors(video_path, audio_path):
                cleaned = backend.check_text(given)
                pred, cached = backend.run(st["clips"], video_path, audio_path, cleaned,
                                           backend.selected(use_video, use_audio, use_text))
        except (InputError, RuntimeError) as err:
            st["ready"] = False
            return (*_cleared(out, views.error_markdown(str(err))), gr.skip(), st)
        filled = gr.skip()
        if cleaned is None and pred.transcript_source.startswith("whisper"):
            filled = st["auto_text"] = pred.transcript
        st["ready"] = True
        result = backend.prediction_json(pred, file)
        path = backend.downloads.write(f"{Path(file).stem if file else 'text'}.gia-mic.json",
                                       json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        scores = {s["label"]: s["score"] for s in pred.scores}
        return (views.verdict_markdown(pred, file, backend.config), gr.Label(value=scores, visible=True),
                gr.Plot(value=plot_gate_summary(pred.gates, pred.gate_axes), visible=bool(pred.gates)),
                views.details_markdown(pred, cached), gr.DownloadButton(value=path, visible=True),
                plot_gates(pred.gates, pred.gate_axes), views.contribution_rows(pred, backend.modalities), filled, st)

    def rerun(*args):
        return analyze(*args, rerun=True)

    def new_file(video_path, audio_path, text, st):
        st["ready"], st["timeline"] = False, None
        file = video_path or audio_path
        if st["auto_text"] and text == st["auto_text"]:  # Whisper's words belong to the old clip
            st["auto_text"], text, box = None, "", ""
        else:
            box = gr.skip()  # never write the box back: the user may be typing
        verdict = views.new_input_markdown(file, text) if file else "Results appear here."
        return (*_cleared(out, verdict), box, st, *_timeline_cleared())

    all_inputs = [*inputs, state]
    event = run.click(analyze, all_inputs, [*outputs, transcript, state], api_visibility="undocumented",
                      api_name="analyze")
    event.then(None, js=SCROLL_TO_VERDICT)
    gr.on([t.change for t in toggles] + [transcript.submit, transcript.blur], rerun, all_inputs,
          [*outputs, transcript, state], api_visibility="private", trigger_mode="always_last")
    gr.on([video.change, audio.change], new_file, [video, audio, transcript, state],
          [*outputs, transcript, state, *tl_outputs], api_visibility="private", queue=False)
    timeline["run"].click(lambda v, a, st, *flags: _show_timeline(backend, v or a, flags, st),
                          [video, audio, state, *toggles], [*tl_outputs, state], api_visibility="private")

    def select(st, evt: gr.SelectData):
        return _show_segment(backend, st, evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index)

    timeline["table"].select(select, state, [timeline["segment"], timeline["segment_gates"]], api_visibility="private")


def _timeline_cleared() -> tuple:
    return ("", gr.Plot(value=None, visible=False), gr.Dataframe(value=None, visible=False),
            gr.DownloadButton(value=None, visible=False), gr.DownloadButton(value=None, visible=False),
            *_segment_cleared())


def _segment_cleared(text: str = "") -> tuple:
    return text, gr.Plot(value=None, visible=False)


def _show_timeline(backend: DemoBackend, file: str | None, flags: tuple, st: dict) -> tuple:
    st["timeline"] = None
    try:
        with logged_errors(file):
            modalities = backend.selected(*flags) if flags else None
            timeline = backend.timeline(file, modalities)
    except (InputError, RuntimeError) as err:
        return (views.error_markdown(str(err)), *_timeline_cleared()[1:], st)
    stem = Path(file).stem
    rows = segment_rows(timeline, file=Path(file).name)
    csv_path = backend.downloads.write(f"{stem}.timeline.csv", to_csv(rows))
    srt_path = backend.downloads.write(f"{stem}.srt", to_srt(timeline))
    has = bool(timeline.segments)
    if has:
        st["timeline"] = {"file": file, "modalities": modalities, "timeline": timeline}  # no audio: see the docstring
    return (views.timeline_markdown(timeline), gr.Plot(value=plot_timeline(timeline), visible=True),
            gr.Dataframe(value=views.timeline_rows(timeline), visible=has),
            gr.DownloadButton(value=csv_path, visible=has), gr.DownloadButton(value=srt_path, visible=has),
            *_segment_cleared(), st)


def _show_segment(backend: DemoBackend, st: dict, index: int) -> tuple:
    """The details of table row ``index``: the stretch's scores, voice vs words, words, and its gates."""
    held = st.get("timeline")
    if held is None:
        return _segment_cleared("Press **Show emotion over time** first.")
    timeline, file = held["timeline"], held["file"]
    if not 0 <= index < len(timeline.segments):
        return _segment_cleared()
    segment = timeline.segments[index]
    text = views.segment_markdown(segment, index, timeline.labels)
    if len(segment.modalities_used) < 2:  # gates sit between two modalities: nothing to re-run
        return _segment_cleared(f"{text}\n\n{views.NO_GATES_TEXT}")
    try:
        with logged_errors(file):
            pred = backend.segment(file, timeline, index, held["modalities"])
    except (InputError, RuntimeError) as err:
        return _segment_cleared(f"{text}\n\n*The gates could not be drawn:* {views.markdown_text(str(err))}")
    if not pred.gates:
        return _segment_cleared(text)
    return (f"{text}\n\n*About the plot below:* {GATE_SENTENCE} Its time axis also shows up to "
            f"{CONTEXT_SECONDS:g} s on each side of the stretch: the model hears that much around it.",
            gr.Plot(value=plot_gate_summary(pred.gates, pred.gate_axes), visible=True))


def _api(backend: DemoBackend) -> None:
    """The documented endpoints ``/classify`` and ``/timeline`` (also the MCP tools); hidden components."""

    def classify(file: str | None, transcript: str | None, modalities: str | None) -> dict[str, Any]:
        """Recognises the emotion of one clip of speech: neutral, happy, angry or sad (the loaded model's labels).

        Args:
            file: A video or audio file (a URL) of one utterance, up to the model's window (8 s for the default model).
            transcript: The words spoken; empty lets Whisper write them where it is installed.
            modalities: Which inputs to use: a comma string such as "audio,text" (or a JSON list); empty = all the model knows.

        Returns:
            The prediction: label, scores of every class, per_modality (what speech and words say alone),
            agreement, transcript used, modalities_used, missing (with reasons), contributions, timings_ms.
        """
        return _or_error(backend.classify_json, file, transcript, modalities)

    def timeline(file: str | None, modalities: str | None) -> dict[str, Any]:
        """Emotion over time: splits a recording into stretches of speech and classifies each one.

        Args:
            file: A video or audio file (a URL), up to 10 minutes.
            modalities: As for classify; empty = all the model knows.

        Returns:
            segments (start, end, label, scores, transcript, per_modality, agreement) and a summary
            (label, scores, shares of time).
        """
        return _or_error(backend.timeline_json, file, modalities)

    with gr.Row(visible=False):
        file = gr.File(label="file", type="filepath")
        text = gr.Textbox(label="transcript")
        modalities = gr.Textbox(label="modalities")
        result = gr.JSON(label="prediction")
        tl_file = gr.File(label="file", type="filepath")
        tl_modalities = gr.Textbox(label="modalities")
        tl_result = gr.JSON(label="timeline")
        button, tl_button = gr.Button("classify"), gr.Button("timeline")
    button.click(classify, [file, text, modalities], result, api_name="classify")
    tl_button.click(timeline, [tl_file, tl_modalities], tl_result, api_name="timeline")


def _or_error(fn: Any, *args: Any) -> dict[str, Any]:
    """API calls: a user mistake becomes one ``gr.Error`` line (no traceback in the log)."""
    try:
        return fn(*args)
    except InputError as err:
        raise gr.Error(str(err), title="Input problem", print_exception=False) from None
    except RuntimeError as err:
        raise gr.Error(str(err), title="Error", print_exception=False) from None
