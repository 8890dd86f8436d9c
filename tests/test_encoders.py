"""Encoders by local path (the real ``from_pretrained`` path, offline) and clear load errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gia_mic import GiaMicConfig, GiaMicForEmotionRecognition
from gia_mic.encoders import EncoderLoadError
from tests.conftest import build_tiny, random_inputs


@pytest.fixture(scope="module")
def encoder_dirs(tmp_path_factory):
    """The tiny encoders and their processors saved as ordinary transformers checkpoints."""
    root = tmp_path_factory.mktemp("encoders")
    model = build_tiny()
    for m, enc in model.encoders.items():
        enc.model.save_pretrained(root / m)
        model.processor.components[m].save_pretrained(root / m)
    return root, model


def test_encoders_load_by_local_path(encoder_dirs):
    root, reference = encoder_dirs
    cfg = GiaMicConfig.from_preset("tiny", video_encoder=str(root / "video"), audio_encoder=str(root / "audio"),
                                   text_encoder=str(root / "text"), encoder_configs={})
    cfg.encoder_configs = {}
    torch.manual_seed(0)
    model = GiaMicForEmotionRecognition.from_config(cfg).eval()
    for m in ("video", "audio", "text"):
        ours = model.encoders[m].state_dict()
        theirs = reference.encoders[m].state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), m
    frames, audio, text = random_inputs(np.random.default_rng(1), 1)
    with torch.no_grad():
        a = model.encode(**model.processor(frames=frames, audio=audio, text=text))
        b = reference.encode(**reference.processor(frames=frames, audio=audio, text=text))
    for m in a:
        assert torch.equal(a[m].features, b[m].features)


def test_missing_local_encoder_is_a_clear_error(tmp_path):
    cfg = GiaMicConfig.from_preset("tiny", text_encoder=str(tmp_path / "no-roberta"), encoder_configs={})
    cfg.encoder_configs = {k: v for k, v in GiaMicConfig.from_preset("tiny").encoder_configs.items() if k != "text"}
    with pytest.raises(EncoderLoadError, match=r"(?s)could not load the text encoder from '.*no-roberta'.*Fix:"):
        GiaMicForEmotionRecognition.from_config(cfg)


def test_unreachable_hub_encoder_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderLoadError, match=r"(?s)openai/clip-vit-base-patch16.*hf download"):
        GiaMicForEmotionRecognition.from_config(GiaMicConfig.from_preset("base"))


def test_wrong_family_speech_encoder_is_refused(encoder_dirs):
    root, _ = encoder_dirs
    cfg = GiaMicConfig.from_preset("tiny", audio_encoder=str(root / "text"))
    cfg.encoder_configs.pop("audio")
    with pytest.raises(EncoderLoadError, match="is a 'roberta' model; supported"):
        GiaMicForEmotionRecognition.from_config(cfg)
