r"""Exports the embedded default ``checkpoints/gia-mic-lite`` from a ``train/configs/lite.yaml`` run.

    python -m train.prepare lite --data-dir ../shared/data --out data/lite
    python -m train --config train/configs/lite.yaml --output-dir runs/lite
    python -m train.ablate --config train/configs/lite.yaml --output-dir runs/lite-ablate \
        --set optim.max_epochs=3 --set optim.patience=0     # 4 variants on a 3-epoch budget each
    python -m train.lite --run runs/lite --ablations runs/lite-ablate --data data/lite --out checkpoints/gia-mic-lite

The export stores the weights compactly (the text encoder's word-embedding table int8 with
per-row scales, the rest fp16; loading restores float32), fits the temperature on the selection
rows (``train.calibrate``; every selection set weighted equally) and stores it in ``config.json``,
then measures the *exported* checkpoint with ``gia-mic evaluate`` on each test set
(``data/lite/test/<corpus>.csv``: RAVDESS actors 17-20 with speech + transcript, speech, transcript;
MELD dev transcripts; the nEMO test speakers with speech, speech + transcript) before and after
the temperature, runs the conflict checks (``train.lite_report``), times a 3-s clip end to end,
scores each finished ablation variant's best checkpoint on the test sets (``--ablations``), writes
``evaluation.json`` (every figure with its split) and renders the card with ``hub_card``.
``--card-only`` re-renders the card from ``evaluation.json``. ``make lite DATA=../shared/data`` runs all of it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from gia_mic import GiaMicForEmotionRecognition
from gia_mic.utils import atomic_write_text
from train.lite_report import (
    ABLATION_TEST_SETS,
    FORMAT,
    SELECTION_SETS,
    TEST_SETS,
    ablation_record,
    ablation_table,
    check_format,
    conflict_checks,
    evaluation_row,
    find,
    modality_table,
    previous_meld_text_ua,
    split_name,
    targets,
)
from train.prepare import CREMAD_EMOTIONS, FOUR_CLASS

SPEECH_ID, TEXT_ID = "openai/whisper-base", "sentence-transformers/all-MiniLM-L6-v2"
CHECKS_MANIFEST = "checks/ravdess_neutral_text.csv"


def export(run_dir: Path, out: Path) -> None:
    """Saves the run's best model compactly, with the encoders' public ids recorded (temperature 1)."""
    model = GiaMicForEmotionRecognition.from_pretrained(run_dir / "best")
    # The encoders are built from the configs carried in config.json; the ids say where they came from.
    model.config.audio_encoder, model.config.text_encoder = SPEECH_ID, TEXT_ID
    model.save_pretrained(out, dtype=torch.float16, quantize="int8")


def gia_mic_evaluate(model_dir: Path, manifest: Path, modalities: str) -> dict[str, Any]:
    """``gia-mic evaluate --json`` on one manifest; its result dict."""
    from gia_mic.cli import main as cli

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli(["evaluate", "--model", str(model_dir), "--manifest", str(manifest), "--json",
                    "--allow-outside-root",  # our own manifests: absolute paths into the corpora
                    "--modalities", modalities, "--asr-model", "none", "--batch-size", "16", "--quiet"])
    if code != 0:
        raise RuntimeError(f"gia-mic evaluate failed on {manifest} ({modalities})")
    return json.loads(buffer.getvalue())


def _speakers(manifest: Path) -> list[str]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return sorted({r.get("speaker") or "" for r in csv.DictReader(handle)} - {""})


def measure(model_dir: Path, data_dir: Path,
            sets: tuple[tuple[str, str], ...] = TEST_SETS) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(corpus, modalities, split, result)`` of each of ``sets`` found in ``data_dir/test``."""
    out = []
    for corpus, modalities in sets:
        manifest = data_dir / "test" / f"{corpus}.csv"
        if not manifest.is_file():
            print(f"  (no {manifest}: {corpus} not measured)")
            continue
        result = gia_mic_evaluate(model_dir, manifest, modalities)
        out.append((corpus, modalities, split_name(corpus, "test", _speakers(manifest)), result))
        print(f"  {corpus:<8} {modalities:<11} n={result['n']:<5} WA {result['wa']:.4f}  UA {result['ua']:.4f}  "
              f"F1 {result['macro_f1']:.4f}  ECE {result['ece']:.4f}  NLL {result['nll']:.4f}  (test)")
    return out


def selection_sets(data_dir: Path) -> list[tuple[Path, str]]:
    """``[(selection manifest, modalities)]`` the temperature is fitted on (never a test file)."""
    found = [(data_dir / "selection" / f"{corpus}.csv", modalities) for corpus, modalities in SELECTION_SETS]
    found = [(manifest, modalities) for manifest, modalities in found if manifest.is_file()]
    if not found:
        raise FileNotFoundError(f"no selection manifests in {data_dir / 'selection'} (run `python -m train.prepare lite`)")
    return found


