"""Shared fixtures: tiny random models and checkpoints, real-data locations."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run only when selected (``-m slow``); ``gpu`` tests only where CUDA is."""
    selected = config.getoption("markexpr") or ""
    for item in items:
        if "slow" in item.keywords and "slow" not in selected:
            item.add_marker(pytest.mark.skip(reason="slow: needs real pretrained weights; select with -m slow"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="gpu: needs CUDA, absent here"))


def build_tiny(seed: int = 0, **overrides):
    from gia_mic import GiaMicConfig, GiaMicForEmotionRecognition

    torch.manual_seed(seed)
    model = GiaMicForEmotionRecognition.from_config(GiaMicConfig.from_preset("tiny", **overrides))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    return build_tiny()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_model.save_pretrained(path)
    return path


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def random_inputs(rng, n_samples: int = 1, seconds=(1.0,), texts=("I am so happy today",), frames_hw=(40, 50)):
    """Raw per-sample inputs of given audio lengths and texts."""
    frames = [rng.integers(0, 255, (8, *frames_hw, 3), dtype=np.uint8) for _ in range(n_samples)]
    audio = [(rng.standard_normal(int(16000 * s)) * 0.1).astype(np.float32) for s in seconds]
    return frames, audio, list(texts)


class FakeWhisper:
    """Stands in for ``whisper.model.Whisper``: records each ``transcribe`` call, answers with ``text``.

    The real openai-whisper decode is exercised where its result is known: tests/test_ct2_whisper.py
    (same options, bit-identical to the original model) and the benchmark's --quick run.
    """

    def __init__(self, text: str | Exception = "") -> None:
        self.text, self.calls = text, []

    def transcribe(self, audio, **options):
        self.calls.append((audio, options))
        if isinstance(self.text, Exception):
            raise self.text
        return {"text": self.text, "segments": []}


def cremad_dir() -> Path:
    path = SHARED_DATA / "cremad"
    if not path.is_dir():
        pytest.skip("../shared/data/cremad is absent (a fresh clone): real-clip test skipped")
    return path


# ---------------------------------------------------------------------------- Hub test server
HUB_TOKEN = "hf_TESTonlyTOKEN0123456789abcdefNEVERonDISK"
"""The fake token the test Hub accepts; tests assert it is sent as a Bearer header and never written."""


@pytest.fixture()
def hub_server(tmp_path_factory):
    """An empty Hub-compatible server on 127.0.0.1 (``tests/hub_server.py``) with its own ``HF_HOME``.

    Attributes: ``endpoint``, ``repos``, ``requests``, ``token``, ``home``. Run client code with
    ``hub_server.run_python(code)`` or ``hub_server.run_python(module="train.publish", args=(...))``:
    a subprocess whose HF_ENDPOINT / HF_TOKEN / HF_HOME point at this server (``client_env``).
    """
    from tests.hub_server import HubServer

    with HubServer(token=HUB_TOKEN, home=tmp_path_factory.mktemp("hf_home")) as hub:
        yield hub
