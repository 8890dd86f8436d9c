"""What the page, the API and the MCP tools call: limits, the session cache, ``EmotionRecognizer`` calls.

Nothing here draws UI: the functions return predictions, timelines and files, and raise the
library's input errors (``gia_mic.errors.USER_ERRORS``) for the caller to show.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gia_mic.configuration import MODALITIES
from gia_mic.errors import USER_ERRORS
from gia_mic.processing import InputError, clean_text
from gia_mic.timeline import explain_segment

try:  # ZeroGPU: the compute runs inside @spaces.GPU; elsewhere the decorator is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host

    def gpu(fn=None, **_kwargs):
        """No-op stand-in for ``spaces.GPU`` (bare or with ``duration=``) where ``spaces`` is absent."""
        return fn if fn is not None else (lambda f: f)


logger = logging.getLogger("gia_mic.app")

UI_NAMES = {"video": "video", "audio": "speech", "text": "text"}
"""What the page calls each modality (the library's ``audio`` is "speech" to a visitor)."""
MAX_TRANSCRIPT_WORDS = 1000
SESSION_CACHE_SIZE = 4
MAX_TIMELINE_SECONDS = 600.0
"""Longest recording the timeline view takes (the whole recording is read once by the VAD)."""
GPU_SECONDS = 30
"""ZeroGPU allocation per call: one clip of at most the model window is a few seconds of work."""
GPU_TIMELINE_SECONDS = 120
"""ZeroGPU allocation for a timeline (up to ``MAX_TIMELINE_SECONDS`` of audio)."""
DOWNLOADS_KEPT = 64
"""Result files kept on disk (oldest deleted first); Gradio serves its own copies."""


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (the session cache key of an upload)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SPEECH_WORDS = (("its audio is", "its speech is"), ("has no audio track", "has no sound track"),
                 ("no audio given", "no speech given"), ("an audio clip or a transcript", "a speech clip or a transcript"),
                 ("trained on audio", "trained on speech"), ("trained on video, audio", "trained on video, speech"),
                 (" on audio, text", " on speech, text"))


def speech_words(message: str) -> str:
    """The library's error text in the page's words (its "audio" modality is the page's "speech")."""
    for old, new in _SPEECH_WORDS:
        message = message.replace(old, new)
    return message


def shown_error(err: BaseException, *paths: str | None) -> str:
    """One line for a user mistake: server temp paths shown as file names, "speech" for audio."""
    message = str(err) or type(err).__name__
    for path in paths:
        if path:
            message = message.replace(str(path), Path(path).name)
    return speech_words(message.splitlines()[0])


@contextlib.contextmanager
def logged_errors(*paths: str | None) -> Iterator[None]:
    """Logs one line per user mistake and a traceback only for real faults; re-raises as ``InputError``/``RuntimeError``."""
    try:
        yield
    except USER_ERRORS as err:
        message = shown_error(err, *paths)
        logger.info("input problem: %s", message)
        raise InputError(message) from None
    except Exception as err:  # the app keeps serving whatever a clip does to the library
        logger.exception("unexpected failure")  # a real fault: the traceback is logged once, here
        raise RuntimeError(f"unexpected error ({type(err).__name__}): {err}") from None


def as_modalities(value: object) -> object:
    """API modalities: a list or a comma string; ``None``/``""`` means every trained one.

    Raises:
        InputError: anything else (a number, an object, a list holding non-strings).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().startswith("["):  # a list sent as text: JSON or Python's repr
        try:
            value = json.loads(value)
        except ValueError:
            value = ",".join(part.strip(" '\"") for part in value.strip()[1:-1].split(","))
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value
    shown = json.dumps(value)[:60] if _jsonable(value) else ""
    raise InputError(f"modalities must be a list of names or a comma-separated string such as 'audio,text', "
                     f"got {type(value).__name__} {shown}".rstrip())


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class Downloads:
    """Result files written for download, in one app-owned folder, at most ``keep`` at a time."""

    def __init__(self, keep: int = DOWNLOADS_KEPT) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gia-mic-downloads-"))
        atexit.register(shutil.rmtree, self.root, True)  # gone with the process
        self.keep = keep
        self._lock = threading.Lock()
        self._count = 0

    def write(self, name: str, text: str) -> str:
        """Writes ``text`` as ``name`` in a fresh sub-folder; returns its path."""
        with self._lock:
            self._count += 1
            folder = self.root / f"{self._count:08d}"
            for old in sorted(self.root.iterdir())[: max(0, len(list(self.root.iterdir())) - self.keep + 1)]:
                shutil.rmtree(old, ignore_errors=True)
        folder.mkdir()
        path = folder / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # atomic: a half-written file is never served
        return str(path)


class DemoBackend:
    """Caching, limits, and ``EmotionRecognizer`` calls for the page, the API and MCP.

    Args:
        recognizer: The loaded pipeline.
        max_seconds: Longest clip accepted (default and ceiling: the model's ``max_audio_seconds``).
        max_words: Longest transcript accepted, in words.
        max_timeline_seconds: Longest recording the timeline takes.
    """

    def __init__(self, recognizer: Any, *, max_seconds: float | None = None, max_words: int = MAX_TRANSCRIPT_WORDS,
                 max_timeline_seconds: float = MAX_TIMELINE_SECONDS) -> None:
        self.recognizer = recognizer
        self.config = recognizer.config
        self.cap = float(self.config.max_audio_seconds)
        self.max_seconds = min(float(max_seconds), self.cap) if max_seconds else self.cap
        self.max_words = max_words
        self.max_timeline_seconds = max_timeline_seconds
        self.downloads = Downloads()
        transcriber = recognizer.transcriber
        self.asr_ok, self.asr_reason = transcriber.available() if transcriber is not None else (False, "ASR is off")

    @property
    def modalities(self) -> list[str]:
        """The modalities the checkpoint was trained on, in the library's order."""
        return [m for m in MODALITIES if m in self.config.modalities]

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
            raise InputError(f"the clip is {longer}{clip.duration:.1f} s long; one classification takes clips up to "
                             f"{self.max_seconds:g} s: trim it, or use 'Emotion over time' for longer recordings")

    def selected(self, video: bool, audio: bool, text: bool) -> list[str]:
        """Trained modalities whose toggle is on (empty: the library refuses it)."""
        flags = {"video": video, "audio": audio, "text": text}
        return [m for m in MODALITIES if flags[m] and m in self.config.modalities]

    # ------------------------------------------------------------------ compute
    @gpu(duration=GPU_SECONDS)
    def _prepare(self, video: str | None, audio: str | None, text: str | None) -> Any:
        return self.recognizer.prepare(video=video, audio=audio, text=text, modalities=self.config.modalities)

    @gpu(duration=GPU_SECONDS)
    def _classify(self, clip: Any, modalities: Sequence[str], text: str | None) -> Any:
        return self.recognizer.classify(clip, modalities=list(modalities), text=text)

    @gpu(duration=GPU_TIMELINE_SECONDS)
    def _timeline(self, path: str, modalities: Sequence[str]) -> Any:
        def too_long(_done: float, total: float) -> None:
            if total > self.max_timeline_seconds + 0.5:
                raise InputError(f"the recording is {total:.0f} s long; the timeline here takes up to "
                                 f"{self.max_timeline_seconds:g} s (use `gia-mic predict --timeline` for longer ones)")

        return self.recognizer.timeline(path, modalities=list(modalities), progress=too_long)

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

    def timeline(self, path: str | None, modalities: object = None) -> Any:
        """Emotion over time of one recording (``gia_mic.timeline.Timeline``)."""
        if not path:
            raise InputError("give a video or a speech recording for the timeline")
        return self._timeline(path, self._timeline_modalities(modalities))

    def _timeline_modalities(self, modalities: object) -> list[str]:
        wanted = self.recognizer.check_modalities(as_modalities(modalities))
        return [m for m in wanted if m != "video"] or list(wanted)  # video frames are not read per segment

    @gpu(duration=GPU_SECONDS)
    def _segment(self, path: str, timeline: Any, index: int, modalities: Sequence[str]) -> Any:
        return explain_segment(self.recognizer, path, timeline, index, modalities=list(modalities))

    def segment(self, path: str, timeline: Any, index: int, modalities: object = None) -> Any:
        """The full ``Prediction`` (gates included) of segment ``index`` of ``timeline``, built from ``path``."""
        return self._segment(path, timeline, index, self._timeline_modalities(modalities))

    # ------------------------------------------------------------------ JSON results (API, MCP, downloads)
    def prediction_json(self, pred: Any, file: str | None) -> dict[str, Any]:
        """The CLI's JSON of one prediction plus the file name; timings rounded."""
        result = pred.to_dict()
        result["timings_ms"] = {k: round(v, 2) for k, v in result["timings_ms"].items()}
        return {"file": Path(file).name if file else None, **result}

    def classify_json(self, file: str | None, transcript: str | None, modalities: object) -> dict[str, Any]:
        """One file (video or audio) + transcript + modalities -> the prediction's JSON."""
        with logged_errors(file):
            text = self.check_text(transcript)
            wanted = self.recognizer.check_modalities(as_modalities(modalities))
            pred, _ = self.run({}, file, None, text, wanted)
        return self.prediction_json(pred, file)

    def timeline_json(self, file: str | None, modalities: object) -> dict[str, Any]:
        """One recording -> its timeline's JSON (segments and summary)."""
        with logged_errors(file):
            timeline = self.timeline(file, modalities)
        data = timeline.to_dict()
        data["source"] = Path(file).name if file else None
        return data
