"""The training config: YAML presets, typed dotted overrides, clear errors, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gia_mic.configuration import ConfigError, GiaMicConfig
from train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def test_tiny_preset_contains_the_model_config():
    cfg = TrainConfig.load(CONFIGS / "tiny.yaml")
    assert isinstance(cfg.model, GiaMicConfig)
    assert cfg.model.hidden_size == GiaMicConfig.from_preset("tiny").hidden_size
    assert cfg.model.modality_dropout == pytest.approx(0.1)  # the YAML's override of the preset
    assert cfg.data.source == "synthetic"


@pytest.mark.parametrize("name", ["iemocap", "ravdess", "meld"])
def test_corpus_presets_load(name):
    cfg = TrainConfig.load(CONFIGS / f"{name}.yaml", ["data.root=/somewhere"])
    assert cfg.model.labels == ["neutral", "happy", "angry", "sad"]
    if name == "iemocap":
        assert cfg.optim.lr == pytest.approx(1e-5) and cfg.data.iemocap_sessions == [1, 2, 3, 4, 5]
        assert cfg.model.video_encoder == "openai/clip-vit-large-patch14"


def test_iemocap_needs_its_root():
    with pytest.raises(ConfigError, match="data.root"):
        TrainConfig.load(CONFIGS / "iemocap.yaml")


def test_overrides_are_typed():
    cfg = TrainConfig.load(CONFIGS / "tiny.yaml", ["optim.lr=1e-4", "model.mic_weight=0", "model.use_msr=false",
                                                   "data.folds=2", "optim.betas=[0.8, 0.9]", "stop_after_epochs=2",
                                                   "data.label_map.calm=neutral"])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.model.mic_weight == 0.0 and cfg.model.use_msr is False
    assert cfg.data.folds == ["2"] and cfg.optim.betas == [0.8, 0.9] and cfg.stop_after_epochs == 2
    assert cfg.data.label_map == {"calm": "neutral"}


@pytest.mark.parametrize("override, names", [
    ("optim.lrr=1", ["optim.lrr", "optim.lr"]),
    ("model.hidden_sise=8", ["model.hidden_sise", "hidden_size"]),
    ("colour=red", ["colour"]),
    ("optim.batch_size=many", ["optim.batch_size"]),
    ("optim.batch_size=2.5", ["optim.batch_size"]),
    ("optim.lr=-1", ["optim.lr"]),
    ("model.use_mir=perhaps", ["model.use_mir"]),
    ("data.source=ftp", ["data.source"]),
    ("data.label_map.calm=relaxed", ["data.label_map"]),
    ("model.hidden_size=30", ["hidden_size", "num_heads"]),
    ("optim.lr", ["key=value"]),
    ("optim.lr.x=1", ["optim.lr"]),
])
def test_bad_values_name_the_key(override, names):
    with pytest.raises(ConfigError) as err:
        TrainConfig.load(CONFIGS / "tiny.yaml", [override])
    for name in names:
        assert name in str(err.value)


def test_saved_config_round_trips(tmp_path):
    cfg = TrainConfig.load(CONFIGS / "tiny.yaml", ["optim.lr=3e-4", "model.use_mir=false"])
    cfg.save(tmp_path / "train_config.yaml")
    raw = yaml.safe_load((tmp_path / "train_config.yaml").read_text())
    assert "preset" not in raw["model"] and raw["model"]["hidden_size"] == cfg.model.hidden_size
    assert TrainConfig.load(tmp_path / "train_config.yaml").to_dict() == cfg.to_dict()


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        TrainConfig.load(tmp_path / "bad.yaml")
