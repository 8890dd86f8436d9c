"""Transcripts: given text wins; otherwise openai-whisper transcribes the decoded waveform.

Where Whisper (the package or its weights) is not available, the transcript is marked
missing and ``Transcript.reason`` says why; nothing raises.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gia_mic.processing import clean_text

logger = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = "base.en"


@dataclass
class Transcript:
    """The transcript a prediction used.

    Attributes:
        text: The text, or ``None`` when text is missing.
        source: ``"given"``, ``"whisper:<model>"`` or ``"missing"``.
        reason: Why text is missing (``None`` otherwise).
    """

    text: str | None
    source: str
    reason: str | None = None


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "GIA_MIC_OFFLINE"))


class WhisperTranscriber:
    """Lazy openai-whisper wrapper.

    Args:
        model: An official name (``tiny``, ``base.en``, …), a local checkpoint file, or a
            ready ``whisper.model.Whisper`` instance.
        device: Torch device; CUDA when present by default.
        download_root: Where official weights are cached (whisper's default otherwise).
    """

    def __init__(self, model: object = DEFAULT_ASR_MODEL, *, device: str | torch.device | None = None,
                 download_root: str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.download_root = download_root or os.path.join(
            os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "whisper")
        self._model = None if isinstance(model, (str, Path)) else model
        self.name = str(model) if isinstance(model, (str, Path)) else "custom"
        self._error: str | None = None
        self._lock = threading.Lock()

    def _load(self) -> object | None:
        with self._lock:
            if self._model is not None or self._error is not None:
                return self._model
            try:
                import whisper
            except ImportError:
                self._error = "openai-whisper is not installed (pip install --no-deps openai-whisper)"
                return None
            name = self.name
            if name in whisper.available_models():
                cached = Path(self.download_root) / Path(whisper._MODELS[name]).name
                if not cached.exists() and _offline():
                    self._error = (f"Whisper {name!r} weights are not cached at {cached} and the machine is offline; "
                                   "type a transcript, or cache the weights once with network access")
                    return None
            elif not Path(name).is_file():
                self._error = f"Whisper model {name!r} is neither an official name nor a file"
                return None
            try:
                self._model = whisper.load_model(name, device=str(self.device), download_root=self.download_root)
            except Exception as err:  # network, disk or format failures all mean: no ASR here
                self._error = f"Whisper {name!r} could not be loaded ({type(err).__name__}: {err})"
                logger.warning("ASR disabled: %s", self._error)
            return self._model

    def available(self) -> tuple[bool, str | None]:
        """Whether transcription works here, and if not, why (loads the model once)."""
        return self._load() is not None, self._error

    def transcribe(self, waveform: np.ndarray | None) -> Transcript:
        """Transcribes a 16 kHz mono float32 waveform."""
        if waveform is None:
            return Transcript(None, "missing", "no audio to transcribe")
        model = self._load()
        if model is None:
            return Transcript(None, "missing", self._error)
        try:
            result = model.transcribe(np.asarray(waveform, np.float32), fp16=self.device.type == "cuda",
                                      temperature=0.0, condition_on_previous_text=False, verbose=None)
        except Exception as err:  # a failed transcription must not take the prediction down
            return Transcript(None, "missing", f"Whisper failed on this clip ({type(err).__name__}: {err})")
        text = clean_text(result.get("text", ""))
        if text is None:
            return Transcript(None, "missing", "Whisper heard no words in this clip")
        return Transcript(text, f"whisper:{self.name}")


def resolve_transcript(text: str | bytes | None, waveform: np.ndarray | None,
                       transcriber: WhisperTranscriber | None) -> Transcript:
    """Given text wins; else ASR when a transcriber is set; else text is missing."""
    given = clean_text(text)
    if given is not None:
        return Transcript(given, "given")
    if transcriber is None:
        return Transcript(None, "missing", "no transcript given and ASR is off")
    return transcriber.transcribe(waveform)
