"""The config: validation, presets, JSON round trip, unknown fields."""

from __future__ import annotations

import json

import pytest

from gia_mic import ConfigError, GiaMicConfig, normalize_modalities


@pytest.mark.parametrize("preset", ["paper", "base", "tiny"])
def test_presets_load_and_round_trip(preset, tmp_path):
    cfg = GiaMicConfig.from_preset(preset)
    cfg.to_json_file(tmp_path / "config.json")
    again = GiaMicConfig.from_json_file(tmp_path / "config.json")
    assert again == cfg
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict()


def test_paper_preset_is_the_spec():
    cfg = GiaMicConfig.from_preset("paper")
    assert cfg.video_encoder == "openai/clip-vit-large-patch14"
    assert cfg.audio_encoder == "microsoft/wavlm-large"
    assert cfg.text_encoder == "FacebookAI/roberta-base"
    assert (cfg.hidden_size, cfg.num_heads, cfg.num_frames, cfg.mic_weight) == (768, 8, 8, 0.1)
    assert (cfg.gate_pool_kernel, cfg.mig_stride, cfg.sample_rate) == (3, 2, 16000)
    assert cfg.freeze_video_encoder and cfg.freeze_text_encoder and not cfg.freeze_audio_encoder
    assert cfg.labels == ["neutral", "happy", "angry", "sad"]


def test_unknown_field_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config field\(s\): 'mic_wieght' \(did you mean 'mic_weight'\?\)"):
        GiaMicConfig.from_dict({"mic_wieght": 0.2})


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available presets are .*tiny"):
        GiaMicConfig.from_preset("huge")


@pytest.mark.parametrize("field,value,message", [
    ("hidden_size", 30, "divisible by num_heads"),
    ("hidden_size", -8, "hidden_size: must be a positive integer"),
    ("labels", ["a"], "at least 2 classes"),
    ("labels", ["a", "a"], "duplicates"),
    ("gate_pool_kernel", 2, "must be odd"),
    ("dropout", 1.5, r"dropout: must be in \[0, 1\)"),
    ("mic_weight", -1, "mic_weight: must be >= 0"),
    ("modalities", [], "modality set is empty"),
    ("modalities", ["smell"], "unknown modality 'smell'"),
    ("min_audio_seconds", 40.0, "min_audio_seconds"),
    ("text_encoder", None, "text_encoder: the model uses text"),
])
def test_bad_values_get_clear_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        GiaMicConfig(**{field: value})


def test_bad_json_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        GiaMicConfig.from_json_file(tmp_path / "config.json")
    with pytest.raises(ConfigError, match="config file not found"):
        GiaMicConfig.from_json_file(tmp_path / "nope.json")


def test_modality_names_and_aliases():
    assert normalize_modalities("text,speech") == ("audio", "text")
    assert normalize_modalities(["VIDEO", " audio "]) == ("video", "audio")
    with pytest.raises(ConfigError, match="empty"):
        normalize_modalities(" , ")
