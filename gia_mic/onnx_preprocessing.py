"""The processor's steps in numpy, for the torch-free ONNX runtime.

Each function reproduces one ``GiaMicProcessor`` component from the recipe that
``gia_mic.onnx_export`` wrote (``onnx_export.json``), without torch or transformers:

* ``whisper_log_mel``: ``WhisperFeatureExtractor`` (periodic Hann window, centred reflect-padded
  STFT, power spectrum, Slaney mel filters saved at export, log10, 8-decade floor, (x + 4) / 4);
* ``wav2vec2_values``: ``Wav2Vec2FeatureExtractor`` (per-clip zero mean, unit variance);
* ``clip_pixels``: ``CLIPImageProcessor`` (shortest-edge bicubic resize with Pillow, centre crop,
  rescale, normalise);
* ``TextTokenizer``: the saved fast tokenizer (``tokenizer.json``) through the ``tokenizers`` package.

``tests/test_onnx.py`` checks each against the torch processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pad_rows(rows: Sequence[np.ndarray], value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads 1-D rows into ``(B, L)`` values and a ``(B, L)`` bool mask."""
    length = max(len(r) for r in rows)
    values = np.full((len(rows), length), value, dtype=np.float32)
    mask = np.zeros((len(rows), length), dtype=bool)
    for i, r in enumerate(rows):
        values[i, : len(r)], mask[i, : len(r)] = r, True
    return values, mask


def whisper_log_mel(waves: Sequence[np.ndarray], recipe: dict[str, Any],
                    mel_filters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whisper log-mel features of a fixed window.

    Args:
        waves: Mono float32 waveforms at the model's sample rate.
        recipe: ``n_fft``, ``hop_length``, ``frames`` (the window in mel frames).
        mel_filters: ``(n_fft // 2 + 1, n_mels)`` filter bank.

    Returns:
        ``(B, n_mels, frames)`` float32 features and the ``(B, frames)`` frame mask.
    """
    if recipe.get("dither", 0.0):
        raise ValueError("whisper_log_mel: dither is random; the torch-free runtime supports dither = 0 only")
    n_fft, hop, frames = recipe["n_fft"], recipe["hop_length"], recipe["frames"]
    n_samples = frames * hop
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # torch.hann_window (periodic)
    features = np.empty((len(waves), mel_filters.shape[1], frames), np.float32)
    mask = np.zeros((len(waves), frames), dtype=bool)
    for i, wave in enumerate(waves):
        x = np.zeros(n_samples, np.float32)
        x[: min(len(wave), n_samples)] = wave[:n_samples]
        padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
        chunks = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:frames]  # (T, n_fft)
        power = np.abs(np.fft.rfft(chunks * window, axis=-1)) ** 2  # (T, n_freq)
        log = np.log10(np.maximum(power @ mel_filters, 1e-10))  # (T, n_mels)
        log = np.maximum(log, log.max() - 8.0)
        features[i] = ((log + 4.0) / 4.0).T
        mask[i, : -(-min(len(wave), n_samples) // hop)] = True  # frame j is real where sample j * hop is
    return features, mask


def wav2vec2_values(waves: Sequence[np.ndarray], recipe: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-variance waveforms (over each clip's real samples), right-padded.

    Returns:
        ``(B, N)`` float32 values and the ``(B, N)`` sample mask.
    """
    rows = []
    for wave in waves:
        x = np.asarray(wave, np.float32)
        if recipe["do_normalize"]:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        rows.append(x)
    return _pad_rows(rows, recipe["padding_value"])


def clip_pixels(clips: Sequence[np.ndarray], recipe: dict[str, Any]) -> np.ndarray:
    """CLIP pixel values of each clip's frames.

    Args:
        clips: Per clip ``(F, H, W, 3)`` uint8 frames.
        recipe: ``shortest_edge``, ``crop`` (height, width), ``resample`` (a Pillow filter id),
            ``rescale_factor``, ``mean``, ``std``.

    Returns:
        ``(B, F, 3, crop_h, crop_w)`` float32.
    """
    from PIL import Image

    edge, (crop_h, crop_w) = recipe["shortest_edge"], recipe["crop"]
    mean, std = np.asarray(recipe["mean"], np.float32), np.asarray(recipe["std"], np.float32)
    out = []
    for frames in clips:
        images = []
        for frame in frames:
            h, w = frame.shape[:2]
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(edge * long / short)
            size = (edge, new_long) if w <= h else (new_long, edge)  # (width, height)
            image = np.asarray(Image.fromarray(frame).resize(size, resample=recipe["resample"]), np.float32)
            top, left = (image.shape[0] - crop_h) // 2, (image.shape[1] - crop_w) // 2
            image = image[top : top + crop_h, left : left + crop_w] * recipe["rescale_factor"]
            images.append(((image - mean) / std).transpose(2, 0, 1))  # (3, h, w)
        out.append(np.stack(images))
    return np.stack(out).astype(np.float32)


class TextTokenizer:
    """The checkpoint's fast tokenizer, loaded from ``tokenizer.json`` with truncation and padding set."""

    def __init__(self, path: str | Path, recipe: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(recipe["max_length"], direction=recipe.get("truncation_side", "right"))
        self.tokenizer.enable_padding(pad_id=recipe["pad_id"], pad_token=recipe["pad_token"],
                                      direction=recipe.get("padding_side", "right"))

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(B, L)`` int64 token ids and the ``(B, L)`` attention mask (1 on real tokens)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask
