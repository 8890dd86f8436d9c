"""Smoke tests that need what CI lacks: real pretrained encoders (``slow``) or CUDA (``gpu``).

``slow`` tests run only with ``-m slow`` and skip when the weights are not in the Hugging Face
cache (tests never download); ``gpu`` tests skip where CUDA is absent (``tests/conftest.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gia_mic import GiaMicConfig, GiaMicForEmotionRecognition
from tests.clips import make_clip
from tests.conftest import build_tiny, random_inputs


def _uncached(config: GiaMicConfig) -> list[str]:
    """The encoder ids of ``config`` whose config and weights are not both in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    missing = []
    for m in config.modalities:
        source, revision = config.encoder_source(m)
        found = [try_to_load_from_cache(source, name, revision=revision)
                 for name in ("config.json", "model.safetensors", "pytorch_model.bin")]
        if not isinstance(found[0], str) or not any(isinstance(f, str) for f in found[1:]):
            missing.append(source)
    return missing


@pytest.mark.slow
def test_paper_preset_with_real_encoders(rng):
    config = GiaMicConfig.from_preset("paper")
    missing = _uncached(config)
    if missing:
        pytest.skip(f"paper preset: {', '.join(missing)} not in the Hugging Face cache (tests never download)")
    model = GiaMicForEmotionRecognition.from_config(config).eval()
    assert model.frozen_modalities() == ("video", "text")  # SPEC §1: CLIP and RoBERTa frozen, WavLM fine-tuned
    frames, audio, text = random_inputs(rng, 2, seconds=(1.0, 2.0), texts=("I am so happy today", "leave me alone"))
    with torch.no_grad():
        out = model(**model.processor(frames=frames, audio=audio, text=text), labels=torch.tensor([1, 2]))
    assert out.logits.shape == (2, 4) and torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
    assert set(out.gates) == {"video<-audio", "audio<-video", "audio<-text", "text<-audio", "text<-video",
                              "video<-text"}


@pytest.mark.gpu
def test_cuda_fp16_autocast_matches_fp32_on_cpu(rng):
    model = build_tiny(seed=5)
    frames, audio, text = random_inputs(rng, 2, seconds=(1.0, 1.4), texts=("so happy", "no"))
    inputs = model.processor(frames=frames, audio=audio, text=text)
    with torch.no_grad():
        want = model(**inputs).logits  # (2, 4), fp32 on CPU
        model.cuda()
        with torch.autocast("cuda", dtype=torch.float16):
            got = model(**{k: v.cuda() for k, v in inputs.items()}).logits
    assert got.device.type == "cuda" and torch.isfinite(got).all()
    torch.testing.assert_close(got.float().cpu(), want, atol=5e-2, rtol=5e-2)


@pytest.mark.gpu
def test_recognizer_on_cuda(tiny_checkpoint, tmp_path):
    from gia_mic.pipeline import EmotionRecognizer

    recognizer = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cuda")
    prediction = recognizer(video=make_clip(tmp_path / "clip.mp4", seconds=1.5), text="what a day")
    assert recognizer.device.type == "cuda" and prediction.label in recognizer.labels
    assert np.isclose(sum(s["score"] for s in prediction.scores), 1.0, atol=1e-3)