def calibrate_and_measure(out: Path, data: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fits T on the selection split, measures every test set before (T = 1) and after storing it."""
    from train.calibrate import calibration_summary, checkpoint_logits, fit_temperatures, store_temperature

    sets = [checkpoint_logits(out, manifest, modalities) for manifest, modalities in selection_sets(data)]
    temperature, temperatures = fit_temperatures(sets)
    calibration = calibration_summary(sets, temperature, temperatures)
    per_set = ", ".join(f"{k} {v:.4f}" for k, v in temperatures.items())
    print(f"temperatures fitted on the selection split (n={calibration['n']}): {per_set}; other sets "
          f"{temperature:.4f}; ECE {calibration['before']['ece']:.4f} -> {calibration['after']['ece']:.4f} (selection)")
    print("test sets, temperature 1:")
    before = measure(out, data)
    store_temperature(out, temperature, temperatures)
    print("test sets, calibrated:")
    after = measure(out, data)
    rows = [evaluation_row(c, m, result, split, uncalibrated=b[3]) for (c, m, split, result), b in zip(after, before)]
    return calibration, rows


def latency(model_dir: Path, data_dir: Path, repeats: int = 10) -> dict[str, float]:
    """Median end-to-end time of one ~3-s RAVDESS clip with its transcript, and with Whisper tiny.en ASR."""
    from gia_mic.pipeline import EmotionRecognizer

    manifest = data_dir / "test" / "ravdess.csv"
    with open(manifest, newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    row["path"] = str(manifest.parent / (row.get("path") or row["audio"]))  # relative paths: to the CSV's folder
    out: dict[str, float] = {"threads": torch.get_num_threads()}
    for key, asr, text in (("no_asr_ms", None, row["transcript"]), ("with_asr_ms", "tiny.en", None)):
        rec = EmotionRecognizer.from_pretrained(model_dir, asr_model=asr, device="cpu")
        rec(audio=row["path"], text=text)  # warm-up (and the lazy Whisper load)
        times = []
        for _ in range(repeats if asr is None else 3):
            start = time.perf_counter()
            rec(audio=row["path"], text=text)
            times.append((time.perf_counter() - start) * 1000.0)
        out[key] = statistics.median(times)
    return out


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_TRANSCRIPT = "Don't forget a jacket."


def example_predictions(model_dir: Path, examples: Path = EXAMPLES) -> list[dict[str, str]]:
    """The checkpoint's labels on the shipped CREMA-D clips: speech only, and speech + their transcript."""
    from gia_mic.pipeline import EmotionRecognizer

    rec = EmotionRecognizer.from_pretrained(model_dir, asr_model=None, device="cpu")
    rows = []
    for clip in sorted(examples.glob("*.mp4")):
        emotion = CREMAD_EMOTIONS.get(clip.stem.split("_")[2], clip.stem)
        rows.append({"clip": clip.name, "true": FOUR_CLASS.get(emotion, emotion),  # a model label where there is one
                     "speech": rec(video=clip, modalities=["audio"]).label,
                     "speech_text": rec(video=clip, text=EXAMPLE_TRANSCRIPT).label})
    return rows


def measure_ablations(directory: Path, data: Path) -> dict[str, Any] | None:
    """Each finished ``train.ablate`` variant's best checkpoint scored on the test sets (``ABLATION_TEST_SETS``).

    Each variant chose its epoch on the selection split, as the full model did, so only test figures
    compare them honestly. No temperature: it changes no label, and UA is all the table shows.
    Variants still running (no ``results.json`` yet) are left out.
    """
    from train.ablate import VARIANTS

    found = {}
    for name, (title, _, paper_delta_wa) in VARIANTS.items():
        run = directory / name
        if not (run / "results.json").is_file() or not (run / "best" / "config.json").is_file():
            print(f"  (ablation {name}: not finished in {run}; left out)")
            continue
        print(f"ablation {name} ({title}):")
        rows = [evaluation_row(c, m, result, split) for c, m, split, result in measure(run / "best", data,
                                                                                        ABLATION_TEST_SETS)]
        config = run / "train_config.yaml"
        budget = yaml.safe_load(config.read_text())["optim"]["max_epochs"] if config.is_file() else None
        found[name] = ablation_record(title, paper_delta_wa, rows, budget)
    return found or None


CARD = {  # the card's values besides the measured ones; its prose is hub_card/templates/gia-mic-lite.md.j2
    "model_name": "gia-mic-lite", "datasets": ["ravdess", "meld", "nemo"],
    "protocol": "three roles, disjoint by speaker (MELD: by dialogue): train on RAVDESS actors 01-14, MELD train "
                "less held-out dialogues and the nEMO training speakers; select (epoch, recipe, temperature) on "
                "RAVDESS actors 15-16, the held-out MELD train dialogues and the nEMO selection speakers; test on "
                "RAVDESS actors 17-20, MELD dev and the nEMO test speakers",
    "results_split": "selection",
    "license": "other", "license_name": "cc-by-nc-sa-4.0-and-gpl-3.0-derived",
}


def text_finetune_record(run: Path) -> dict[str, Any] | None:
    """``finetune.json`` of the run's text encoder (``train.finetune_text``), or ``None`` if it was not fine-tuned."""
    encoder = (yaml.safe_load((run / "train_config.yaml").read_text()).get("model") or {}).get("text_encoder")
    record = Path(str(encoder)) / "finetune.json" if encoder else None
    return json.loads(record.read_text()) if record is not None and record.is_file() else None


def render_card(model_config: dict, run: Path, measured: dict[str, Any]) -> str:
    """The lite card: ``hub_card``'s ``gia-mic-lite.md.j2`` over the run's files and ``evaluation.json``.

    Args:
        model_config: The exported checkpoint's ``config.json``.
        run: The training run (``train_config.yaml``, ``results.json``).
        measured: ``evaluation.json`` (format 2: ``evaluations`` (test rows), ``calibration``,
            ``checks``, ``targets``, ``latency``, ``size_mb``, ``ablations``, ``examples``).
    """
    from hub_card import render_model_card

    train_config = yaml.safe_load((run / "train_config.yaml").read_text())
    results = json.loads((run / "results.json").read_text())
    fold = results["folds"][0]
    details = {"size_mb": measured["size_mb"], "latency": measured["latency"], "epochs": fold.get("epochs"),
               "best_epoch": fold.get("best_epoch"),
               "examples": measured["examples"], "example_transcript": EXAMPLE_TRANSCRIPT,
               "calibration": measured["calibration"], "checks": measured["checks"], "targets": measured["targets"],
               "modality_table": modality_table(measured["evaluations"]),
               "text_finetune": measured.get("text_finetune"),
               "ablations": ablation_table(measured.get("ablations"))}
    datasets = [d for d in CARD["datasets"] if d != "nemo" or find(measured["evaluations"], "nemo", "audio")]
    extra = {**CARD, "datasets": datasets, "evaluations": measured["evaluations"], "details": details}
    return render_model_card(model_config, train_config, results, repo_id="gia-mic/gia-mic-lite", extra=extra,
                             template="gia-mic-lite.md.j2")


def build(run: Path, out: Path, data: Path, ablations_dir: Path | None) -> dict[str, Any]:
    """Exports, calibrates and measures the checkpoint; returns ``evaluation.json``'s values."""
    previous_meld_ua = previous_meld_text_ua(out / "evaluation.json")  # read before the export replaces it
    export(run, out)
    print(f"exported {out}; calibrating on the selection split and evaluating the exported checkpoint:")
    calibration, rows = calibrate_and_measure(out, data)
    checks_manifest = data / CHECKS_MANIFEST
    neutral_text = gia_mic_evaluate(out, checks_manifest, "audio,text") if checks_manifest.is_file() else None
    examples = example_predictions(out)
    labels = json.loads((out / "config.json").read_text())["labels"]
    checks = conflict_checks(rows, examples, labels, neutral_text, previous_meld_ua)
    for name, check in checks.items():
        print(f"  check {name}: {'met' if check['met'] else 'MISSED'} ({check})")
    timing = latency(out, data)
    print(f"latency: {timing}")
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name not in ("README.md",
                                                                                              "evaluation.json")) / 1e6
    return {"format": FORMAT, "temperature": calibration["temperature"], "temperatures": calibration["temperatures"],
            "calibration": calibration,
            "evaluations": rows, "targets": targets(rows), "checks": checks, "latency": timing, "size_mb": size_mb,
            "ablations": measure_ablations(ablations_dir, data) if ablations_dir else None, "ablations_split": "test",
            "examples": examples, "text_finetune": text_finetune_record(run)}


