"""Inference: ``EmotionRecognizer`` turns clips (files, arrays, text) into predictions.

Stages: decode (``media``) -> transcript (given text, else Whisper) -> processor ->
encoders -> fusion. ``prepare`` runs the first four once per clip and ``classify``
re-runs only the fusion, so a UI can change modalities or the transcript cheaply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gia_mic.asr import DEFAULT_ASR_MODEL, Transcript, WhisperTranscriber, resolve_transcript
from gia_mic.configuration import MODALITIES, normalize_modalities
from gia_mic.encoders import EncoderOutput
from gia_mic.errors import USER_ERRORS, GiaMicError
from gia_mic.media import DecodedClip
from gia_mic.modeling import GiaMicForEmotionRecognition
from gia_mic.processing import InputError, clean_text
from gia_mic.utils import default_device

logger = logging.getLogger(__name__)

AudioInput = str | Path | np.ndarray | tuple[np.ndarray, int] | None


@dataclass
class PreparedClip:
    """A clip decoded, transcribed and encoded once; fusion can then run many times."""

    frames: np.ndarray | None
    frame_times: np.ndarray | None
    waveform: np.ndarray | None
    duration: float | None
    transcript: Transcript
    missing: dict[str, str]
    truncated: bool = False
    encoded: dict[str, EncoderOutput] = field(default_factory=dict)
    text_tokens: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """One clip's result.

    Attributes:
        label: The top class.
        scores: ``[{"label", "score"}]`` for every class, sorted, summing to 1.
        transcript: The transcript used (``None`` when text was missing).
        transcript_source: ``"given"``, ``"whisper:<model>"`` or ``"missing"``.
        modalities_used: Modalities that reached the model.
        missing: Per modality not used, the reason.
        gates: Six gate tensors ``"A<-B"`` -> ``(L_A, D)`` for this clip (real tokens only).
        gate_axes: Per modality, the token axis: seconds (video, audio) or subwords (text).
        contributions: Per used modality, the drop of the top class's probability when it
            is left out (leave-one-out over the fusion).
        per_modality: Per used modality, what the model says from that modality alone:
            ``{"label", "score"}`` (the same fusion run with only that modality present).
        agreement: Whether every used modality alone gives the same label (``None`` with
            only one modality).
        timings_ms: Per stage wall time.
    """

    label: str
    scores: list[dict[str, Any]]
    transcript: str | None
    transcript_source: str
    modalities_used: list[str]
    missing: dict[str, str] = field(default_factory=dict)
    transcript_reason: str | None = None
    gates: dict[str, np.ndarray] = field(default_factory=dict)
    gate_axes: dict[str, list] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)
    per_modality: dict[str, dict[str, Any]] = field(default_factory=dict)
    agreement: bool | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self, *, with_gates: bool = False) -> dict[str, Any]:
        """JSON-ready dict (the CLI's ``predict`` contract, plus extras)."""
        data = asdict(self)
        data["gates"] = {k: v.tolist() for k, v in self.gates.items()} if with_gates else None
        if not with_gates:
            data.pop("gates")
            data.pop("gate_axes")
        return data


@contextlib.contextmanager
def _timer(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


class EmotionRecognizer:
    """The inference pipeline over a GIA-MIC checkpoint.

    Args:
        model: A loaded model with its processor attached.
        transcriber: Whisper wrapper for clips without a transcript (``None``: no ASR).
        device: Where to run; CUDA (fp16 autocast) when present, else CPU.
        isolate: Decode files in a sandboxed worker process (``isolation.IsolatedDecoder``), so
            that a file that crashes, hangs or exhausts the native decoder becomes that file's
            ``MediaError`` instead of taking the process down. Servers and batch runs want it.
    """

    def __init__(self, model: GiaMicForEmotionRecognition, *, transcriber: WhisperTranscriber | None = None,
                 device: str | torch.device | None = None, isolate: bool = False) -> None:
        if model.processor is None:
            raise ValueError("the model has no processor attached: load it with from_pretrained")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.processor = model.processor
        self.config = model.config
        self.transcriber = transcriber
        self.decoder = None
        if isolate:
            from gia_mic.isolation import IsolatedDecoder

            self.decoder = IsolatedDecoder()

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None,
                        asr_model: object = DEFAULT_ASR_MODEL, device: str | torch.device | None = None,
                        isolate: bool = False, **hub_kwargs: object) -> EmotionRecognizer:
        """Loads a checkpoint directory or Hub repo; ``asr_model=None`` turns ASR off (``isolate``: see the class)."""
        device = torch.device(device) if device is not None else default_device()
        model = GiaMicForEmotionRecognition.from_pretrained(name_or_path, revision=revision, **hub_kwargs)
        transcriber = WhisperTranscriber(asr_model, device=device) if asr_model is not None else None
        return cls(model, transcriber=transcriber, device=device, isolate=isolate)

    @property
    def labels(self) -> list[str]:
        """Class names of the loaded checkpoint."""
        return list(self.config.labels)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def check_modalities(self, modalities: object) -> tuple[str, ...]:
        """Validates a requested subset against what the checkpoint was trained with."""
        if modalities is None:
            return tuple(self.config.modalities)
        wanted = normalize_modalities(modalities)
        untrained = [m for m in wanted if m not in self.config.modalities]
        if untrained:
            raise InputError(f"this model was not trained on {', '.join(untrained)} "
                             f"(it was trained on {', '.join(self.config.modalities)})")
        return wanted

    # ------------------------------------------------------------------ stage 1-3: decode, transcript, encode
    def _decode(self, video: str | Path | None, audio: AudioInput, timings: dict[str, float]) -> tuple[
            np.ndarray | None, np.ndarray | None, np.ndarray | None, float | None, dict[str, str], bool]:
        frames = frame_times = waveform = duration = None
        missing: dict[str, str] = {}
        truncated = False
        with _timer(timings, "decode"):
            if video is not None:
                clip: DecodedClip = self.processor.decode(video, decoder=self.decoder)
                frames, frame_times, waveform, duration = clip.frames, clip.frame_times, clip.audio, clip.duration
                missing.update(clip.missing)
                truncated = clip.truncated
            if isinstance(audio, (str, Path)):
                clip = self.processor.decode(audio, decoder=self.decoder)
                waveform, duration = clip.audio, duration or clip.duration
                truncated = truncated or clip.truncated
                if waveform is None:
                    raise InputError(f"{audio} has no audio track")
                missing.pop("audio", None)
            elif audio is not None:
                array, rate = audio if isinstance(audio, tuple) else (audio, self.config.sample_rate)
                waveform, cut = self.processor.prepare_waveform(array, rate)
                truncated = truncated or cut
                duration = duration or len(waveform) / self.config.sample_rate
                missing.pop("audio", None)
        if frames is None:
            missing.setdefault("video", "no video given")
        if waveform is None:
            missing.setdefault("audio", "no audio given")
        return frames, frame_times, waveform, duration, missing, truncated

    def prepare(self, *, video: str | Path | None = None, audio: AudioInput = None, text: str | bytes | None = None,
                modalities: object = None) -> PreparedClip:
        """Decodes, transcribes (if needed) and encodes one clip."""
        return self.prepare_batch([{"video": video, "audio": audio, "text": text}], modalities=modalities)[0]

    def prepare_batch(self, items: Sequence[dict[str, Any]], *, modalities: object = None) -> list[PreparedClip]:
        """``prepare`` for many clips; the encoders run once over the whole batch."""
        wanted = self.check_modalities(modalities)
        clips = []
        for item in items:
            timings: dict[str, float] = {}
            frames, times, wave, duration, missing, truncated = self._decode(item.get("video"), item.get("audio"), timings)
            transcript = Transcript(None, "missing", "text not requested")
            if "text" in wanted:
                given = clean_text(item.get("text"))
                asr = self.transcriber if given is None and wave is not None else None
                with _timer(timings, "asr") if asr is not None else contextlib.nullcontext():
                    transcript = resolve_transcript(given, wave, asr)
                if given is None and wave is None and self.transcriber is not None:
                    transcript = Transcript(None, "missing", f"no speech to transcribe ({missing['audio']})")
            if transcript.text is None:
                missing["text"] = transcript.reason or "no transcript"
            clips.append(PreparedClip(frames, times, wave, duration, transcript, missing, truncated, timings_ms=timings))
        self._encode(clips, wanted)
        return clips

    def prepare_each(self, items: Sequence[dict[str, Any]], *, modalities: object = None) -> list[PreparedClip | GiaMicError]:
        """``prepare_batch``, except that an item that fails gives its error instead of failing the batch.

        The batch is tried whole first (one encoder pass); on a user error each item is retried alone.
        """
        try:
            return list(self.prepare_batch(items, modalities=modalities))
        except USER_ERRORS:
            outcomes: list[PreparedClip | GiaMicError] = []
            for item in items:
                try:
                    outcomes.append(self.prepare_batch([item], modalities=modalities)[0])
                except USER_ERRORS as err:
                    outcomes.append(err)
            return outcomes

    def _encode(self, clips: list[PreparedClip], wanted: Sequence[str]) -> None:
        inputs = self.processor(
            frames=[c.frames for c in clips], audio=[c.waveform for c in clips],
            text=[c.transcript.text for c in clips], modalities=wanted,
        )
        present = inputs.pop("modality_mask")
        groups = {"video": ("pixel_values",), "audio": ("audio_values", "audio_attention_mask"),
                  "text": ("input_ids", "text_attention_mask")}
        per_clip_ms = {}
        with torch.inference_mode(), self._autocast():
            for m, keys in groups.items():
                if keys[0] not in inputs:
                    continue
                start = time.perf_counter()
                out = self.model.encode(**{k: inputs[k].to(self.device) for k in keys})[m]
                per_clip_ms[f"encoder_{m}"] = (time.perf_counter() - start) * 1000.0 / len(clips)
                for i, clip in enumerate(clips):
                    if present[i, MODALITIES.index(m)]:
                        length = int(out.mask[i].sum())
                        clip.encoded[m] = EncoderOutput(out.features[i : i + 1, :length].float(),
                                                        out.mask[i : i + 1, :length])
        if "input_ids" in inputs:
            tokenizer = self.processor.components["text"]
            for i, clip in enumerate(clips):
                ids = inputs["input_ids"][i][inputs["text_attention_mask"][i].bool()].tolist()
                clip.text_tokens = [t.replace("Ġ", "").replace("##", "") for t in tokenizer.convert_ids_to_tokens(ids)]
        for clip in clips:
            clip.timings_ms.update(per_clip_ms)

    # ------------------------------------------------------------------ stage 4: fusion
    def _fuse(self, clips: Sequence[PreparedClip], uses: Sequence[Sequence[str]]) -> Any:
        """One batched fusion; clip i uses modalities ``uses[i]`` (padding never changes a row)."""
        encoded, present = {}, torch.zeros(len(clips), len(MODALITIES), dtype=torch.bool)
        for j, m in enumerate(MODALITIES):
            rows = [c.encoded[m] if m in use else None for c, use in zip(clips, uses)]
            if all(r is None for r in rows):
                continue
            ref = next(r for r in rows if r is not None).features
            length = max(r.features.shape[1] for r in rows if r is not None)
            features = ref.new_zeros(len(clips), length, ref.shape[-1])  # (B, L, E)
            mask = torch.zeros(len(clips), length, dtype=torch.bool)
            for i, r in enumerate(rows):
                if r is not None:
                    n = r.features.shape[1]
                    features[i, :n], mask[i, :n], present[i, j] = r.features[0], r.mask[0].cpu(), True
            encoded[m] = EncoderOutput(features.to(self.device), mask.to(self.device))
        with torch.inference_mode(), self._autocast():
            return self.model.fuse(encoded, modality_mask=present.to(self.device))

    def _with_text(self, clip: PreparedClip, text: str | bytes | None, wanted: Sequence[str]) -> PreparedClip:
        """``clip`` with a new transcript encoded (a copy; ``clip`` itself is not modified)."""
        if text is None or "text" not in wanted or clean_text(text) == clip.transcript.text:
            return clip
        new = self.prepare(text=text, modalities=["text"])
        return dataclasses.replace(
            clip, encoded={**{k: v for k, v in clip.encoded.items() if k != "text"}, **new.encoded},
            transcript=new.transcript, text_tokens=new.text_tokens,
            missing={k: v for k, v in clip.missing.items() if k != "text"},
            timings_ms={**clip.timings_ms, "encoder_text": new.timings_ms.get("encoder_text", 0.0)})

    def _usable(self, clip: PreparedClip, wanted: Sequence[str]) -> list[str]:
        use = [m for m in wanted if m in clip.encoded]
        if not use:
            reasons = "; ".join(f"{m}: {clip.missing.get(m, 'not available')}" for m in wanted)
            raise InputError(f"nothing to classify: none of the requested modalities is available ({reasons})")
        return use

    def classify(self, clip: PreparedClip, *, modalities: object = None, text: str | bytes | None = None,
                 explain: bool = True) -> Prediction:
        """Runs the fusion on a prepared clip with any modality subset (and optionally new text).

        Args:
            clip: From ``prepare``.
            modalities: Subset to use (default: every trained modality available).
            text: A replacement transcript; only the text encoder re-runs (``clip`` itself is
                never modified, so it can be cached and reused).
            explain: Also compute per-modality contributions (leave-one-out fusions, timed
                as ``timings_ms["explain"]``).
        """
        return self.classify_batch([clip], modalities=modalities, texts=[text], explain=explain)[0]

    def classify_batch(self, clips: Sequence[PreparedClip], *, modalities: object = None,
                       texts: Sequence[str | bytes | None] | None = None, explain: bool = False) -> list[Prediction]:
        """``classify`` for many prepared clips with one batched fusion."""
        wanted = self.check_modalities(modalities)
        clips = [self._with_text(c, t, wanted) for c, t in zip(clips, texts or [None] * len(clips))]
        uses = [self._usable(c, wanted) for c in clips]
        start = time.perf_counter()
        out = self._fuse(clips, uses)
        fusion_ms = (time.perf_counter() - start) * 1000.0 / len(clips)
        probs = self.model.probabilities(out.logits, uses).cpu().numpy()  # (B, C)
        if not np.isfinite(probs).all():  # never hand NaN scores to a user (or to JSON)
            raise InputError("the model produced non-finite scores (NaN/Inf) for this input; "
                             "the checkpoint's weights may be corrupt")
        preds = [self._prediction(c, out, i, probs[i], use, wanted, {**c.timings_ms, "fusion": fusion_ms})
                 for i, (c, use) in enumerate(zip(clips, uses))]
        alone = self._per_modality(clips, uses, preds)
        if explain:
            start = time.perf_counter()
            for i, (clip, use, pred) in enumerate(zip(clips, uses, preds)):
                if len(use) > 1:
                    top = self.labels.index(pred.label)
                    rest = [[x for x in use if x != m] for m in use]
                    if len(use) == 2:  # leaving one out is the other alone: already run by _per_modality
                        left_out = [float(alone[(i, r[0])][top]) for r in rest]
                    else:
                        left_out = self.model.probabilities(self._fuse([clip] * len(use), rest).logits, rest)[:, top].tolist()
                    pred.contributions = {m: float(pred.scores[0]["score"] - p) for m, p in zip(use, left_out)}
            for pred in preds:
                pred.timings_ms["explain"] = (time.perf_counter() - start) * 1000.0 / len(preds)
        for pred in preds:
            pred.timings_ms["total"] = sum(v for k, v in pred.timings_ms.items() if k != "total")
        return preds

    def _per_modality(self, clips: Sequence[PreparedClip], uses: Sequence[Sequence[str]],
                      preds: Sequence[Prediction]) -> dict[tuple[int, str], np.ndarray]:
        """Fills ``per_modality`` and ``agreement``: one batched fusion over every (clip, single modality).

        Returns:
            ``(clip index, modality) -> (C,)`` probabilities of that modality alone (clips with several).
        """
        pairs = [(i, m) for i, use in enumerate(uses) if len(use) > 1 for m in use]
        alone: dict[tuple[int, str], np.ndarray] = {}
        if pairs:
            out = self._fuse([clips[i] for i, _ in pairs], [[m] for _, m in pairs])
            probs = self.model.probabilities(out.logits, [[m] for _, m in pairs]).cpu().numpy()  # (P, C)
            for (i, m), p in zip(pairs, probs):
                top = int(np.argmax(p))
                preds[i].per_modality[m] = {"label": self.labels[top], "score": float(p[top])}
                alone[(i, m)] = p
        for pred, use in zip(preds, uses):
            if len(use) == 1:
                pred.per_modality = {use[0]: {"label": pred.label, "score": pred.scores[0]["score"]}}
            labels = {v["label"] for v in pred.per_modality.values()}
            pred.agreement = len(labels) == 1 if len(use) > 1 else None
        return alone

    def _prediction(self, clip: PreparedClip, out: Any, index: int, probs: np.ndarray, use: Sequence[str],
                    wanted: Sequence[str], timings: dict[str, float]) -> Prediction:
        order = np.argsort(-probs)
        missing = {m: r for m, r in clip.missing.items() if m not in use}
        for m in wanted:
            if m not in use:
                missing.setdefault(m, "not available")
        for m in MODALITIES:
            if m not in wanted:
                missing.setdefault(m, "not requested" if m in self.config.modalities else "the model was not trained on it")
        return Prediction(
            label=self.labels[int(order[0])],
            scores=[{"label": self.labels[int(i)], "score": float(probs[i])} for i in order],
            transcript=clip.transcript.text if "text" in use else None,
            transcript_source=clip.transcript.source if "text" in use else "missing",
            transcript_reason=clip.transcript.reason,
            modalities_used=list(use), missing=missing,
            gates=self._gates(out, index, clip, use), gate_axes=self._axes(clip, use), timings_ms=timings,
        )

    @staticmethod
    def _gates(out: Any, index: int, clip: PreparedClip, use: Sequence[str]) -> dict[str, np.ndarray]:
        gates = {}
        for name, g in out.gates.items():
            a, b = name.split("<-")
            if a in use and b in use:
                gates[name] = g[index, : clip.encoded[a].features.shape[1]].float().cpu().numpy()  # (L_A, D)
        return gates

    def _axes(self, clip: PreparedClip, use: Sequence[str]) -> dict[str, list]:
        axes: dict[str, list] = {}
        if "video" in use and clip.frame_times is not None:
            axes["video"] = [float(t) for t in clip.frame_times]
        if "audio" in use and clip.waveform is not None:
            n = clip.encoded["audio"].features.shape[1]
            hop = len(clip.waveform) / self.config.sample_rate / max(n, 1)  # seconds per speech token
            axes["audio"] = [float((i + 0.5) * hop) for i in range(n)]
        if "text" in use:
            axes["text"] = list(clip.text_tokens)
        return axes

    # ------------------------------------------------------------------ one-call API
    def __call__(self, *, video: str | Path | None = None, audio: AudioInput = None, text: str | bytes | None = None,
                 modalities: object = None) -> Prediction:
        """Classifies one clip: a video file, an audio file/array, a transcript, or any mix."""
        if video is None and audio is None and clean_text(text) is None:
            raise InputError("give a video, an audio clip or a transcript")
        return self.classify(self.prepare(video=video, audio=audio, text=text, modalities=modalities),
                             modalities=modalities)

    def batch(self, items: Sequence[dict[str, Any]], *, modalities: object = None, batch_size: int = 8,
              explain: bool = False) -> list[Prediction]:
        """Classifies many clips (dicts with ``video`` / ``audio`` / ``text``), batching the encoders."""
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            clips = self.prepare_batch(items[start : start + batch_size], modalities=modalities)
            results += self.classify_batch(clips, modalities=modalities, explain=explain)
        return results

    def timeline(self, source: AudioInput, **options: Any) -> Any:
        """Emotion over time: ``source`` (file or waveform, any length) split into utterances, each classified.

        Returns a ``gia_mic.timeline.Timeline``; ``options`` are those of
        ``gia_mic.timeline.build_timeline`` (``method``, ``modalities``, ``spans``, ``batch_size``,
        ``vad``, ``window_seconds``, ``progress``).
        """
        from gia_mic.timeline import build_timeline

        return build_timeline(self, source, **options)
