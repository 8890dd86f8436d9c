r"""Exports the embedded default ``checkpoints/gia-mic-lite`` from a ``train/configs/lite.yaml`` run.

    python -m train.prepare lite --data-dir ../shared/data --out data/lite
    python -m train --config train/configs/lite.yaml --output-dir runs/lite
    python -m train.ablate --config train/configs/lite.yaml --output-dir runs/lite-ablate \
        --set optim.max_epochs=3 --set optim.patience=0     # 4 variants on a 3-epoch budget each
    python -m train.lite --run runs/lite --ablations runs/lite-ablate --data data/lite --out checkpoints/gia-mic-lite

The export stores the weights compactly (the text encoder's word-embedding table int8 with
per-row scales, the rest fp16; loading restores float32), then measures the *exported* checkpoint with
``gia-mic evaluate`` (RAVDESS actors 17-20 with speech + transcript, speech only and transcript
only; MELD dev transcripts), times a 3-s clip end to end, and renders the model card with
``hub_card``. ``make lite DATA=../shared/data`` runs all of it.
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
from train.prepare import CREMAD_EMOTIONS, FOUR_CLASS

SPEECH_ID, TEXT_ID = "openai/whisper-tiny.en", "sentence-transformers/all-MiniLM-L6-v2"
EVALUATIONS = (  # (manifest, modalities, data name)
    ("ravdess_val.csv", "audio,text", "RAVDESS actors 17-20"),
    ("ravdess_val.csv", "audio", "RAVDESS actors 17-20"),
    ("ravdess_val.csv", "text", "RAVDESS actors 17-20"),
    ("meld_dev.csv", "text", "MELD dev"),
)


def write_eval_manifests(data_dir: Path) -> None:
    """Splits ``lite.csv``'s validation rows into one ``path,label,transcript`` CSV per corpus."""
    with open(data_dir / "lite.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "val"]
    for corpus, name in (("ravdess", "ravdess_val.csv"), ("meld", "meld_dev.csv")):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["path", "label", "transcript"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r for r in rows if r["corpus"] == corpus)
        atomic_write_text(data_dir / name, buffer.getvalue())


def export(run_dir: Path, out: Path) -> None:
    """Saves the run's best model compactly, with the encoders' public ids recorded."""
    model = GiaMicForEmotionRecognition.from_pretrained(run_dir / "best")
    # The encoders are built from the configs carried in config.json; the ids say where they came from.
    model.config.audio_encoder, model.config.text_encoder = SPEECH_ID, TEXT_ID
    model.save_pretrained(out, dtype=torch.float16, quantize="int8")


def evaluate(model_dir: Path, data_dir: Path) -> list[dict[str, Any]]:
    """Runs ``gia-mic evaluate`` on each evaluation set; returns the table rows."""
    from gia_mic.cli import main as cli

    rows = []
    for manifest, modalities, name in EVALUATIONS:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = cli(["evaluate", "--model", str(model_dir), "--manifest", str(data_dir / manifest), "--json",
                        "--allow-outside-root",  # our own manifests: absolute paths into the corpora
                        "--modalities", modalities, "--asr-model", "none", "--batch-size", "16", "--quiet"])
        if code != 0:
            raise RuntimeError(f"gia-mic evaluate failed on {manifest} ({modalities})")
        result = json.loads(buffer.getvalue())
        rows.append({"data": name, "modalities": modalities.replace("audio", "speech").replace(",", " + "),
                     "n": result["n"], "wa": result["wa"], "ua": result["ua"], "macro_f1": result["macro_f1"],
                     "per_class_recall": result["per_class_recall"], "confusion": result["confusion"]})
        print(f"  {name:<22} {rows[-1]['modalities']:<15} n={result['n']:<5} WA {result['wa']:.4f}  "
              f"UA {result['ua']:.4f}  F1 {result['macro_f1']:.4f}")
    return rows


def latency(model_dir: Path, data_dir: Path, repeats: int = 10) -> dict[str, float]:
    """Median end-to-end time of one ~3-s RAVDESS clip with its transcript, and with Whisper tiny.en ASR."""
    from gia_mic.pipeline import EmotionRecognizer

    with open(data_dir / "ravdess_val.csv", newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
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


def load_ablations(directory: Path) -> dict[str, Any] | None:
    """``ablations.json``, or (while ``train.ablate`` still runs) the variants that have finished."""
    if (directory / "ablations.json").is_file():
        return json.loads((directory / "ablations.json").read_text())
    from train.ablate import VARIANTS, ablation_entry

    found = {name: ablation_entry(name, json.loads((directory / name / "results.json").read_text()))
             for name in VARIANTS if (directory / name / "results.json").is_file()}
    return found or None


CARD = {  # the card's values besides the measured ones; its prose is hub_card/templates/gia-mic-lite.md.j2
    "model_name": "gia-mic-lite", "datasets": ["ravdess", "meld"],
    "protocol": "RAVDESS actors 01-16 + MELD train; validation RAVDESS actors 17-20 + MELD dev",
    "license": "other", "license_name": "cc-by-nc-sa-4.0-and-gpl-3.0-derived",
}


def render_card(model_config: dict, run: Path, ablations_dir: Path | None, measured: dict[str, Any]) -> str:
    """The lite card: ``hub_card``'s ``gia-mic-lite.md.j2`` over the run's files and the measured values.

    Args:
        model_config: The exported checkpoint's ``config.json``.
        run: The training run (``train_config.yaml``, ``results.json``).
        ablations_dir: ``python -m train.ablate``'s output dir, if any.
        measured: ``evaluation.json``'s values (``evaluations``, ``latency``, ``size_mb``,
            ``ablations``, ``examples``).
    """
    from hub_card import render_model_card

    train_config = yaml.safe_load((run / "train_config.yaml").read_text())
    results = json.loads((run / "results.json").read_text())
    ablation_epochs = None
    if ablations_dir is not None:
        ablation_cfg = yaml.safe_load((ablations_dir / "full" / "train_config.yaml").read_text())
        ablation_epochs = ablation_cfg["optim"]["max_epochs"]
    fold = results["folds"][0]
    details = {"size_mb": measured["size_mb"], "latency": measured["latency"], "epochs": fold.get("epochs"),
               "best_epoch": fold.get("best_epoch"), "ablation_epochs": ablation_epochs,
               "examples": measured["examples"], "example_transcript": EXAMPLE_TRANSCRIPT}
    extra = {**CARD, "evaluations": measured["evaluations"], "ablations": measured["ablations"], "details": details}
    return render_model_card(model_config, train_config, results, repo_id="gia-mic/gia-mic-lite", extra=extra,
                             template="gia-mic-lite.md.j2")


def main(argv: list[str] | None = None) -> int:
    """``python -m train.lite``."""
    parser = argparse.ArgumentParser(prog="python -m train.lite", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="output dir of the lite training run")
    parser.add_argument("--ablations", help="output dir of `python -m train.ablate` on the lite config")
    parser.add_argument("--data", default="data/lite", help="folder written by `python -m train.prepare lite`")
    parser.add_argument("--out", default="checkpoints/gia-mic-lite")
    parser.add_argument("--card-only", action="store_true",
                        help="keep the exported weights and their evaluation.json; only re-render the card "
                             "(e.g. once the ablations have finished)")
    args = parser.parse_args(argv)
    run, out, data = Path(args.run), Path(args.out), Path(args.data)
    if args.card_only:
        stored = json.loads((out / "evaluation.json").read_text())
        evaluations, timing, size_mb = stored["evaluations"], stored["latency"], stored["size_mb"]
        examples = stored.get("examples") or example_predictions(out)
    else:
        write_eval_manifests(data)
        export(run, out)
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
        print(f"exported {out} ({size_mb:.1f} MB); evaluating the exported checkpoint:")
        evaluations = evaluate(out, data)
        timing = latency(out, data)
        print(f"latency: {timing}")
        examples = example_predictions(out)
    ablations_dir = Path(args.ablations) if args.ablations else None
    measured = {"evaluations": evaluations, "latency": timing, "size_mb": size_mb,
                "ablations": load_ablations(ablations_dir) if ablations_dir else None, "examples": examples}
    model_config = json.loads((out / "config.json").read_text())
    atomic_write_text(out / "README.md", render_card(model_config, run, ablations_dir, measured))
    atomic_write_text(out / "evaluation.json", json.dumps(measured, indent=2))
    print(f"wrote {out}/README.md and evaluation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
