"""Checkpoints: self-contained, bit-identical reload, strict keys, pickle refusal, clear errors."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gia_mic import GiaMicForEmotionRecognition
from gia_mic.errors import CheckpointError
from gia_mic.hub import resolve
from tests.conftest import random_inputs


def logits_of(model, seed=0):
    frames, audio, text = random_inputs(np.random.default_rng(seed), 2, seconds=(1.0, 1.7), texts=("so happy", "no"))
    with torch.no_grad():
        return model(**model.processor(frames=frames, audio=audio, text=text)).logits


def test_checkpoint_is_self_contained(tiny_checkpoint):
    names = sorted(p.name for p in tiny_checkpoint.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer", "image_processor", "feature_extractor"} <= set(names)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert set(config["encoder_configs"]) == {"video", "audio", "text"}
    assert config["encoder_configs"]["audio"]["model_type"] == "wavlm"
    weights = load_file(str(tiny_checkpoint / "model.safetensors"))
    assert any(k.startswith("encoders.audio.model.") for k in weights)
    assert any(k.startswith("encoders.video.model.") for k in weights)
    assert not any(p.suffix in (".bin", ".pt", ".pth", ".pkl") for p in tiny_checkpoint.rglob("*"))


def test_saved_card_is_minimal_and_invents_nothing(tiny_checkpoint, tmp_path):
    text = (tiny_checkpoint / "README.md").read_text()
    assert "library_name: gia-mic" in text and "Labels, in logit order: neutral, happy, angry, sad" in text
    assert "records no training data and no results" in text
    assert "More Information Needed" not in text and "github.com" not in text
    (tmp_path / "README.md").write_text("my own card")
    GiaMicForEmotionRecognition.from_pretrained(tiny_checkpoint).save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own card"  # an existing card is kept


def test_reload_gives_bit_identical_logits(tiny_model, tiny_checkpoint):
    again = GiaMicForEmotionRecognition.from_pretrained(tiny_checkpoint)
    assert torch.equal(logits_of(tiny_model), logits_of(again))


def test_fp16_storage_restores_compute_dtype(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert load_file(str(tmp_path / "half" / "model.safetensors"))["classifier.0.weight"].dtype == torch.float16
    again = GiaMicForEmotionRecognition.from_pretrained(tmp_path / "half")
    assert again.classifier[0].weight.dtype == torch.float32
    torch.testing.assert_close(logits_of(again), logits_of(tiny_model), atol=5e-3, rtol=1e-2)


def copy_ckpt(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_and_unexpected_keys_are_named(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    state = load_file(str(ckpt / "model.safetensors"))
    state.pop("classifier.0.bias")
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: classifier\.0\.bias.*unexpected keys: extra\.weight"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_shape_mismatch_is_named(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    state = load_file(str(ckpt / "model.safetensors"))
    state["classifier.3.weight"] = torch.zeros(7, 32)
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"shape mismatches: classifier\.3\.weight"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_truncated_weights(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_wrong_file_as_weights(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    (ckpt / "model.safetensors").write_text("this is not a tensor file")
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_weights_of_another_config_are_refused(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    config = json.loads((ckpt / "config.json").read_text())
    config["use_mir"] = False
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unexpected keys: mig"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_pickle_weights_are_refused(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    os.remove(ckpt / "model.safetensors")
    (ckpt / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match=r"pickle weights \(pytorch_model\.bin\).*refused"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_config_with_unknown_field(tiny_checkpoint, tmp_path):
    from gia_mic import ConfigError

    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    config = json.loads((ckpt / "config.json").read_text())
    config["gate_kernel"] = 3
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="unknown config field.*'gate_kernel'"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        GiaMicForEmotionRecognition.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="neither a checkpoint directory nor a Hub repo id"):
        GiaMicForEmotionRecognition.from_pretrained(tmp_path / "missing" / "dir")


def test_offline_without_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match=r"cannot load 'someone/gia-mic-x'.*offline.*no cached copy.*Fix:"):
        resolve("someone/gia-mic-x", cache_dir=str(tmp_path / "cache"))


def test_save_is_atomic_and_leaves_no_partial_files(tiny_model, tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    tiny_model.save_pretrained(target)
    before = (target / "model.safetensors").read_bytes()

    import gia_mic.checkpoint as ck

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_weights", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny_model.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_int8_storage_is_for_embedding_tables_only():
    """A vocabulary table is quantised; a speech encoder's 2048 x 512 projection (1.05 M) and small tensors are not."""
    from gia_mic.quantize import SCALE_SUFFIX, dequantize, quantize_state

    state = {"vocab": torch.randn(30_522, 40), "fc1": torch.randn(2048, 512), "fc2": torch.randn(512, 2048),
             "bias": torch.randn(2048), "ids": torch.arange(20_000).reshape(10_000, 2)}
    out = quantize_state(state)
    assert out["vocab"].dtype == torch.int8 and (out["vocab" + SCALE_SUFFIX].shape == (30_522,))
    assert all(out[k] is state[k] for k in ("fc1", "fc2", "bias", "ids"))
    assert (dequantize(out)["vocab"] - state["vocab"]).abs().max() <= state["vocab"].abs().max() / 127


