"""GIA-MIC demo: emotion from a talking-face video, a speech clip and/or a transcript.

    python app.py                                   # $GIA_MIC_MODEL, else the embedded checkpoints/gia-mic-lite
    python app.py --model ORG/NAME@REV --host 127.0.0.1 --port 7860
    python app.py --model runs/tiny --asr-model none --max-seconds 20 --max-upload-mb 20

The app is UI only: decoding, transcription, encoders and fusion all happen in
``gia_mic.pipeline.EmotionRecognizer``; the labels, modalities, frame count, sample rate
and clip limits come from the loaded checkpoint. Each browser session keeps its prepared
clips (decoded + encoded) in a small cache, so changing the modality toggles or the
transcript re-runs only the fusion (and the text encoder when the text changed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from gia_mic.asr import DEFAULT_ASR_MODEL
from gia_mic.configuration import MODALITIES
from gia_mic.errors import USER_ERRORS
from gia_mic.hub import default_model
from gia_mic.plots import GATE_CAPTION, plot_gates
from gia_mic.processing import InputError, clean_text

try:  # ZeroGPU: the compute runs inside @spaces.GPU; elsewhere the decorator is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn):
        """No-op stand-in for ``spaces.GPU`` where the ``spaces`` package is absent."""
        return fn


logger = logging.getLogger("gia_mic.app")

APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"
EXAMPLE_TRANSCRIPT = "Don't forget a jacket"
CREMA_D_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
UI_NAMES = {"video": "video", "audio": "speech", "text": "text"}
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_STORED_MB = 2048.0
UPLOAD_MAX_AGE_S = 3600
DEFAULT_CONCURRENCY = 2
DEFAULT_QUEUE_SIZE = 32
MAX_TRANSCRIPT_WORDS = 1000
SESSION_CACHE_SIZE = 4
DESCRIPTION = """\
# GIA-MIC: emotion from face, voice and words
Upload a short talking-face **video** (or record one), or a **speech** clip, optionally with its
**transcript**, then press **Classify**. Leave the transcript empty to have Whisper write it (when
available). Toggling modalities or editing the transcript re-runs only the fusion.

**API**: `/classify` takes a file, a transcript and the modalities (a list or a comma string) and
returns the prediction as JSON:
```python
from gradio_client import Client, handle_file
client = Client("http://127.0.0.1:7860/")      # or the Space id, e.g. "ORG/gia-mic-demo"
client.predict(handle_file("clip.mp4"), "Don't forget a jacket", "video,audio,text", api_name="/classify")
```
"""


# ---------------------------------------------------------------------------------------------- helpers
def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (the session cache key of an upload)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def user_errors(*paths: str | None) -> Iterator[None]:
    """Turns the library's input errors into ``gr.Error`` (server temp paths shown as file names)."""
    try:
        yield
    except gr.Error:
        raise
    except USER_ERRORS as err:
        message = str(err)
        for path in paths:
            if path:
                message = message.replace(str(path), Path(path).name)
        logger.info("input problem: %s", message.splitlines()[0] if message else type(err).__name__)  # one line
        raise gr.Error(message, title="Input problem", print_exception=False) from None
    except Exception as err:  # the app keeps serving whatever a clip does to the library
        logger.exception("unexpected failure")  # a real fault: the traceback is logged once, here
        raise gr.Error(f"unexpected error ({type(err).__name__}): {err}", title="Error", print_exception=False) from None


