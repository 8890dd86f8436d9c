"""Waveform augmentation written to files (train.augment) and the lite manifest's augmented rows."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from gia_mic.media import decode_clip
from tests.clips import make_clip
from train.augment import SPEEDS, augment_waveform, augmented_copies, copy_rng, write_wav
from train.prepare import lite_rows, write_augmented, write_manifest


def tone(seconds=1.0, hz=300.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(wave, rate=16000):
    spectrum = np.abs(np.fft.rfft(wave))
    return np.fft.rfftfreq(len(wave), 1 / rate)[int(np.argmax(spectrum))]


@pytest.mark.parametrize("speed", SPEEDS)
def test_speed_perturbation_scales_length_and_pitch(speed):
    wave = tone()
    out = augment_waveform(wave, speed, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == pytest.approx(len(wave) / speed, rel=2e-3)
    assert dominant_hz(out) == pytest.approx(300.0 * speed, rel=0.02)  # tempo and pitch together
    assert np.max(np.abs(out)) <= 0.99 + 1e-6


def test_copies_are_deterministic_and_distinct():
    wave = tone()
    a = augment_waveform(wave, 1.05, copy_rng("clip-1", 1, seed=0))
    b = augment_waveform(wave, 1.05, copy_rng("clip-1", 1, seed=0))
    c = augment_waveform(wave, 1.05, copy_rng("clip-1", 2, seed=0))
    d = augment_waveform(wave, 1.05, copy_rng("clip-2", 1, seed=0))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, d)


@pytest.mark.parametrize("wave,speed,message", [
    (np.zeros((2, 100), np.float32), 1.0, "mono"),
    (np.zeros(0, np.float32), 1.0, "non-empty"),
    (np.zeros(100, np.float32), 3.0, "outside"),
])
def test_bad_augment_input_is_named(wave, speed, message):
    with pytest.raises(ValueError, match=message):
        augment_waveform(wave, speed, np.random.default_rng(0))


def test_silence_stays_silent():
    out = augment_waveform(np.zeros(1600, np.float32), 1.1, np.random.default_rng(0))
    assert not np.any(out)


def test_write_wav_round_trips_through_the_decoding_path(tmp_path):
    wave = tone(0.5)
    path = write_wav(tmp_path / "sub" / "x.wav", wave)
    decoded = decode_clip(path, num_frames=1).audio
    np.testing.assert_allclose(decoded[: len(wave)], wave, atol=2e-4)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.wav"]  # no temporary left


def test_augmented_copies_write_once_and_resume(tmp_path):
    source = make_clip(tmp_path / "src.flac", seconds=0.6)
    paths = augmented_copies(source, "src", tmp_path / "aug", 3, seed=0)
    assert [p.name for p in paths] == ["src-a1.wav", "src-a2.wav", "src-a3.wav"]
    first = [p.read_bytes() for p in paths]
    assert len(set(first)) == 3
    paths[1].unlink()
    stamp = paths[0].stat().st_mtime_ns
    augmented_copies(source, "src", tmp_path / "aug", 3, seed=0)
    assert paths[1].read_bytes() == first[1]  # the same copy is rebuilt
    assert paths[0].stat().st_mtime_ns == stamp  # existing copies are kept
    with pytest.raises(ValueError, match="copies must be >= 0"):
        augmented_copies(source, "src", tmp_path / "aug", -1)


def test_lite_rows_list_augmented_copies_and_write_them(tmp_path):
    data = tmp_path / "data"
    (data / "ravdess").mkdir(parents=True)
    (data / "meld").mkdir()
    with open(data / "ravdess" / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "actor", "emotion", "transcript"])
        for actor in (1, 15):
            for i, emotion in enumerate(("neutral", "happy", "angry", "sad")):
                name = f"a{actor}-{emotion}.flac"
                make_clip(data / "ravdess" / name, seconds=0.4, tone_hz=200 + 50 * i)
                w.writerow([name, actor, emotion, "Kids are talking by the door"])
    for name in ("train_sent_emo.csv", "dev_sent_emo.csv"):
        (data / "meld" / name).write_text("Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\nhi,Ross,joy,0,0\n")
    rows, _ = lite_rows(data, augment_dir=tmp_path / "out" / "augmented", copies=2, swaps=0, corpora=("ravdess", "meld"))
    train = [r for r in rows if r["corpus"] == "ravdess" and r["split"] == "train"]
    assert len(train) == 4 * 3  # each training clip as recorded + 2 copies
    assert not any(re.search(r"-a\d+$", r["id"]) for r in rows if r["split"] == "val")  # selection is never augmented
    assert write_augmented(rows) == 4
    assert write_augmented(rows) == 0  # all there: nothing is read again
    for r in train:
        assert decode_clip(r["path"], num_frames=1).audio.size > 0
    write_manifest(rows, tmp_path / "lite.csv")
    header = (tmp_path / "lite.csv").read_text().splitlines()[0]
    assert "augment_source" not in header and header.endswith("weight")


def test_prepare_refuses_negative_copies(tmp_path, capsys):
    from train.prepare import main

    with pytest.raises(SystemExit):
        main(["lite", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--copies", "-1"])
    assert "--copies must be >= 0" in capsys.readouterr().err
