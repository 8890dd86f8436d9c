"""The ``transformers`` pipeline task ``multimodal-emotion-recognition`` over gia-mic checkpoints.

    import gia_mic  # noqa: F401  (registers the task when transformers.pipelines is imported)
    from transformers import pipeline

    classify = pipeline("multimodal-emotion-recognition", model="runs/tiny/best", asr_model=None)
    classify("clip.mp4", text="Don't forget a jacket")     # [{"label": "angry", "score": 0.71}, ...]
    classify({"audio": "speech.wav"}, top_k=1)             # the best class only
    classify({"raw": waveform, "sampling_rate": 16000, "text": "so happy"}, modalities="audio,text")

It is a thin ``transformers.Pipeline`` over ``gia_mic.pipeline.EmotionRecognizer`` (the one
inference path: decoding, transcription, processor, encoders, fusion).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from transformers.models.auto.modeling_auto import AutoModel
from transformers.pipelines.base import Pipeline

from gia_mic.asr import DEFAULT_ASR_MODEL, WhisperTranscriber
from gia_mic.errors import InputError
from gia_mic.media import is_audio_file
from gia_mic.pipeline import EmotionRecognizer

PIPELINE_TASK = "multimodal-emotion-recognition"


def _item(inputs: Any, text: str | None) -> dict[str, Any]:
    """``EmotionRecognizer.prepare`` keywords from one pipeline input."""
    if isinstance(inputs, (str, Path)):
        item = {"audio" if is_audio_file(inputs) else "video": inputs}
    elif isinstance(inputs, np.ndarray):
        item = {"audio": inputs}
    elif isinstance(inputs, dict):
        unknown = sorted(set(inputs) - {"video", "audio", "text", "raw", "sampling_rate"})
        if unknown:
            raise InputError(f"unknown input keys {unknown}: give video, audio, text, or raw + sampling_rate")
        item = {k: inputs[k] for k in ("video", "audio", "text") if inputs.get(k) is not None}
        if inputs.get("raw") is not None:
            if "audio" in item or inputs.get("sampling_rate") is None:
                raise InputError("'raw' needs 'sampling_rate' and replaces 'audio'")
            item["audio"] = (np.asarray(inputs["raw"]), int(inputs["sampling_rate"]))
    else:
        raise InputError(f"a pipeline input is a file path, a waveform or a dict, got {type(inputs).__name__}")
    if text is not None:
        item["text"] = text
    return item


class GiaMicEmotionPipeline(Pipeline):
    """Clip (video or audio file, waveform) and/or transcript -> ``[{"label", "score"}]``, best first.

    Args:
        model: A loaded ``GiaMicForEmotionRecognition`` (``pipeline`` loads it through ``AutoModel``).
        asr_model: Whisper model for clips without a transcript (default: tiny.en), ``None`` for none.
        **kwargs: ``transformers.Pipeline``'s (``device``, ``top_k``, ...).

    Call keywords: ``text`` (the transcript), ``modalities`` (a subset, e.g. ``"audio,text"``),
    ``top_k`` (how many classes to return; default all).
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model: Any, *, asr_model: object = DEFAULT_ASR_MODEL, **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        transcriber = WhisperTranscriber(asr_model, device=self.device) if asr_model is not None else None
        self.recognizer = EmotionRecognizer(model, transcriber=transcriber, device=self.device)

    def _sanitize_parameters(self, text: str | None = None, modalities: object = None, top_k: int | None = None,
                             **kwargs: Any) -> tuple[dict, dict, dict]:
        if kwargs:
            raise TypeError(f"unknown pipeline arguments {sorted(kwargs)}; use text=, modalities=, top_k=")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InputError(f"top_k must be a whole number >= 1, got {top_k!r}")
        preprocess = {k: v for k, v in (("text", text), ("modalities", modalities)) if v is not None}
        return preprocess, {}, ({"top_k": top_k} if top_k is not None else {})

    def preprocess(self, inputs: Any, text: str | None = None, modalities: object = None) -> dict[str, Any]:
        """Decodes, transcribes (when needed) and encodes one clip."""
        clip = self.recognizer.prepare(**_item(inputs, text), modalities=modalities)
        return {"clip": clip, "modalities": modalities}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        prediction = self.recognizer.classify(model_inputs["clip"], modalities=model_inputs["modalities"], explain=False)
        return {"scores": prediction.scores}

    def postprocess(self, model_outputs: dict[str, Any], top_k: int | None = None) -> list[dict[str, Any]]:
        """``[{"label", "score"}]`` sorted by score, the ``top_k`` best (all by default)."""
        scores = model_outputs["scores"]
        return [{"label": s["label"], "score": s["score"]} for s in scores[: top_k or len(scores)]]


def register_pipeline_task(pipelines: ModuleType) -> None:
    """``pipeline("multimodal-emotion-recognition", model=...)``, given ``transformers.pipelines`` (idempotent)."""
    if pipelines.PIPELINE_REGISTRY.supported_tasks.get(PIPELINE_TASK, {}).get("impl") is GiaMicEmotionPipeline:
        return
    pipelines.PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=GiaMicEmotionPipeline, pt_model=AutoModel,
                                        type="multimodal")