def _as_modalities(value: object) -> object:
    """API modalities: a list or a comma string; ``None``/``""`` means every trained one.

    Raises:
        InputError: anything else (a number, an object, a list holding non-strings).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value
    raise InputError(f"modalities must be a list of names or a comma-separated string such as 'audio,text', "
                     f"got {type(value).__name__} {json.dumps(value)[:60] if _jsonable(value) else ''}".rstrip())


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def markdown_text(text: str) -> str:
    """User text shown literally inside Markdown (no emphasis, links, HTML or headings)."""
    special = "\\`*_{}[]()<>#+-.!|~"
    return "".join(f"\\{ch}" if ch in special else ch for ch in text)


class UploadJanitor:
    """Keeps the app's uploaded and generated files under a total size (oldest deleted first).

    Gradio's ``delete_cache`` removes files older than an age and everything at shutdown; this
    bounds the total in between, so a client posting uploads cannot fill the disk.

    Args:
        demo: The Blocks whose tracked files (``temp_file_sets``) are swept.
        max_bytes: Total size kept.
        every: Seconds between sweeps.
    """

    def __init__(self, demo: gr.Blocks, max_bytes: int, every: float = 10.0) -> None:
        self.demo, self.max_bytes, self.every = demo, max_bytes, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gia-mic-upload-janitor", daemon=True)

    def start(self) -> UploadJanitor:
        """Starts sweeping in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops sweeping."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sweep()

    def sweep(self) -> int:
        """Deletes the oldest tracked files until the total is under ``max_bytes``; returns bytes freed."""
        files = []
        for tracked in list(self.demo.temp_file_sets):
            for name in list(tracked):
                with contextlib.suppress(OSError):
                    stat = os.stat(name)
                    files.append((stat.st_mtime, stat.st_size, name, tracked))
        total, freed = sum(f[1] for f in files), 0
        for _, size, name, tracked in sorted(files):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.remove(name)
            tracked.discard(name)
            total, freed = total - size, freed + size
        if freed:
            logger.info("upload store over %d MB: deleted %d MB of the oldest files", self.max_bytes >> 20, freed >> 20)
        return freed


# ---------------------------------------------------------------------------------------------- backend
class DemoBackend:
    """What the UI and the API call: caching, limits, and ``EmotionRecognizer`` calls.

    Args:
        recognizer: The loaded pipeline.
        max_seconds: Longest clip accepted (default and ceiling: the model's ``max_audio_seconds``).
        max_words: Longest transcript accepted, in words.
    """

    def __init__(self, recognizer: Any, *, max_seconds: float | None = None,
                 max_words: int = MAX_TRANSCRIPT_WORDS) -> None:
        self.recognizer = recognizer
        self.config = recognizer.config
        self.cap = float(self.config.max_audio_seconds)
        self.max_seconds = min(float(max_seconds), self.cap) if max_seconds else self.cap
        self.max_words = max_words
        transcriber = recognizer.transcriber
        self.asr_ok, self.asr_reason = transcriber.available() if transcriber is not None else (False, "ASR is off")

    # ------------------------------------------------------------------ checks
    def check_text(self, text: str | None) -> str | None:
        """The cleaned transcript (``None`` when empty); refuses non-UTF-8 and overlong text."""
        cleaned = clean_text(text)
        if cleaned is not None and len(cleaned.split()) > self.max_words:
            raise InputError(f"the transcript has {len(cleaned.split()):,} words; this demo takes up to "
                             f"{self.max_words:,} (the model reads its first {self.config.max_text_tokens} tokens)")
        return cleaned

    def check_length(self, clip: Any) -> None:
        """Refuses clips longer than ``max_seconds`` (the library would truncate them at its cap)."""
        if clip.duration is None:
            return
        if clip.truncated or clip.duration > self.max_seconds + 0.05:
            longer = "more than " if clip.truncated else ""
            raise InputError(f"the clip is {longer}{clip.duration:.1f} s long; this demo takes "
                             f"clips up to {self.max_seconds:g} s: trim it and try again")

    def selected(self, video: bool, audio: bool, text: bool) -> list[str]:
        """Trained modalities whose toggle is on (empty: the library refuses it)."""
        flags = {"video": video, "audio": audio, "text": text}
        return [m for m in MODALITIES if flags[m] and m in self.config.modalities]

    # ------------------------------------------------------------------ compute
    @gpu
    def _prepare(self, video: str | None, audio: str | None, text: str | None) -> Any:
        return self.recognizer.prepare(video=video, audio=audio, text=text, modalities=self.config.modalities)

    @gpu
    def _classify(self, clip: Any, modalities: Sequence[str], text: str | None) -> Any:
        return self.recognizer.classify(clip, modalities=list(modalities), text=text)

    def prepared(self, cache: dict, video: str | None, audio: str | None, text: str | None) -> tuple[Any, bool]:
        """A PreparedClip from the session cache, else decoded + encoded now.

        The key is the files' content hash plus the given text ("" = ASR's transcript). A
        clip cached with other text is reused: only the text encoder re-runs on it.
        """
        # a missing file gets a placeholder key: prepare then raises the library's "file not found"
        files = "+".join(file_digest(p) if Path(p).is_file() else f"?{p}" for p in (video, audio) if p)
        key = f"{files}|{text or ''}"
        if key in cache:
            return cache[key], True
        sibling = next((c for k, c in cache.items() if files and k.startswith(f"{files}|")), None)
        if sibling is not None and text is not None:
            clip = dataclasses.replace(sibling, missing=dict(sibling.missing), encoded=dict(sibling.encoded),
                                       timings_ms=dict(sibling.timings_ms))  # classify updates the copy only
            cached = True
        else:
            clip, cached = self._prepare(video, audio, text), False
            self.check_length(clip)
        cache[key] = clip
        while len(cache) > SESSION_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        return clip, cached

    def run(self, cache: dict, video: str | None, audio: str | None, text: str | None,
            modalities: Sequence[str]) -> tuple[Any, bool]:
        """One prediction through the cache: ``(Prediction, encoders_were_cached)``."""
        if not video and not audio and text is None:
            raise InputError("give a video, a speech clip or a transcript")
        self.recognizer.check_modalities(modalities)  # no modality selected -> the library's message
        clip, cached = self.prepared(cache, video, audio, text)
        return self._classify(clip, modalities, text), cached

    def classify_api(self, file: str | None, transcript: str | None, modalities: object) -> dict[str, Any]:
        """``/classify``: one file (video or audio) + transcript + modalities -> the CLI's JSON."""
        with user_errors(file):
            text = self.check_text(transcript)
            wanted = self.recognizer.check_modalities(_as_modalities(modalities))
            pred, _ = self.run({}, file, None, text, wanted)
        result = pred.to_dict()
        result["timings_ms"] = {k: round(v, 2) for k, v in result["timings_ms"].items()}
        return result


