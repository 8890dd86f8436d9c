"""``train.publish`` end to end with the real huggingface_hub client against the test Hub server."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from hub_card import check_card
from tests.conftest import HUB_TOKEN, build_tiny
from tests.hub_server import HubServer
from train.publish import PublishError, read_run

UA = {1: 0.61, 2: 0.64, 3: 0.70, 4: 0.66, 5: 0.63}  # selection UA (inside the training sessions): fold 3 is the best
TEST_UA = {1: 0.72, 2: 0.58, 3: 0.65, 4: 0.60, 5: 0.59}  # each fold's held-out session: fold 1 scores best on its own
RETRY = "python -m train.publish"

LOAD = r"""
import json, sys
import numpy as np, torch
from gia_mic import GiaMicForEmotionRecognition
torch.manual_seed(0)
rng = np.random.default_rng(0)
frames = [rng.integers(0, 255, (8, 40, 50, 3), dtype=np.uint8)]
audio = [(rng.standard_normal(16000) * 0.1).astype(np.float32)]
out = {}
for key, source, revision in json.loads(sys.argv[1]):
    model = GiaMicForEmotionRecognition.from_pretrained(source, revision=revision)
    with torch.no_grad():
        out[key] = model(**model.processor(frames=frames, audio=audio, text=["what a day"])).logits.numpy()