def main(argv: list[str] | None = None) -> int:
    """``python -m train.lite``."""
    parser = argparse.ArgumentParser(prog="python -m train.lite", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="output dir of the lite training run")
    parser.add_argument("--ablations", help="output dir of `python -m train.ablate` on the lite config")
    parser.add_argument("--data", default="data/lite", help="folder written by `python -m train.prepare lite`")
    parser.add_argument("--out", default="checkpoints/gia-mic-lite")
    parser.add_argument("--card-only", action="store_true",
                        help="keep the exported weights and their evaluation.json; only re-render the card "
                             "(with --ablations: once the ablations have finished, score them on the test sets too)")
    args = parser.parse_args(argv)
    run, out, data = Path(args.run), Path(args.out), Path(args.data)
    ablations_dir = Path(args.ablations) if args.ablations else None
    if args.card_only:
        measured = json.loads((out / "evaluation.json").read_text())
        try:
            check_format(measured, out / "evaluation.json")
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if ablations_dir is not None:  # e.g. once the ablations have finished: score them on the test sets
            measured["ablations"], measured["ablations_split"] = measure_ablations(ablations_dir, data), "test"
    else:
        measured = build(run, out, data, ablations_dir)
    model_config = json.loads((out / "config.json").read_text())
    atomic_write_text(out / "evaluation.json", json.dumps(measured, indent=2) + "\n")
    atomic_write_text(out / "README.md", render_card(model_config, run, measured))
    print(f"wrote {out}/README.md and evaluation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