# ---------------------------------------------------------------------------------------------- UI glue
def _reason(why: str) -> str:
    return "switched off" if why == "not requested" else why


def _status_markdown(pred: Any, cached: bool, backend: DemoBackend) -> str:
    """Transcript used, modalities used/missing, and timings, as Markdown."""
    if pred.transcript is not None:
        source = pred.transcript_source.replace("whisper:", "Whisper ")
        lines = [f"**Transcript used** ({source}): \u201c{markdown_text(pred.transcript)}\u201d"]
    else:
        why = pred.missing.get("text", pred.transcript_reason or "not available")
        lines = [f"**Text not used**: {_reason(why)}."]
    used = ", ".join(UI_NAMES[m] for m in pred.modalities_used)
    lines.append(f"**Modalities used**: {used}.")
    for m, why in pred.missing.items():
        if m != "text":
            lines.append(f"Not used: {UI_NAMES[m]} ({_reason(why)}).")
    fusion = pred.timings_ms.get("fusion", 0.0)
    how = "encoders cached: only the fusion ran" if cached else f"decoded + encoded in {pred.timings_ms['total'] - fusion:.0f} ms"
    lines.append(f"*Fusion {fusion:.0f} ms ({how}).*")
    return "\n\n".join(lines)


def _contribution_rows(pred: Any) -> list[list[str]]:
    """Rows of the contribution table: modality, status, leave-one-out drop of the top class."""
    rows = []
    for m in MODALITIES:
        if m in pred.modalities_used:
            value = pred.contributions.get(m)
            shown = f"{value:+.3f}" if value is not None else "n/a (only modality)"
            rows.append([UI_NAMES[m], "used", shown])
        else:
            rows.append([UI_NAMES[m], f"not used: {_reason(pred.missing.get(m, 'not requested'))}", ""])
    return rows


