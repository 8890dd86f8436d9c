"""The command line of ``python -m train`` and ``python -m train.ablate`` (train/cli.py): what runs, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

import train.ablate
import train.run
from train.__main__ import main as train_main

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny.yaml"


@pytest.mark.parametrize("entry, flags, expected", [(train_main, [], "run_training"),
                                                     (train_main, ["--ablations"], "run_ablations"),
                                                     (train.ablate.main, [], "run_ablations")])
def test_each_entry_point_runs_its_own_thing(entry, flags, expected, tmp_path, monkeypatch, capsys):
    calls = []
    summary = {"folds": [], "mean": dict.fromkeys(("wa", "ua", "macro_f1"), 0.5),
               "std": dict.fromkeys(("wa", "ua", "macro_f1"), 0.0)}

    def fake(name):
        def run(cfg, output_dir, *, resume):
            calls.append((name, cfg.optim.lr, Path(output_dir), resume))
            (Path(output_dir) / "ablations.md").parent.mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "ablations.md").write_text("| the table |\n")
            return summary
        return run

    monkeypatch.setattr(train.run, "run_training", fake("run_training"))
    monkeypatch.setattr(train.ablate, "run_ablations", fake("run_ablations"))
    code = entry(["--config", str(TINY), "--output-dir", str(tmp_path), "--set", "optim.lr=0.25", "--resume", *flags])
    assert code == 0 and calls == [(expected, 0.25, tmp_path, True)]
    assert ("the table" in capsys.readouterr().out) == (expected == "run_ablations")


@pytest.mark.parametrize("entry", [train_main, train.ablate.main])
def test_a_bad_config_exits_2_with_one_line(entry, tmp_path, capsys):
    assert entry(["--config", str(tmp_path / "nope.yaml"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nope.yaml" in err[0]
