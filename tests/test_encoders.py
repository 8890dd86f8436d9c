"""Encoders by local path (the real ``from_pretrained`` path, offline) and clear load errors."""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_only_the_encoder_families_a_checkpoint_uses_are_imported(tmp_path):
    """transformers' model code is imported when an encoder is built, family by family (each costs start time)."""
    from tests.test_checkpoint import WHISPER_BERT

    build_tiny(**WHISPER_BERT).save_pretrained(tmp_path / "ckpt")
    code = ("import json, sys\n"
            "import gia_mic.cli, gia_mic.pipeline\n"
            "before = 'transformers.modeling_utils' in sys.modules\n"
            "from gia_mic import GiaMicForEmotionRecognition\n"
            "GiaMicForEmotionRecognition.from_pretrained(sys.argv[1])\n"
            "print(json.dumps([before, sorted(m.split('.')[2] for m in sys.modules\n"
            "                          if m.startswith('transformers.models.') and '.modeling_' in m)]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ckpt")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    before, families = json.loads(done.stdout.splitlines()[-1])
    assert not before  # importing the CLI and the pipeline imports no transformers model code
    assert {"whisper", "bert"} <= set(families) and not {"clip", "wavlm", "roberta"} & set(families)