def _toggle(backend: DemoBackend, modality: str) -> gr.Checkbox:
    trained = modality in backend.config.modalities
    info = None if trained else (f"this checkpoint was not trained on {UI_NAMES[modality]} "
                                 f"(trained: {', '.join(UI_NAMES[m] for m in backend.config.modalities)})")
    return gr.Checkbox(value=trained, label=UI_NAMES[modality], interactive=trained, info=info,
                       elem_id=f"use-{modality}")


def _transcript_box(backend: DemoBackend) -> gr.Textbox:
    if backend.asr_ok:
        info = "Optional. Left empty, Whisper writes it from the speech."
    else:
        info = f"Optional. Whisper is not available here ({backend.asr_reason}): without a transcript, text is missing."
    return gr.Textbox(label="Transcript", info=info, lines=2, placeholder=EXAMPLE_TRANSCRIPT, elem_id="transcript")


def _examples(video: gr.Video, transcript: gr.Textbox) -> None:
    clips = sorted(EXAMPLES_DIR.glob("*.mp4"))
    if clips:
        gr.Examples([[str(c), EXAMPLE_TRANSCRIPT] for c in clips], inputs=[video, transcript],
                    label="CREMA-D examples (actor 1001; see examples/ATTRIBUTION.md, ODbL)",
                    example_labels=[CREMA_D_EMOTIONS.get(c.stem.split("_")[2], c.stem) for c in clips], cache_examples=False)


def build_demo(recognizer: Any, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_seconds: float | None = None,
               concurrency: int = DEFAULT_CONCURRENCY, queue_size: int = DEFAULT_QUEUE_SIZE) -> gr.Blocks:
    """The Gradio app over a loaded ``EmotionRecognizer`` (launch it with ``launch``).

    Args:
        recognizer: The inference pipeline; labels and limits are read from its config.
        max_upload_mb: Largest upload (enforced by ``launch``), shown in the page.
        max_seconds: Longest clip (default: the model's ``max_audio_seconds``).
        concurrency: Predictions running at once; others wait in the queue.
        queue_size: Requests that may wait; more are refused with "queue full".
    """
    backend = DemoBackend(recognizer, max_seconds=max_seconds)
    limits = f"Limits: uploads up to {max_upload_mb:g} MB, clips up to {backend.max_seconds:g} s."
    with gr.Blocks(title="GIA-MIC emotion recognition", delete_cache=(600, UPLOAD_MAX_AGE_S)) as demo:
        gr.Markdown(DESCRIPTION + f"\nClasses: {', '.join(backend.config.labels)}. {limits}")
        cache = gr.State({"clips": {}, "auto_text": None, "ready": False}, time_to_live=3600)
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video (upload or webcam)", sources=["upload", "webcam"], include_audio=True,
                                 elem_id="video-in")
                audio = gr.Audio(label="Speech (instead of, or with, the video)", type="filepath",
                                 sources=["upload", "microphone"], elem_id="audio-in")
                transcript = _transcript_box(backend)
                with gr.Row():
                    toggles = [_toggle(backend, m) for m in MODALITIES]
                run = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column(scale=1):
                label = gr.Label(num_top_classes=len(backend.config.labels), label="Emotion", elem_id="label-out")
                status = gr.Markdown(elem_id="status-out")
                contributions = gr.Dataframe(headers=["modality", "status", "\u0394 p(top) if left out"],
                                             datatype=["str", "str", "str"], interactive=False,
                                             label="How much each modality contributed", elem_id="contrib-out")
        gates = gr.Plot(label="Gate heat maps", format="png", elem_id="gates-out")
        gr.Markdown(GATE_CAPTION)
        _examples(video, transcript)
        _wire(backend, demo, cache, [video, audio, transcript, *toggles], run,
              [label, status, transcript, gates, contributions, cache])
        _api(backend)
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.gia_mic_max_upload_mb = max_upload_mb
    demo.gia_mic_backend = backend
    return demo


