"""Several processes on CPU (gloo): torchrun / accelerate launch training and ``gia-mic evaluate``.

The two-process runs use the tiny preset; ``one_process`` trains the same config in this process.
Equality with one process holds where splitting a batch changes no sample's output and no loss
weighting: every dropout off (the WavLM audio encoder's own too) and ``mic_weight=0`` (L_MIR is a
mean over the batch's valid tokens, so two half batches weigh them differently: the usual
data-parallel approximation, not tested for equality).
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from gia_mic.modeling import GiaMicForEmotionRecognition
from tests.clips import make_clip
from train.config import TrainConfig
from train.state import trainable_state

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train" / "configs" / "tiny.yaml"
WEIGHT_TOLERANCE = 2e-5  # fp32, weights ~0.2; measured max |Δw| 2.4e-6 (summation order, through Adam)


def _exact_config() -> list[str]:
    audio = json.loads((ROOT / "gia_mic" / "presets" / "tiny.json").read_text())["encoder_configs"]["audio"]
    audio.update(hidden_dropout=0, attention_dropout=0, activation_dropout=0, feat_proj_dropout=0, final_dropout=0)
    return ["data.synthetic_samples=24", "data.synthetic_speakers=6", "data.synthetic_seconds=0.4",
            "optim.batch_size=4", "optim.max_epochs=2", "optim.patience=0", "progress=false",
            "model.dropout=0", "model.classifier_dropout=0", "model.modality_dropout=0", "model.mic_weight=0",
            f"model.encoder_configs={json.dumps({'audio': audio})}"]


SETTINGS = _exact_config()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU")
    env = {k: v for k, v in os.environ.items() if k not in launch}
    return {**env, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2`` on 127.0.0.1 and a free port."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = torchrun("-m", "train", "--config", str(TINY), "--output-dir", str(out),
                    *[x for item in SETTINGS for x in ("--set", item)], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    from train.run import run_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("one") / "run"
        run_training(TrainConfig.load(TINY, SETTINGS), out)
    finally:
        torch.set_num_threads(threads)
    return out


def test_each_rank_trains_on_half_of_every_batch(two_processes):
    out, proc = two_processes
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and results["per_process_batch_size"] == 2  # global batch 4
    history = json.loads((out / "fold_result.json").read_text())["history"]
    n_train = results["folds"][0]["n_train"]
    assert n_train == 16
    assert [h["train_samples"] for h in history] == [[8, 8], [8, 8]]  # each rank: half the samples, 4 steps
    assert proc.stdout.count("results: ") == 1  # the summary is printed by rank 0 only
    assert proc.stderr.count("fold 0 epoch 2:") == 1  # progress is logged by rank 0 only


def _key_bias(name: str, value: torch.Tensor) -> slice:
    """The key half of an attention's ``to_kv.bias`` (``gia_mic.modules.MaskedAttention``), else nothing."""
    return slice(0, value.shape[0] // 2) if name.endswith("attn.to_kv.bias") else slice(0, 0)


def test_two_processes_train_the_weights_of_one(two_processes, one_process):
    """Equal weights, except the attention key biases: softmax ignores a shift of every key score,
    so their gradient is zero in exact arithmetic, and Adam scales its float noise into steps of
    up to ``lr`` (measured: 6e-5 after 8 steps); the outputs do not depend on them."""
    out, _ = two_processes
    final = "checkpoints/epoch-0002/model.safetensors"
    one, two = load_file(str(one_process / final)), load_file(str(out / final))
    assert one.keys() == two.keys()
    for k in one:
        one[k][_key_bias(k, one[k])] = two[k][_key_bias(k, two[k])] = 0
    delta = max(float((one[k] - two[k]).abs().max()) for k in one)
    cfg = TrainConfig.load(TINY, SETTINGS)
    set_seed(cfg.seed)  # the initial weights, as FoldTrainer builds them
    start = trainable_state(GiaMicForEmotionRecognition.from_config(cfg.model))
    moved = max(float((one[k] - start[k]).abs().max()) for k in one)
    print(f"max |w_2proc - w_1proc| = {delta:.3g} (tolerance {WEIGHT_TOLERANCE}); training moved them {moved:.3g}")
    assert delta <= WEIGHT_TOLERANCE < 1e-3 < moved
    h1, h2 = (json.loads((d / "fold_result.json").read_text())["history"] for d in (one_process, out))
    for a, b in zip(h1, h2, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6)  # the loss of the global batches
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-6)  # the same function
        assert (a["val_ua"], a["val_wa"]) == (b["val_ua"], b["val_wa"])


def test_the_checkpoint_holds_every_ranks_random_state(two_processes):
    out, _ = two_processes
    checkpoint = out / "checkpoints" / "epoch-0002"
    assert {p.name for p in checkpoint.glob("rng-*")} == {"rng-0.safetensors", "rng-0.json", "rng-1.safetensors",
                                                          "rng-1.json"}
    assert json.loads((checkpoint / "state.json").read_text())["world_size"] == 2
    assert not list((out / "checkpoints").glob(".*partial"))


