"""Frozen-feature cache: hits, misses, corrupt entries, atomic writes, keys."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save

from tests.conftest import build_tiny
from train.cache import FeatureCache, encoder_identity, tensor_digest
from train.data import synthetic_samples
from train.features import extract_frozen
from train.step import build_batch


def test_put_get_hit_and_miss(tmp_path):
    cache = FeatureCache(tmp_path)
    features = torch.randn(5, 7)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, features)
    assert torch.equal(cache.get("ab" * 32), features)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.corrupt) == (1, 1, 0)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_checksum", "no_checksum"])
def test_corrupt_entries_are_dropped(tmp_path, damage):
    cache = FeatureCache(tmp_path)
    key = "cd" * 32
    cache.put(key, torch.randn(4, 3))
    path = cache.path(key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    elif damage == "wrong_checksum":  # a valid file whose tensor changed after the checksum was taken
        entry = FeatureCache(tmp_path / "other")
        entry.put(key, torch.randn(4, 3))
        good = entry.path(key).read_bytes()
        from safetensors.torch import load

        tensors = load(good)
        tensors["features"] = tensors["features"] + 1
        path.write_bytes(save(tensors))
    else:
        path.write_bytes(save({"features": torch.randn(4, 3)}))
    assert cache.get(key) is None
    assert cache.stats.corrupt == 1 and not path.exists()


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = "ef" * 32

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.put(key, torch.randn(3, 3))
    monkeypatch.undo()
    assert cache.get(key) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_extraction_uses_and_repairs_the_cache(tmp_path):
    model = build_tiny()
    samples = synthetic_samples(count=6, speakers=2, labels=model.config.labels, seed=0)
    cache = FeatureCache(tmp_path)
    first = extract_frozen(model, samples, cache, batch_size=4, device=torch.device("cpu"), synthetic_seconds=0.3,
                           progress=False)
    assert set(model.frozen_modalities()) == {"video", "text"}
    assert all(set(first[s.id]) == {"video", "text"} for s in samples)
    assert cache.stats.misses == 12 and cache.stats.hits == 0

    files = sorted(tmp_path.rglob("*.safetensors"))
    files[0].write_bytes(b"not a safetensors file")
    again = FeatureCache(tmp_path)
    second = extract_frozen(model, samples, again, batch_size=4, device=torch.device("cpu"), synthetic_seconds=0.3,
                            progress=False)
    assert (again.stats.hits, again.stats.misses, again.stats.corrupt) == (11, 1, 1)
    for s in samples:
        for m in ("video", "text"):
            assert torch.allclose(first[s.id][m], second[s.id][m], atol=1e-5)

    video = first[samples[0].id]["video"]
    assert video.shape == (model.config.num_frames, model.encoders["video"].width)
    batch = build_batch(samples[:3], first, model, synthetic_seconds=0.3)
    assert batch.cached["text"][0].shape[0] == 3 and batch.modality_mask.all()
    assert "audio_values" in batch.inputs  # the fine-tuned speech encoder runs every step


def test_keys_follow_encoder_and_input(tmp_path):
    a, b = build_tiny(seed=0), build_tiny(seed=1)
    cache = FeatureCache(tmp_path)
    ida, idb = encoder_identity(a, "text"), encoder_identity(b, "text")
    assert ida["encoder_config"] == idb["encoder_config"] and ida["weights"] != idb["weights"]  # random weights differ
    x, y = torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4])
    assert cache.key(ida, tensor_digest(x)) != cache.key(idb, tensor_digest(x))
    assert cache.key(ida, tensor_digest(x)) != cache.key(ida, tensor_digest(y))
    assert cache.key(ida, tensor_digest(x)) == cache.key(encoder_identity(a, "text"), tensor_digest(x.clone()))


def test_unchanged_files_are_not_decoded_again(tmp_path, monkeypatch):
    """The source index: same file, window and preprocessing -> cached features without decoding."""
    import dataclasses

    from tests.clips import make_clip
    from train.data import Sample

    model = build_tiny()
    clips = [make_clip(tmp_path / f"c{i}.mp4", seconds=0.5, tone_hz=300 + 100 * i) for i in range(3)]
    samples = [Sample(id=f"s{i}", label=0, speaker="a", video=str(c), audio=str(c), text=f"words {i}")
               for i, c in enumerate(clips)]
    decodes = []
    real = model.processor.decode
    monkeypatch.setattr(model.processor, "decode", lambda path, **kw: decodes.append(str(path)) or real(path, **kw))

    def run(items):
        cache = FeatureCache(tmp_path / "cache")
        return extract_frozen(model, items, cache, batch_size=2, device=torch.device("cpu"), progress=False), cache

    first, _ = run(samples)
    assert len(decodes) == 3
    decodes.clear()
    second, cache = run(samples)
    assert decodes == [] and (cache.stats.hits, cache.stats.misses) == (6, 0)
    for s in samples:
        assert all(torch.equal(first[s.id][m], second[s.id][m]) for m in ("video", "text"))

    make_clip(clips[1], seconds=1.5, tone_hz=400)  # rewritten: new size and mtime
    third, _ = run(samples)
    assert decodes == [str(clips[1])]
    assert not torch.equal(third["s1"]["video"], first["s1"]["video"])
    assert torch.equal(third["s0"]["video"], first["s0"]["video"])

    decodes.clear()
    run([dataclasses.replace(samples[0], start=0.1)])  # another window of the same file
    assert decodes == [str(clips[0])]

    decodes.clear()
    for entry in (tmp_path / "cache").glob("[0-9a-f][0-9a-f]/*.safetensors"):
        entry.unlink()  # entries gone, index left behind: decoded and encoded again
    fourth, cache = run(samples[2:])
    assert decodes == [str(clips[2])] and cache.stats.misses == 2
    assert torch.equal(fourth["s2"]["video"], first["s2"]["video"])


def test_rows_sharing_a_file_are_decoded_once_and_share_features(tmp_path, monkeypatch):
    """train.prepare's swapped rows: one audio file with several transcripts -> one decode, one tensor."""
    from tests.clips import make_clip
    from train.data import Sample

    model = build_tiny()
    clips = [make_clip(tmp_path / f"c{i}.mp4", seconds=0.5, tone_hz=300 + 100 * i) for i in range(3)]
    samples = [Sample(id=f"s{i}-{k}", label=0, speaker="a", video=str(c), audio=str(c), text=f"words {i} {k}")
               for i, c in enumerate(clips) for k in range(3)]
    decodes = []
    real = model.processor.decode
    monkeypatch.setattr(model.processor, "decode", lambda path, **kw: decodes.append(str(path)) or real(path, **kw))
    for attempt in range(2):  # a cold cache, then a warm one
        decodes.clear()
        cache = FeatureCache(tmp_path / "cache")
        out = extract_frozen(model, samples, cache, batch_size=4, device=torch.device("cpu"), progress=False)
        assert decodes == ([str(c) for c in clips] if attempt == 0 else [])
        for i in range(3):
            rows = [out[f"s{i}-{k}"] for k in range(3)]
            assert rows[0]["video"] is rows[1]["video"] is rows[2]["video"]
            assert not torch.equal(rows[0]["text"], rows[1]["text"])
        # each file and each transcript looked up once, not once per row
        assert (cache.stats.hits, cache.stats.misses) == ((0, 3 + 9) if attempt == 0 else (3 + 9, 0))