def _wire(backend: DemoBackend, demo: gr.Blocks, cache: gr.State, inputs: list, run: gr.Button, outputs: list) -> None:
    """Events: Classify runs everything; toggles and transcript edits re-run the fusion."""
    video, audio, transcript, *toggles = inputs

    def analyze(video_path, audio_path, text, use_video, use_audio, use_text, state, *, rerun=False):
        if rerun and not state["ready"]:
            return (gr.skip(),) * len(outputs)
        auto = state["auto_text"]
        given = None if (text or "") == (auto or "") and auto else text
        with user_errors(video_path, audio_path):
            cleaned = backend.check_text(given)
            pred, cached = backend.run(state["clips"], video_path, audio_path, cleaned,
                                       backend.selected(use_video, use_audio, use_text))
        filled = text
        if cleaned is None and pred.transcript_source.startswith("whisper"):
            filled = state["auto_text"] = pred.transcript
        state["ready"] = True
        scores = {s["label"]: s["score"] for s in pred.scores}
        return (scores, _status_markdown(pred, cached, backend), filled,
                plot_gates(pred.gates, pred.gate_axes), _contribution_rows(pred), state)

    def rerun(*args):
        return analyze(*args, rerun=True)

    def new_file(text, state):
        state["ready"] = False
        if state["auto_text"] and text == state["auto_text"]:  # Whisper's words belong to the old clip
            state["auto_text"] = None
            return "", state
        return gr.skip(), state  # never write the box back: the user may be typing

    all_inputs = [*inputs, cache]
    run.click(analyze, all_inputs, outputs, api_visibility="undocumented", api_name="analyze")
    gr.on([t.change for t in toggles] + [transcript.submit, transcript.blur], rerun, all_inputs, outputs,
          api_visibility="private", trigger_mode="always_last")
    gr.on([video.change, audio.change], new_file, [transcript, cache], [transcript, cache], api_visibility="private",
          queue=False)


def _api(backend: DemoBackend) -> None:
    """The documented ``/classify`` endpoint (hidden components; UI-free)."""
    with gr.Row(visible=False):
        file = gr.File(label="file", type="filepath")
        text = gr.Textbox(label="transcript")
        modalities = gr.JSON(label="modalities")
        result = gr.JSON(label="prediction")
        button = gr.Button("classify")
    button.click(backend.classify_api, [file, text, modalities], result, api_name="classify",
                 api_description="Classify one clip (video or audio file) with an optional transcript and a "
                                 "modality subset (list or comma string, e.g. 'video,audio'; empty = all trained). "
                                 "Returns the prediction as JSON: label, scores, transcript, transcript_source, "
                                 "modalities_used, missing, contributions, timings_ms.")


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, prevent_thread_lock: bool = False,
           max_stored_mb: float = DEFAULT_MAX_STORED_MB, **kwargs: Any) -> Any:
    """Starts the server with the demo's upload limit and a bounded upload store.

    Uploads and generated files older than ``UPLOAD_MAX_AGE_S`` are deleted (Gradio's
    ``delete_cache``), all of them when the server stops, and the oldest as soon as their total
    exceeds ``max_stored_mb`` (``UploadJanitor``).
    """
    max_mb = getattr(demo, "gia_mic_max_upload_mb", DEFAULT_MAX_UPLOAD_MB)
    janitor = UploadJanitor(demo, int(max_stored_mb * 1024 * 1024)).start()
    demo.gia_mic_janitor = janitor
    return demo.launch(server_name=host, server_port=port, max_file_size=int(max_mb * 1024 * 1024),
                       prevent_thread_lock=prevent_thread_lock, show_error=True, footer_links=["api"], **kwargs)


