"""Manifest reader, label mapping, speaker-independent folds, raw loading, corpus prep."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from gia_mic.configuration import ConfigError
from tests.clips import make_clip
from tests.conftest import SHARED_DATA
from train.data import Sample, crop_frames, load_raw, make_folds, read_manifest, synthetic_samples

LABELS = ["neutral", "happy", "angry", "sad"]
MAP = {"calm": "neutral", "joy": "happy"}


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_maps_labels_and_drops_the_rest(tmp_path):
    rows = [
        {"path": "clips/a.mp4", "transcript": "hello", "emotion": "calm", "speaker": "s1"},
        {"path": "clips/b.wav", "transcript": "", "emotion": "JOY", "speaker": "s1"},
        {"path": "", "transcript": "only text", "emotion": "sad", "speaker": "s2"},
        {"path": "/abs/c.flac", "transcript": "x", "emotion": "fearful", "speaker": "s2"},
        {"path": "d.mp4", "transcript": "y", "emotion": "fearful", "speaker": "s3"},
    ]
    samples, dropped = read_manifest(_write(tmp_path / "m.csv", rows), labels=LABELS, label_map=MAP)
    assert [s.label for s in samples] == [0, 1, 3]
    assert dropped == {"fearful": 2}
    video_row, audio_row, text_row = samples
    assert video_row.video == video_row.audio == str(tmp_path / "clips" / "a.mp4")  # a video carries its sound
    assert audio_row.video is None and audio_row.audio == str(tmp_path / "clips" / "b.wav") and audio_row.text is None
    assert text_row.video is None and text_row.audio is None and text_row.text == "only text"


def test_manifest_split_and_fold_columns(tmp_path):
    rows = [{"video": f"v{i}.mp4", "audio": f"a{i}.wav", "label": "happy", "speaker": f"s{i % 3}",
             "split": ["train", "dev", "test"][i % 3]} for i in range(9)]
    samples, dropped = read_manifest(_write(tmp_path / "m.csv", rows), labels=LABELS, label_map={}, root="/data")
    assert dropped == {"<split test>": 3}
    assert samples[0].video == "/data/v0.mp4" and samples[0].audio == "/data/a0.wav"
    (fold,) = make_folds(samples, val_fraction=0.5, num_folds=1, seed=0)
    assert len(fold.train) == 3 and len(fold.val) == 3 and {s.split for s in fold.val} == {"val"}
    folded = [Sample(id=str(i), label=0, speaker="x", fold=str(i % 3 + 1)) for i in range(6)]
    folds = make_folds(folded, val_fraction=0.5, num_folds=1, seed=0)
    assert [f.name for f in folds] == ["1", "2", "3"]
    assert all({s.fold for s in f.val} == {f.name} and f.name not in {s.fold for s in f.train} for f in folds)


def test_manifest_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_manifest(tmp_path / "none.csv", labels=LABELS, label_map={})
    bad = _write(tmp_path / "bad.csv", [{"path": "a.wav", "emotion": "sad"}])
    with pytest.raises(ConfigError, match="speaker"):
        read_manifest(bad, labels=LABELS, label_map={})


def test_speaker_independent_split_is_seeded():
    samples = synthetic_samples(count=80, speakers=10, labels=LABELS, seed=0)
    a, b, c = (make_folds(samples, val_fraction=0.2, num_folds=1, seed=s)[0] for s in (1, 1, 2))
    val_speakers = {s.speaker for s in a.val}
    assert len(val_speakers) == 2 and not val_speakers & {s.speaker for s in a.train}
    assert [s.id for s in a.val] == [s.id for s in b.val]
    assert {s.speaker for s in c.val} != val_speakers  # another seed, other speakers (fixed seeds: deterministic)
    folds = make_folds(samples, val_fraction=0.2, num_folds=5, seed=0)
    assert [f.name for f in folds] == ["1", "2", "3", "4", "5"]
    held_out = [s.speaker for f in folds for s in {x.speaker: x for x in f.val}.values()]
    assert sorted(held_out) == sorted({s.speaker for s in samples})  # every speaker validated exactly once
    assert all(not {s.speaker for s in f.val} & {s.speaker for s in f.train} for f in folds)
    with pytest.raises(ConfigError, match="no fold named"):
        make_folds(samples, val_fraction=0.2, num_folds=5, seed=0, only=["9"])


def test_synthetic_corpus_is_balanced_per_speaker():
    samples = synthetic_samples(count=24, speakers=3, labels=LABELS, seed=0)
    for speaker in {s.speaker for s in samples}:
        assert sorted(s.label for s in samples if s.speaker == speaker) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert synthetic_samples(count=24, speakers=3, labels=LABELS, seed=0) == samples


def test_load_raw_decodes_through_the_processor(tmp_path, tiny_model):
    video = make_clip(tmp_path / "v.mp4", seconds=1.0, size=(64, 48))
    wav = make_clip(tmp_path / "a.wav", seconds=0.5)
    sample = Sample(id="x", label=0, speaker="s", video=str(video), audio=str(wav), text="hi there", crop="right")
    raw = load_raw(sample, tiny_model.processor, ["video", "audio", "text"])
    assert raw.frames.shape == (tiny_model.config.num_frames, 48, 32, 3)
    assert raw.audio.shape == (8000,) and raw.text == "hi there"
    only_text = load_raw(sample, tiny_model.processor, ["text"])
    assert only_text.frames is None and only_text.audio is None
    frames = np.arange(2 * 2 * 6 * 3, dtype=np.uint8).reshape(2, 2, 6, 3)
    assert np.array_equal(np.concatenate([crop_frames(frames, "left"), crop_frames(frames, "right")], axis=2), frames)


def test_prepare_writes_readable_manifests(tmp_path):
    from train.prepare import prepare

    if not (SHARED_DATA / "ravdess").is_dir():
        pytest.skip("../shared/data is absent (a fresh clone)")
    path, rows, dropped = prepare("ravdess", SHARED_DATA, tmp_path)
    assert len(rows) + sum(dropped.values()) == 1200 and set(dropped) == {"fearful", "disgust", "surprised"}
    split = {int(r["speaker"][5:]): r["split"] for r in rows}
    assert [split[a] for a in range(1, 21)] == ["train"] * 14 + ["val"] * 2 + ["test"] * 4
    samples, dropped = read_manifest(path, labels=LABELS, label_map={})
    assert len(samples) == len(rows) - 4 * 36 and dropped == {"<split test>": 4 * 36}  # test actors never train
    assert all(s.audio and s.video is None for s in samples)
    path, rows, dropped = prepare("meld", SHARED_DATA, tmp_path)
    assert len(rows) + sum(dropped.values()) == 11098 and {r["path"] for r in rows} == {""}
    samples, _ = read_manifest(path, labels=LABELS, label_map={})
    assert {s.split for s in samples} == {"train", "val"} and all(s.text for s in samples)
    assert {r["split"] for r in rows if r["id"].startswith("meld-dev-")} == {"test"}
    path, rows, dropped = prepare("nemo", SHARED_DATA, tmp_path)
    assert len(rows) == 3076 and sum(dropped.values()) == 4481 - 3076 and set(dropped) == {"fear", "surprised"}
    assert {r["label"] for r in rows} == {"neutral", "happy", "angry", "sad"}