def test_int8_storage_is_smaller_and_close(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "f32")
    tiny_model.save_pretrained(tmp_path / "q8", dtype=torch.float16, quantize="int8")
    small = (tmp_path / "q8" / "model.safetensors").stat().st_size
    big = (tmp_path / "f32" / "model.safetensors").stat().st_size
    assert small < 0.4 * big
    stored = load_file(str(tmp_path / "q8" / "model.safetensors"))
    assert stored["encoders.text.model.embeddings.word_embeddings.weight"].dtype == torch.int8
    again = GiaMicForEmotionRecognition.from_pretrained(tmp_path / "q8")
    weight = again.encoders["text"].model.embeddings.word_embeddings.weight
    reference = tiny_model.encoders["text"].model.embeddings.word_embeddings.weight
    assert weight.dtype == torch.float32
    assert (weight - reference).abs().max() <= reference.abs().max() / 127
    torch.testing.assert_close(logits_of(again), logits_of(tiny_model), atol=2e-2, rtol=5e-2)


# ---------------------------------------------------------------------------------- fast loading
WHISPER_BERT = {"modalities": ["audio", "text"], "encoder_configs": {  # the embedded default's encoder families
    "audio": {"model_type": "whisper", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
              "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
              "num_mel_bins": 80, "max_source_positions": 100, "vocab_size": 300},
    "text": {"model_type": "bert", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128}}}


@pytest.mark.parametrize("overrides", [{}, WHISPER_BERT, {"mig_shared_weights": True}],
                         ids=["clip-wavlm-roberta", "whisper-bert", "shared-mig"])
def test_loading_equals_a_random_build_then_copy(tmp_path, overrides):
    """from_pretrained builds with parameters on meta and assigns the checkpoint's tensors; every
    parameter and buffer (the non-persistent ``position_ids`` too), every ``requires_grad`` and the
    logits equal those of the plain way: a randomly initialised model the weights are copied into."""
    from tests.conftest import build_tiny

    build_tiny(**overrides).save_pretrained(tmp_path / "ckpt")
    loaded = GiaMicForEmotionRecognition.from_pretrained(tmp_path / "ckpt")
    plain = GiaMicForEmotionRecognition(copy.deepcopy(loaded.config))
    plain.load_state_dict(load_file(str(tmp_path / "ckpt" / "model.safetensors")))
    plain.processor = loaded.processor
    plain.eval()
    for ours, theirs in ((loaded.named_parameters(), plain.named_parameters()),
                         (loaded.named_buffers(), plain.named_buffers())):
        ours, theirs = dict(ours), dict(theirs)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert not ours[key].is_meta and torch.equal(ours[key], theirs[key]), key
            assert ours[key].requires_grad == theirs[key].requires_grad, key
    assert any(k.endswith("position_ids") for k, _ in loaded.named_buffers())
    assert torch.equal(logits_of(loaded), logits_of(plain))


def test_loading_never_initialises_weights_it_then_overwrites(tiny_checkpoint, monkeypatch):
    drawn = []
    for name in ("normal_", "uniform_"):
        original = getattr(torch.Tensor, name)

        def counting(tensor, *args, _original=original, **kwargs):
            if not tensor.is_meta:
                drawn.append(tensor.numel())
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    GiaMicForEmotionRecognition.from_pretrained(tiny_checkpoint)
    assert sum(drawn) == 0


def test_parameters_on_meta_leaves_buffers_and_other_threads_alone():
    import threading

    from gia_mic.checkpoint import parameters_on_meta

    elsewhere = {}
    with parameters_on_meta():
        inside = torch.nn.BatchNorm1d(3)
        thread = threading.Thread(target=lambda: elsewhere.setdefault("module", torch.nn.Linear(2, 2)))
        thread.start()
        thread.join()
    after = torch.nn.Linear(2, 2)
    assert inside.weight.is_meta and inside.bias.is_meta
    assert torch.equal(inside.running_var, torch.ones(3))  # buffers are computed for real
    assert not elsewhere["module"].weight.is_meta and not after.weight.is_meta


def test_large_finite_weights_load_and_mixed_infinities_are_refused(tiny_checkpoint, tmp_path):
    """The finiteness check sums each tensor first; a sum that overflows must not refuse finite weights."""
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "big")
    state = load_file(str(ckpt / "model.safetensors"))
    state["classifier.0.weight"] = torch.full_like(state["classifier.0.weight"], 3e38)  # the sum is inf
    save_file(state, str(ckpt / "model.safetensors"))
    loaded = GiaMicForEmotionRecognition.from_pretrained(ckpt)
    assert torch.equal(loaded.classifier[0].weight, state["classifier.0.weight"])
    state["classifier.0.weight"][0, :2] = torch.tensor([float("inf"), float("-inf")])  # the sum is NaN
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"NaN or Inf values, refused: classifier\.0\.weight"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_loaded_weights_do_not_read_the_file_afterwards(tiny_checkpoint, tmp_path):
    """Assigned tensors own their memory: safetensors maps the file, and a truncated mapping kills the process."""
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path / "c")
    code = ("import sys, torch\n"
            "from gia_mic import GiaMicForEmotionRecognition\n"
            "model = GiaMicForEmotionRecognition.from_pretrained(sys.argv[1])\n"
            "open(sys.argv[1] + '/model.safetensors', 'wb').close()  # truncated in place\n"
            "print(sum(float(p.double().sum()) for p in model.parameters()))\n")
    done = subprocess.run([sys.executable, "-c", code, str(ckpt)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
