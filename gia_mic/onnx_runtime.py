"""Torch-free inference over a ``gia_mic.onnx_export`` folder: PyAV + numpy + onnxruntime.

    from gia_mic.onnx_runtime import OnnxEmotionRecognizer

    rec = OnnxEmotionRecognizer("build/gia-mic-lite-onnx")
    pred = rec(video="clip.mp4", text="Don't forget a jacket.")
    pred.label, pred.scores

This module imports neither torch nor transformers (``tests/test_onnx.py`` checks it in a
process where importing them fails). Media go through ``gia_mic.media`` (the one decoding
path), constants through ``GiaMicConfig`` (the exported ``config.json``), preprocessing through
``gia_mic.onnx_preprocessing``. What still needs torch: training, Whisper ASR (give the
transcript, or text is marked missing), and exporting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gia_mic import onnx_preprocessing as prep
from gia_mic.configuration import MODALITIES, GiaMicConfig, normalize_modalities
from gia_mic.media import decode_clip
from gia_mic.text import clean_text
from gia_mic.waveform import prepare_waveform

MANIFEST_NAME = "onnx_export.json"  # = gia_mic.onnx_export.MANIFEST_NAME (that module imports torch)
SUPPORTED_FORMAT = 1
_ORT_TYPES = {"tensor(bool)": np.bool_, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
              "tensor(float)": np.float32}


class OnnxRuntimeError(ValueError):
    """An export folder or an input the runtime cannot use; the message says which."""


@dataclass
class OnnxPrediction:
    """One clip's result (the fields of ``gia-mic predict --json`` that need no ASR).

    Attributes:
        label: The top class.
        scores: ``[{"label", "score"}]`` for every class, sorted, summing to 1.
        probabilities: ``(C,)`` class probabilities in label order.
        modalities_used: Modalities that reached the fusion.
        missing: Per requested modality not used, the reason.
        gates: GIA gates ``"A<-B"`` -> ``(L_A, D)`` between used modalities (real tokens only).
        timings_ms: Per stage wall time.
    """

    label: str
    scores: list[dict[str, Any]]
    probabilities: np.ndarray
    modalities_used: list[str]
    missing: dict[str, str] = field(default_factory=dict)
    gates: dict[str, np.ndarray] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


class OnnxEmotionRecognizer:
    """Runs an exported GIA-MIC model with onnxruntime.

    Args:
        directory: A folder written by ``gia_mic.onnx_export.export_onnx``.
        threads: onnxruntime intra-op threads (default: its own choice).
    """

    def __init__(self, directory: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.directory = Path(directory)
        try:
            self.manifest = json.loads((self.directory / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise OnnxRuntimeError(f"{self.directory} is not a gia-mic ONNX export ({MANIFEST_NAME}: {err})") from None
        if self.manifest.get("format") != SUPPORTED_FORMAT:
            raise OnnxRuntimeError(f"{self.directory}: export format {self.manifest.get('format')!r}, "
                                   f"this runtime reads format {SUPPORTED_FORMAT}")
        self.config = GiaMicConfig.from_json_file(self.directory / "config.json")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = {}
        for name, graph in self.manifest["graphs"].items():
            path = self.directory / graph["file"]
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own types for missing, truncated or invalid files
                raise OnnxRuntimeError(f"{path} cannot be loaded by onnxruntime: {str(err).splitlines()[0][:200]}; "
                                       "re-run the export") from None
        self.recipes = self.manifest["preprocessing"]
        self.constants = self._constants()
        text = self.recipes.get("text")
        self.tokenizer = prep.TextTokenizer(self.directory / text["file"], text) if text else None

    def _constants(self) -> dict[str, np.ndarray]:
        from safetensors.numpy import load_file

        path = self.directory / "preprocessing.safetensors"
        return load_file(str(path)) if path.exists() else {}

    @property
    def labels(self) -> list[str]:
        """Class names, in logit order."""
        return list(self.config.labels)

    # ------------------------------------------------------------------ inputs
    def _load(self, item: dict[str, Any]) -> dict[str, Any]:
        """Decoded frames / waveform / transcript of one clip (``None`` where absent)."""
        c = self.config
        limits = dict(min_seconds=c.min_audio_seconds, max_seconds=c.max_audio_seconds)
        frames = wave = None
        video, audio = item.get("video"), item.get("audio")
        if video is not None:
            clip = decode_clip(video, num_frames=c.num_frames, sample_rate=c.sample_rate, **limits)
            frames, wave = clip.frames, clip.audio
        if isinstance(audio, (str, Path)):
            wave = decode_clip(audio, num_frames=c.num_frames, sample_rate=c.sample_rate, **limits).audio
        elif audio is not None:
            array, rate = audio if isinstance(audio, tuple) else (audio, c.sample_rate)
            wave, _ = prepare_waveform(array, rate, target_rate=c.sample_rate, **limits)
        return {"video": frames, "audio": wave, "text": clean_text(item.get("text"))}

    def _feeds(self, graph: str, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        inputs = self.sessions[graph].get_inputs()
        return {i.name: np.asarray(a, dtype=_ORT_TYPES.get(i.type)) for i, a in zip(inputs, arrays)}

    def _preprocess(self, m: str, values: list[Any]) -> list[np.ndarray]:
        recipe = self.recipes[m]
        if recipe["kind"] == "whisper_log_mel":
            return list(prep.whisper_log_mel(values, recipe, self.constants["audio.mel_filters"]))
        if recipe["kind"] == "wav2vec2":
            return list(prep.wav2vec2_values(values, recipe))
        if recipe["kind"] == "clip_image":
            return [prep.clip_pixels(values, recipe)]
        if recipe["kind"] == "tokenizers":
            return list(self.tokenizer(values))
        raise OnnxRuntimeError(f"{self.directory}: unknown {m} preprocessing {recipe['kind']!r}")

    def _encode(self, m: str, values: list[Any]) -> list[np.ndarray]:
        """Per clip, its ``(L, E)`` real encoder tokens."""
        graph = f"encoder_{m}"
        if self.manifest["graphs"][graph]["per_sample"]:  # one unpadded clip at a time
            return [self.sessions[graph].run(None, self._feeds(graph, self._preprocess(m, [v])[:1]))[0][0]
                    for v in values]
        features, mask = self.sessions[graph].run(None, self._feeds(graph, self._preprocess(m, values)))
        return [f[: int(k.sum())] for f, k in zip(features, mask)]  # (L, E) each

    # ------------------------------------------------------------------ fusion
    def _fusion_feeds(self, tokens: dict[str, list[np.ndarray | None]], batch: int) -> list[np.ndarray]:
        present = np.zeros((batch, len(MODALITIES)), dtype=bool)
        arrays: list[np.ndarray] = [present]
        for m in self.config.modalities:
            rows = tokens.get(m, [None] * batch)
            width = self.manifest["graphs"][f"encoder_{m}"]["width"]
            length = max([len(r) for r in rows if r is not None] or [1])
            features = np.zeros((batch, length, width), np.float32)  # (B, L, E)
            mask = np.zeros((batch, length), dtype=bool)
            for i, r in enumerate(rows):
                if r is not None:
                    features[i, : len(r)], mask[i, : len(r)], present[i, MODALITIES.index(m)] = r, True, True
            arrays += [features, mask]
        return arrays

    def predict_batch(self, items: Sequence[dict[str, Any]], *, modalities: object = None) -> list[OnnxPrediction]:
        """Classifies clips given as dicts with ``video`` / ``audio`` (path or array) / ``text``.

        Raises:
            OnnxRuntimeError: an untrained modality was requested, or a clip has none of them.
            gia_mic.media.MediaError: a file cannot be decoded.
        """
        wanted = normalize_modalities(modalities) if modalities is not None else tuple(self.config.modalities)
        untrained = [m for m in wanted if m not in self.config.modalities]
        if untrained:
            raise OnnxRuntimeError(f"this model was not trained on {', '.join(untrained)} "
                                   f"(it was trained on {', '.join(self.config.modalities)})")
        start = time.perf_counter()
        loaded = [self._load(item) for item in items]
        timings = {"decode": (time.perf_counter() - start) * 1000.0 / len(items)}
        tokens: dict[str, list[np.ndarray | None]] = {}
        for m in wanted:
            rows = [i for i, clip in enumerate(loaded) if clip[m] is not None]
            if rows:
                start = time.perf_counter()
                encoded = dict(zip(rows, self._encode(m, [loaded[i][m] for i in rows])))
                tokens[m] = [encoded.get(i) for i in range(len(items))]
                timings[f"encoder_{m}"] = (time.perf_counter() - start) * 1000.0 / len(items)
        for i in range(len(items)):
            if not any(tokens.get(m, [None] * len(items))[i] is not None for m in wanted):
                raise OnnxRuntimeError(f"item {i}: none of the requested modalities ({', '.join(wanted)}) is available")
        start = time.perf_counter()
        outputs = self.sessions["fusion"].run(None, self._feeds("fusion", self._fusion_feeds(tokens, len(items))))
        timings["fusion"] = (time.perf_counter() - start) * 1000.0 / len(items)
        return [self._prediction(i, outputs, tokens, wanted, dict(timings)) for i in range(len(items))]

    def __call__(self, *, video: str | Path | None = None, audio: Any = None, text: str | bytes | None = None,
                 modalities: object = None) -> OnnxPrediction:
        """Classifies one clip: a video file, an audio file/array, a transcript, or any mix."""
        return self.predict_batch([{"video": video, "audio": audio, "text": text}], modalities=modalities)[0]

    def _prediction(self, index: int, outputs: list[np.ndarray], tokens: dict[str, list[np.ndarray | None]],
                    wanted: Sequence[str], timings: dict[str, float]) -> OnnxPrediction:
        used = [m for m in wanted if tokens.get(m) is not None and tokens[m][index] is not None]
        # as GiaMicForEmotionRecognition.probabilities: the temperature of the modality set used
        logits = outputs[0][index].astype(np.float64) / self.config.temperature_for(used)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        missing = {m: "not available" for m in wanted if m not in used}
        missing.update({m: "not requested" for m in self.config.modalities if m not in wanted})
        fusion, gates = self.manifest["graphs"]["fusion"], {}
        for name, direction in fusion["gates"].items():
            a, b = direction.split("<-")
            if a in used and b in used:
                gates[direction] = outputs[fusion["outputs"].index(name)][index, : len(tokens[a][index])]  # (L_A, D)
        timings["total"] = sum(timings.values())
        return OnnxPrediction(label=self.labels[int(order[0])],
                              scores=[{"label": self.labels[int(i)], "score": float(probs[i])} for i in order],
                              probabilities=probs, modalities_used=used, missing=missing, gates=gates, timings_ms=timings)
