"""transformers conventions: model_type/architectures in config.json, AutoConfig/AutoModel, the pipeline task."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gia_mic import ConfigError, GiaMicConfig, GiaMicForEmotionRecognition
from gia_mic.errors import InputError
from tests.conftest import random_inputs

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "1001_DFA_ANG_XX.mp4"
TEXT = "Don't forget a jacket"


def logits_of(model):
    frames, audio, text = random_inputs(np.random.default_rng(0), 2, seconds=(1.0, 1.5), texts=("so happy", "no"))
    with torch.no_grad():
        return model(**model.processor(frames=frames, audio=audio, text=text)).logits


def run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


# ---------------------------------------------------------------------------------- config.json
def test_config_json_carries_model_type_and_architectures(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "gia-mic" and config["architectures"] == ["GiaMicForEmotionRecognition"]


def test_checkpoints_saved_before_them_still_load(tiny_checkpoint, tmp_path):
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "old")
    config = json.loads((ckpt / "config.json").read_text())
    del config["model_type"], config["architectures"]
    (ckpt / "config.json").write_text(json.dumps(config))
    model = GiaMicForEmotionRecognition.from_pretrained(ckpt)
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["model_type"] == "gia-mic"


@pytest.mark.parametrize(("key", "value"), [("model_type", "bert"), ("architectures", ["BertModel"])])
def test_a_config_of_another_model_is_refused(tiny_checkpoint, tmp_path, key, value):
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "other")
    config = json.loads((ckpt / "config.json").read_text())
    config[key] = value
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=f"{key}: .* is not a GIA-MIC"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


# ---------------------------------------------------------------------------------- registration
def test_import_gia_mic_stays_free_of_torch_and_transformers_model_code():
    code = ("import sys, gia_mic, transformers\n"  # transformers' top level is lazy: nothing registers yet
            "assert 'torch' not in sys.modules, 'torch'\n"
            "assert 'transformers.models.auto.configuration_auto' not in sys.modules\n"
            "from transformers import AutoConfig\n"
            "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
            "assert 'gia-mic' in CONFIG_MAPPING, 'not registered on first use'\n")
    done = run(code)
    assert done.returncode == 0, done.stderr[-800:]


def test_registration_when_transformers_was_imported_first():
    code = ("from transformers import AutoModel, pipeline\n"
            "import transformers.pipelines\n"
            "import gia_mic\n"
            "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
            "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
            "from transformers.pipelines import PIPELINE_REGISTRY\n"
            "assert 'gia-mic' in CONFIG_MAPPING\n"
            "assert [c.__name__ for c in MODEL_MAPPING._extra_content] == ['GiaMicTransformersConfig']\n"
            "assert 'multimodal-emotion-recognition' in PIPELINE_REGISTRY.get_supported_tasks()\n")
    done = run(code)
    assert done.returncode == 0, done.stderr[-800:]


def test_a_failing_registration_warns_and_leaves_transformers_alone(caplog):
    from gia_mic import registration

    with caplog.at_level(logging.WARNING, logger="gia_mic.registration"):
        registration._register("gia_mic.auto:no_such_function", sys.modules[__name__])
    assert "could not register with transformers (AttributeError" in caplog.text


# ---------------------------------------------------------------------------------- AutoConfig / AutoModel
def test_auto_model_loads_a_checkpoint_without_remote_code(tiny_model, tiny_checkpoint):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(tiny_checkpoint)
    assert type(config).__name__ == "GiaMicTransformersConfig"
    assert config.id2label == dict(enumerate(tiny_model.config.labels))
    assert config.to_gia_mic() == GiaMicConfig.from_json_file(tiny_checkpoint / "config.json")
    model = AutoModel.from_pretrained(tiny_checkpoint, trust_remote_code=False)
    assert isinstance(model, GiaMicForEmotionRecognition) and not model.training
    assert torch.equal(logits_of(model), logits_of(tiny_model))
    assert AutoModel.from_pretrained(str(tiny_checkpoint), dtype=torch.float16).classifier[0].weight.dtype == torch.float16
    fresh = AutoModel.from_config(config)  # carried encoder configs: no download
    assert isinstance(fresh, GiaMicForEmotionRecognition) and fresh.config.labels == tiny_model.config.labels
    with pytest.raises(TypeError, match="do not take.*device_map"):
        AutoModel.from_pretrained(tiny_checkpoint, device_map="auto")


# ---------------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def classify(tiny_checkpoint):
    from transformers import pipeline

    return pipeline("multimodal-emotion-recognition", model=str(tiny_checkpoint), asr_model=None, device="cpu")


def test_pipeline_returns_sorted_labels_and_scores(classify, tiny_checkpoint):
    from gia_mic.pipeline import EmotionRecognizer

    out = classify(str(CLIP), text=TEXT)
    expected = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")(video=CLIP, text=TEXT)
    assert [set(s) for s in out] == [{"label", "score"}] * 4
    assert out == expected.scores  # the pipeline is a thin wrapper over the one inference path
    assert [s["score"] for s in out] == sorted((s["score"] for s in out), reverse=True)
    assert classify(str(CLIP), text=TEXT, top_k=2) == out[:2]


def test_pipeline_inputs_waveforms_dicts_and_batches(classify):
    wave = (np.random.default_rng(0).standard_normal(24000) * 0.1).astype(np.float32)
    from_dict = classify({"raw": wave, "sampling_rate": 16000, "text": TEXT}, modalities="audio,text", top_k=1)
    assert len(from_dict) == 1 and from_dict[0]["label"] in {"neutral", "happy", "angry", "sad"}
    batch = classify([{"audio": wave, "text": TEXT}, {"text": TEXT}])
    assert len(batch) == 2 and all(len(row) == 4 for row in batch)
    assert classify({"text": TEXT}) == batch[1]


@pytest.mark.parametrize(("inputs", "kwargs", "message"), [
    (TEXT, {"top_k": 0}, "top_k must be a whole number >= 1"),
    ({"raw": np.zeros(16000, np.float32)}, {}, "'raw' needs 'sampling_rate'"),
    ({"clip": "x.mp4"}, {}, r"unknown input keys \['clip'\]"),
])
def test_pipeline_input_errors_are_clear(classify, inputs, kwargs, message):
    with pytest.raises(InputError, match=message):
        classify(inputs, **kwargs)