# ---------------------------------------------------------------------------------------------- model and CLI
def space_model(readme: Path) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` from a Space README's front matter (``models`` + ``preload_from_hub``)."""
    if not readme.is_file():
        return None
    import yaml

    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return None
    if not isinstance(meta, dict) or "sdk" not in meta or not meta.get("models"):
        return None
    model = str(meta["models"][0])
    for entry in meta.get("preload_from_hub") or []:
        parts = str(entry).split()
        if parts and parts[0] == model and len(parts) == 3:
            return model, parts[2]
    return model, None


def choose_model(arg: str | None) -> tuple[str, str | None]:
    """``--model`` > ``$GIA_MIC_MODEL`` > the Space README's model > the embedded default.

    ``ORG/NAME@REV`` pins a Hub revision. Raises ``CheckpointError`` when nothing is given.
    """
    chosen = arg or os.environ.get("GIA_MIC_MODEL")
    if not chosen:
        found = space_model(APP_DIR / "README.md")
        if found is not None:
            return found
        chosen = default_model()
    if "@" in chosen and not Path(chosen).exists():
        name, revision = chosen.rsplit("@", 1)
        return name, revision or None
    return chosen, None


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(name) or default


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags (each also has an environment variable)."""
    p = argparse.ArgumentParser(description="GIA-MIC Gradio demo")
    p.add_argument("--model", default=None, help="checkpoint dir or ORG/NAME[@REV] (env GIA_MIC_MODEL; default: "
                                                 "the embedded checkpoints/gia-mic-lite)")
    p.add_argument("--host", default=_env("GRADIO_SERVER_NAME", "127.0.0.1"), help="bind address (env GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(_env("GRADIO_SERVER_PORT", "7860")), help="env GRADIO_SERVER_PORT")
    p.add_argument("--asr-model", default=_env("GIA_MIC_ASR_MODEL", DEFAULT_ASR_MODEL),
                   help="Whisper model for clips without a transcript, or 'none' (env GIA_MIC_ASR_MODEL)")
    p.add_argument("--device", default=_env("GIA_MIC_DEVICE", None), help="cpu or cuda (default: cuda when present)")
    p.add_argument("--max-upload-mb", type=float, default=float(_env("GIA_MIC_MAX_UPLOAD_MB", str(DEFAULT_MAX_UPLOAD_MB))),
                   help="largest upload in MB (env GIA_MIC_MAX_UPLOAD_MB)")
    p.add_argument("--max-seconds", type=float, default=_env("GIA_MIC_MAX_SECONDS", None),
                   help="longest clip in seconds (env GIA_MIC_MAX_SECONDS; default and ceiling: the model's "
                        "max_audio_seconds)")
    p.add_argument("--concurrency", type=int, default=int(_env("GIA_MIC_CONCURRENCY", str(DEFAULT_CONCURRENCY))),
                   help="predictions at once (env GIA_MIC_CONCURRENCY)")
    p.add_argument("--queue-size", type=int, default=int(_env("GIA_MIC_QUEUE_SIZE", str(DEFAULT_QUEUE_SIZE))),
                   help="requests that may wait (env GIA_MIC_QUEUE_SIZE)")
    return p


def create_demo(args: argparse.Namespace) -> gr.Blocks:
    """Loads the model once (GPU when present) and builds the app; ``CheckpointError`` if none is given."""
    from gia_mic.pipeline import EmotionRecognizer

    model, revision = choose_model(args.model)
    asr = None if str(args.asr_model).lower() in ("none", "off", "") else args.asr_model
    print(f"loading {model}{'@' + revision if revision else ''} ...", flush=True)
    recognizer = EmotionRecognizer.from_pretrained(model, revision=revision, asr_model=asr, device=args.device,
                                                   isolate=True)  # a crashing upload must not take the server down
    print(f"model on {recognizer.device}; labels: {', '.join(recognizer.labels)}", flush=True)
    return build_demo(recognizer, max_upload_mb=args.max_upload_mb,
                      max_seconds=float(args.max_seconds) if args.max_seconds else None,
                      concurrency=args.concurrency, queue_size=args.queue_size)


def main(argv: list[str] | None = None) -> int:
    """Serves the app until interrupted; exit status 2 when no usable model is given."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        demo = create_demo(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    launch(demo, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif os.environ.get("SPACE_ID") and os.environ.get("GIA_MIC_NO_AUTOLOAD") != "1":
    demo = create_demo(build_parser().parse_args([]))  # a Space host that imports app.py and launches `demo`