np.savez(sys.argv[2], **out)
"""


def png(path: Path) -> None:
    """A valid 1x1 PNG, without importing matplotlib."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def make_run(root: Path, folds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> Path:
    """A fake trainer output: fold_k/best (or best/), results.json, train_config.yaml, PNG plots."""
    model = None
    for k in folds or (0,):
        model = build_tiny(seed=k)
        model.save_pretrained(root / (f"fold_{k}" if k else "") / "best")
    entries = [{"fold": str(k), "wa": UA[k] - 0.01, "ua": UA[k], "macro_f1": UA[k] - 0.02, "epochs": 3,
                "per_class_recall": {label: UA[k] for label in model.config.labels}, "confusion": [[1]],
                "split": "selection", "selection_speakers": ["Ses01F"] if k != 1 else ["Ses02M"],
                "test": {"split": f"test: session {k}", "n": 100 + k, "wa": TEST_UA[k] + 0.01, "ua": TEST_UA[k],
                         "macro_f1": TEST_UA[k] - 0.01}} for k in folds]
    mean = {m: float(np.mean([e[m] for e in entries])) for m in ("wa", "ua", "macro_f1")} if folds else \
        {"wa": 0.6, "ua": 0.62, "macro_f1": 0.59}
    test_mean = {"ua": float(np.mean([TEST_UA[k] for k in folds]))} if folds else {}
    (root / "results.json").write_text(json.dumps({"folds": entries, "mean": mean, "std": {}, "split": "selection",
                                                   "test_mean": test_mean, "test_std": {"ua": 0.05}}))
    train_config = yaml.safe_dump({"model": model.config.to_dict(), "data": {"source": "iemocap"}, "optim": {"lr": 1e-4}})
    for best in root.glob("**/best"):  # like `python -m train`: the config beside every checkpoint too
        (best / "train_config.yaml").write_text(train_config)
    (root / "train_config.yaml").write_text(train_config)
    png(root / "curves.png")
    if folds:
        png(root / "fold_3" / "confusion.png")
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One five-fold run published once; the tests below inspect the result."""
    run = make_run(tmp_path_factory.mktemp("run") / "out")
    before = snapshot(run)
    with HubServer(token=HUB_TOKEN, home=tmp_path_factory.mktemp("hf_home")) as hub:
        proc = hub.run_python(module="train.publish", args=(str(run), "org/emo"))
        assert proc.returncode == 0, proc.stderr
        yield hub, run, proc, before


def test_main_holds_the_best_fold_and_run_files(published):
    hub, run, proc, _ = published
    assert proc.stdout.strip() == f"{hub.endpoint}/org/emo"
    repo = hub.repo("org/emo")
    main = repo.files("main")
    assert {"config.json", "model.safetensors", "README.md", "results.json", "train_config.yaml", "curves.png",
            "fold_3/confusion.png", "tokenizer/tokenizer.json", ".gitattributes"} <= set(main)
    assert main["model.safetensors"] == (run / "fold_3" / "best" / "model.safetensors").read_bytes()
    assert sorted(repo.branches) == ["fold-1", "fold-2", "fold-3", "fold-4", "fold-5", "main"]
    for k in UA:
        files = repo.files(f"fold-{k}")
        assert files["model.safetensors"] == (run / f"fold_{k}" / "best" / "model.safetensors").read_bytes()
        assert "results.json" not in files and "curves.png" not in files  # pruned: only this fold's files
    assert "confusion.png" in repo.files("fold-3")


def test_downloads_give_bit_identical_logits(published, tmp_path):
    hub, run, _, _ = published
    jobs = [["main", "org/emo", None], ["fold3", "org/emo", "fold-3"], ["fold1", "org/emo", "fold-1"],
            ["local3", str(run / "fold_3" / "best"), None], ["local1", str(run / "fold_1" / "best"), None]]
    proc = hub.run_python(LOAD, args=(json.dumps(jobs), str(tmp_path / "logits.npz")), home=tmp_path / "fresh_home")
    assert proc.returncode == 0, proc.stderr
    logits = np.load(tmp_path / "logits.npz")
    assert np.array_equal(logits["main"], logits["local3"])
    assert np.array_equal(logits["fold3"], logits["local3"])
    assert np.array_equal(logits["fold1"], logits["local1"])
    assert not np.array_equal(logits["fold1"], logits["fold3"])


def test_pushed_cards_parse(published):
    hub, _, _, _ = published
    repo = hub.repo("org/emo")
    main = check_card(repo.files("main")["README.md"].decode())
    assert main.data.library_name == "gia-mic" and main.data.license_link == "https://sail.usc.edu/iemocap/"
    # model-index: this checkpoint's own held-out session only (the selection folds chose its epoch; the other
    # sessions were in its training data); main is the best by selection UA, not fold 1 with the best test UA
    assert {(r.dataset_type, r.dataset_split, r.metric_type, r.metric_value) for r in main.data.eval_results
            if r.metric_type == "recall"} == {("iemocap", "test: session 3", "recall", 0.65)}
    assert "This checkpoint is **fold 3**, the fold with the highest selection UA (chosen without looking at any " \
           "test figure)" in main.text
    assert "These are selection figures" in main.text
    assert "| 3 (this checkpoint) | test: session 3 | 103 | 66.00 | 65.00 | 64.00 |" in main.text
    assert "| 1 | test: session 1 | 101 | 73.00 | 72.00 | 71.00 |" in main.text
    assert 'revision="fold-1"' in main.text
    fold2 = check_card(repo.files("fold-2")["README.md"].decode())
    assert "This checkpoint is **fold 2** (revision `fold-2`)" in fold2.text
    assert [r.dataset_split for r in fold2.data.eval_results] == ["test: session 2"] * 3
    assert "--model org/emo --revision fold-2" in fold2.text
    validated = [r for r in hub.requests if r.path == "/api/validate-yaml"]
    assert len(validated) == 6  # main + five branches, each validated by the "Hub"


def test_token_is_sent_as_bearer_and_never_written(published):
    hub, run, proc, before = published
    writes = [r for r in hub.requests if r.method == "POST"]
    assert writes and all(r.headers.get("authorization") == f"Bearer {HUB_TOKEN}" for r in writes)
    assert not any(HUB_TOKEN in r.path or HUB_TOKEN in r.query for r in hub.requests)
    assert HUB_TOKEN not in proc.stdout + proc.stderr
    for root in (run, hub.home):
        for path in root.rglob("*"):
            assert not path.is_file() or HUB_TOKEN.encode() not in path.read_bytes(), path
    assert all(HUB_TOKEN.encode() not in data for data in hub.repo("org/emo").files("main").values())
    assert snapshot(run) == before  # publishing only reads the run


def test_failed_upload_keeps_local_files_and_says_how_to_retry(hub_server, tmp_path):
    run = make_run(tmp_path / "out", folds=())
    before = snapshot(run)
    hub_server.fail(r"/commit/", status=500)
    proc = hub_server.run_python(module="train.publish", args=(str(run), "org/solo"))
    assert proc.returncode == 1
    assert "upload to org/solo failed" in proc.stderr and "500" in proc.stderr
    assert f"{RETRY} {run} org/solo" in proc.stderr and "nothing was published" in proc.stderr
    assert snapshot(run) == before
    assert HUB_TOKEN not in proc.stdout + proc.stderr

    hub_server.failures.clear()  # the Hub is back: the printed command succeeds
    proc = hub_server.run_python(module="train.publish", args=(str(run), "org/solo"))
    assert proc.returncode == 0, proc.stderr
    main = hub_server.repo("org/solo").files("main")
    assert main["model.safetensors"] == (run / "best" / "model.safetensors").read_bytes()
    assert sorted(hub_server.repo("org/solo").branches) == ["main"]
    assert "## Results" in main["README.md"].decode()


def test_unreachable_hub_and_missing_token(hub_server, tmp_path):
    run = tmp_path / "out"
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text(json.dumps(build_tiny().config.to_dict()))
    with HubServer() as gone:
        closed = gone.endpoint  # nothing listens there once this block ends
    proc = hub_server.run_python(module="train.publish", args=(str(run), "org/x"), endpoint=closed)
    assert proc.returncode == 1 and "ConnectError" in proc.stderr and f"{RETRY} {run} org/x" in proc.stderr
    proc = hub_server.run_python(module="train.publish", args=(str(run), "org/x"), token="")
    assert proc.returncode == 1 and "no Hugging Face token" in proc.stderr and "hf auth login" in proc.stderr
    assert not hub_server.repos


def test_read_run_picks_the_best_fold_and_explains_gaps(tmp_path):
    for k in (1, 2):
        (tmp_path / f"fold_{k}" / "best").mkdir(parents=True)
        (tmp_path / f"fold_{k}" / "best" / "config.json").write_text("{}")
    with pytest.raises(PublishError, match=r"no UA for fold\(s\) \['1', '2'\]"):
        read_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"folds": [{"fold": "1", "ua": 0.7}, {"fold": "2", "ua": 0.7}]}))
    assert read_run(tmp_path).best == "1"  # a tie goes to the first fold
    (tmp_path / "results.json").write_text(json.dumps({"folds": [
        {"fold": "1", "ua": 0.6, "test": {"ua": 0.9}}, {"fold": "2", "ua": 0.7, "test": {"ua": 0.5}}]}))
    assert read_run(tmp_path).best == "2"  # by selection UA, never by a test figure
    with pytest.raises(PublishError, match="expected best/ or fold_k/best/"):
        read_run(tmp_path / "fold_1" / "best")
