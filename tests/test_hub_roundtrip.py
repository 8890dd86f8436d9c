"""The library's Hub contract: ``push_to_hub`` then ``from_pretrained`` by repo id, and clear errors."""

from __future__ import annotations

import json

import pytest

from gia_mic.errors import CheckpointError
from tests.conftest import HUB_TOKEN

ROUNDTRIP = r"""
import json
import numpy as np, torch
from huggingface_hub import constants
from gia_mic import GiaMicForEmotionRecognition
from gia_mic.errors import CheckpointError
from tests.conftest import build_tiny

rng = np.random.default_rng(0)
inputs = dict(frames=[rng.integers(0, 255, (8, 40, 50, 3), dtype=np.uint8)],
              audio=[(rng.standard_normal(16000) * 0.1).astype(np.float32)], text=["what a day"])

def logits(model):
    with torch.no_grad():
        return model(**model.processor(**inputs)).logits

def error(name, revision=None):
    try:
        GiaMicForEmotionRecognition.from_pretrained(name, revision=revision)
    except CheckpointError as err:
        return str(err)
    return None

model = build_tiny(seed=7)
url = model.push_to_hub("org/tiny")
loaded = GiaMicForEmotionRecognition.from_pretrained("org/tiny")
out = {"url": str(url), "identical": bool(torch.equal(logits(model), logits(loaded))), "missing": error("org/missing"),
       "bad_revision": error("org/tiny", revision="fold-9")}
constants.HF_HUB_OFFLINE = True  # the request hook reads it on every call: now offline, same cache
out["cached_identical"] = bool(torch.equal(logits(model), logits(GiaMicForEmotionRecognition.from_pretrained("org/tiny"))))
out["offline_uncached"] = error("org/never-downloaded")
print(json.dumps(out))
"""


def test_push_to_hub_then_from_pretrained(hub_server):
    proc = hub_server.run_python(ROUNDTRIP)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["identical"] and out["cached_identical"]
    assert "org/missing" in out["missing"] and "no model repo" in out["missing"]
    assert "has no revision 'fold-9'" in out["bad_revision"]
    assert "org/never-downloaded" in out["offline_uncached"] and "no cached copy" in out["offline_uncached"]
    files = hub_server.repo("org/tiny").files("main")
    assert {"config.json", "model.safetensors", "README.md", "tokenizer/tokenizer.json",
            "feature_extractor/preprocessor_config.json", "image_processor/preprocessor_config.json"} <= set(files)
    card = files["README.md"].decode()  # save_pretrained's minimal card: what the model is, nothing invented
    assert "library_name: gia-mic" in card and "More Information Needed" not in card and "github.com" not in card
    commits = [r for r in hub_server.requests if r.path.endswith("/commit/main")]
    assert commits and all(r.headers["authorization"] == f"Bearer {HUB_TOKEN}" for r in commits)
    for path in hub_server.home.rglob("*"):  # the HF cache holds the download, never the token
        assert not path.is_file() or HUB_TOKEN.encode() not in path.read_bytes(), path


def test_offline_without_cache_says_how_to_fix(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    from gia_mic import GiaMicForEmotionRecognition

    with pytest.raises(CheckpointError) as info:
        GiaMicForEmotionRecognition.from_pretrained("org/tiny", cache_dir=tmp_path)
    message = str(info.value)
    assert "org/tiny" in message and "no cached copy" in message and "Fix:" in message