@pytest.mark.parametrize("flags,world", [(["--multi_gpu"], 2), (["--cpu"], 1)])
def test_accelerate_launch(flags, world, tmp_path):
    """``--multi_gpu`` without GPUs: gloo, world 2; ``--cpu``: accelerate starts one process, and says so."""
    probe = tmp_path / "probe.py"
    probe.write_text("import logging, torch\nfrom train.distributed import make_accelerator\n"
                     "logging.basicConfig(level=logging.WARNING)\nacc = make_accelerator()\n"
                     "total = acc.reduce(torch.ones(1), 'sum')\n"
                     "print(f'rank {acc.process_index} world {acc.num_processes} sum {int(total)}')\n"
                     "acc.end_training()\n")
    command = [sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_processes", "2",
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()), str(probe)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=_env(HF_HOME=str(tmp_path / "hf")))  # no user accelerate config
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = sorted(re.findall(r"rank \d+ world \d+ sum \d+", proc.stdout))  # the ranks' lines may interleave
    assert reports == [f"rank {r} world {world} sum {world}" for r in range(world)]
    assert ("starts a single process" in proc.stderr) == (world == 1)


def test_evaluate_is_sharded_and_gathered(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from gia_mic.cli import main

    labels = ["happy", "sad", "angry", "neutral", "fearful"]
    with open(tmp_path / "m.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "transcript"])
        for i in range(7):
            make_clip(tmp_path / f"c{i}.wav", seconds=0.5 + 0.1 * i, tone_hz=200.0 + 60 * i)
            writer.writerow([f"c{i}.wav", labels[i % 5], f"words number {i}"])
        (tmp_path / "bad.wav").write_text("not audio")
        writer.writerow(["bad.wav", "sad", "broken"])
    args = ["evaluate", "--model", str(tiny_checkpoint), "--manifest", str(tmp_path / "m.csv"), "--json",
            "--asr-model", "none", "--batch-size", "2", "--quiet", "--no-isolation"]
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert main(args) == 1  # one process, in this one; one row fails
    one = json.loads(capsys.readouterr().out)
    proc = torchrun("-m", "gia_mic.cli", *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    two = json.loads(proc.stdout)  # one JSON document: rank 0 prints
    assert two["world_size"] == 2 and two["rows_per_process"] == [3, 4]  # 7 scorable rows, contiguous shares
    assert one["rows_per_process"] == [7]
    for key in ("n", "skipped", "wa", "ua", "macro_f1", "confusion", "errors"):
        assert two[key] == one[key], key
    assert two["n"] == 6 and len(two["errors"]) == 1 and "line 9" in two["errors"][0]


def test_only_the_main_process_writes(tmp_path):
    from train.cache import FeatureCache
    from train.state import save_checkpoint

    key = "ab" * 32
    reader = FeatureCache(tmp_path / "cache", read_only=True)  # a rank other than 0
    reader.put(key, torch.ones(2, 3))
    reader.link_source("cd" * 32, key)
    assert not (tmp_path / "cache").exists()
    FeatureCache(tmp_path / "cache").put(key, torch.ones(2, 3))
    entry = tmp_path / "cache" / key[:2] / f"{key}.safetensors"
    entry.write_bytes(entry.read_bytes()[:-4])  # corrupt: the reader recomputes, but leaves the file to rank 0
    assert reader.get(key) is None and entry.exists()

    def refuse(_staging):
        raise AssertionError("only the main process writes the checkpoint")

    barriers = []
    save_checkpoint(tmp_path / "ckpt", "epoch-0001", is_main=False, rng=[], barrier=lambda: barriers.append(1),
                    write_main=refuse)
    assert not (tmp_path / "ckpt").exists() and barriers == [1]


def test_evaluation_shares_are_contiguous_and_complete():
    from gia_mic.distributed import Shards

    items = list(range(7))
    shares = []
    for rank in range(3):
        shards = Shards()  # no launcher: a world of one, then told it is one of three
        shards.rank, shards.world = rank, 3
        shares.append(shards.share(items))
    assert shares == [[0, 1], [2, 3], [4, 5, 6]]
    assert Shards().share(items) == items and Shards().gather("x") == ["x"]


def test_a_two_process_run_resumes_on_one(two_processes, tmp_path, caplog):
    import shutil

    from train.run import run_training

    out = tmp_path / "run"
    shutil.copytree(two_processes[0], out)
    with caplog.at_level("WARNING", logger="train.loop"):
        summary = run_training(TrainConfig.load(TINY, [*SETTINGS, "optim.max_epochs=3"]), out, resume=True)
    assert "written by 2 process(es), resuming with 1" in caplog.text
    assert summary["world_size"] == 1 and summary["folds"][0]["epochs"] == 3
    history = json.loads((out / "fold_result.json").read_text())["history"]
    assert [h["train_samples"] for h in history] == [[8, 8], [8, 8], [16]]
