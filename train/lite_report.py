"""What ``train.lite`` reports about the embedded default: test rows, conflict checks, targets, ``evaluation.json``.

Pure functions over ``gia-mic evaluate --json`` results; nothing here runs a model. Every figure
carries its split: ``test`` (speakers and sentences used neither for training nor for choosing the
epoch, the recipe or the temperature) or ``selection`` (the split that chose them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 2
"""``evaluation.json``'s format: 2 names the split of every figure (1, before issue 11, did not)."""


@dataclass(frozen=True)
class Corpus:
    """A corpus's names in the card: ``name`` and the speakers of each role."""

    id: str
    name: str
    test: str
    selection: str


CORPORA = {
    "ravdess": Corpus("ravdess", "RAVDESS", "actors 17-20", "actors 15-16"),
    "meld": Corpus("meld", "MELD", "dev", "held-out train dialogues"),
    "nemo": Corpus("nemo", "nEMO", "held-out speakers", "held-out speakers"),
}

TEST_SETS = (  # (corpus, modalities): what `gia-mic evaluate` measures on data/lite/test/<corpus>.csv
    ("ravdess", "audio,text"), ("ravdess", "audio"), ("ravdess", "text"),
    ("meld", "text"),
    ("nemo", "audio"), ("nemo", "audio,text"),
)
SELECTION_SETS = (  # (corpus, modalities) the temperature is fitted on, each weighted equally (train.calibrate)
    ("ravdess", "audio,text"), ("ravdess", "audio"), ("meld", "text"), ("nemo", "audio"), ("nemo", "audio,text"),
)  # RAVDESS text alone is left out: its two fixed sentences carry no emotion, so they would only flatten T

ABLATION_TEST_SETS = (("ravdess", "audio,text"), ("nemo", "audio,text"), ("meld", "text"))
"""(corpus, modalities) each ablation variant is scored on: every test corpus once, with all it has."""

TARGETS = {"ravdess_ua": 0.80, "ravdess_sad_recall": 0.65, "meld_ua": 0.58, "ece": 0.08}
CHECK_LIMITS = {"examples_same": 3, "neutral_text_drop": 0.03, "meld_text_drop": 0.02}


def modalities_name(modalities: str) -> str:
    """``"audio,text"`` -> ``"speech + text"`` (the card's names)."""
    return modalities.replace("audio", "speech").replace(",", " + ")


def split_name(corpus: str, role: str = "test", speakers: Sequence[str] = ()) -> str:
    """A split's name in the card and ``model-index``: its role and who, e.g. ``"test: actors 17-20"``."""
    c = CORPORA[corpus]
    who = f"speakers {', '.join(sorted(speakers))}" if speakers and corpus == "nemo" else getattr(c, role)
    return f"{role}: {who}"


def evaluation_row(corpus: str, modalities: str, result: dict[str, Any], split: str,
                   uncalibrated: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``evaluations`` row (``hub_card``'s fields plus recall, confusion and ECE/NLL before calibration).

    Raises:
        ValueError: the calibrated and uncalibrated runs disagree on the rows or the labels (a
            temperature changes no label, so they must agree).
    """
    role, _, who = split.partition(": ")
    row = {"data": f"{CORPORA[corpus].name} {who or role} ({role})", "dataset": corpus, "split": split,
           "modalities": modalities_name(modalities),
           **{k: result[k] for k in ("n", "wa", "ua", "macro_f1", "ece", "nll", "per_class_recall", "confusion")}}
    if uncalibrated is not None:
        if uncalibrated["n"] != result["n"] or uncalibrated["confusion"] != result["confusion"]:
            raise ValueError(f"{corpus} ({modalities}): the temperature changed the labels or the rows scored "
                             f"(n {uncalibrated['n']} -> {result['n']}); it must not")
        row |= {"ece_uncalibrated": uncalibrated["ece"], "nll_uncalibrated": uncalibrated["nll"]}
    return row


def find(rows: Sequence[dict[str, Any]], corpus: str, modalities: str) -> dict[str, Any] | None:
    """The row of ``corpus`` with ``modalities`` (``"audio,text"`` or ``"speech + text"``), if measured."""
    wanted = modalities_name(modalities)
    return next((r for r in rows if r.get("dataset") == corpus and r.get("modalities") == wanted), None)


def previous_meld_text_ua(path: Path) -> float | None:
    """The MELD dev text-only UA check (c) compares with, from the checkpoint's ``evaluation.json``.

    A format-2 file carries the baseline its own check used forward (the checkpoint before issue
    11), so re-exporting never ratchets the baseline down; a format-1 file gives its own figure.
    """
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    baseline = ((stored.get("checks") or {}).get("meld_text") or {}).get("previous_ua")
    if isinstance(baseline, (int, float)):
        return float(baseline)
    rows = stored.get("evaluations") or []
    for row in rows:
        if (row.get("dataset") == "meld" or row.get("data") == "MELD dev") and row.get("modalities") == "text":
            return float(row["ua"])
    return None


def conflict_checks(rows: Sequence[dict[str, Any]], examples: Sequence[dict[str, str]], labels: Sequence[str],
                    neutral_text: dict[str, Any] | None, previous_meld_ua: float | None) -> dict[str, Any]:
    """Issue 11 §2's three checks: speech is not overridden by words that carry no emotion.

    Args:
        rows: The test rows (``evaluation_row``).
        examples: ``[{clip, true, speech, speech_text}]`` on the CREMA-D clips in ``examples/``.
        labels: The model's labels (which example clips are in the task).
        neutral_text: ``gia-mic evaluate --json`` on ``checks/ravdess_neutral_text.csv`` (RAVDESS test
            clips with neutral MELD dev sentences), speech + text; None when not measured.
        previous_meld_ua: The previous checkpoint's MELD dev text-only UA.
    """
    in_class = [e for e in examples if e["true"] in labels]
    same = sum(e["speech"] == e["speech_text"] for e in in_class)
    checks: dict[str, Any] = {"examples": {
        "split": "out of domain: CREMA-D actor 1001 (examples/)", "clips": len(in_class), "same_label": same,
        "needed": CHECK_LIMITS["examples_same"], "met": bool(in_class) and same >= CHECK_LIMITS["examples_same"]}}
    speech = find(rows, "ravdess", "audio")
    if neutral_text is not None and speech is not None:
        drop = speech["ua"] - neutral_text["ua"]
        checks["neutral_text"] = {"split": speech["split"] + " with neutral MELD dev sentences", "n": neutral_text["n"],
                                  "ua": neutral_text["ua"], "speech_ua": speech["ua"], "drop": drop,
                                  "limit": CHECK_LIMITS["neutral_text_drop"],
                                  "met": drop <= CHECK_LIMITS["neutral_text_drop"] + 1e-12}
    meld = find(rows, "meld", "text")
    if meld is not None and previous_meld_ua is not None:
        drop = previous_meld_ua - meld["ua"]
        checks["meld_text"] = {"split": meld["split"], "ua": meld["ua"], "previous_ua": previous_meld_ua, "drop": drop,
                               "limit": CHECK_LIMITS["meld_text_drop"],
                               "met": drop <= CHECK_LIMITS["meld_text_drop"] + 1e-12}
    return checks


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 11's targets, each on a test set, with the measured value and whether it is met."""
    out = []

    def add(name: str, row: dict[str, Any] | None, value: float | None, threshold: float, *, at_most: bool = False):
        if row is None or value is None:
            out.append({"target": name, "split": None, "value": None, "threshold": threshold, "met": None})
            return
        met = value <= threshold if at_most else value >= threshold
        out.append({"target": name, "data": row["data"], "modalities": row["modalities"], "split": row["split"],
                    "value": value, "threshold": threshold, "at_most": at_most, "met": bool(met)})

    ravdess, meld = find(rows, "ravdess", "audio,text"), find(rows, "meld", "text")
    add("RAVDESS UA", ravdess, ravdess and ravdess["ua"], TARGETS["ravdess_ua"])
    add("RAVDESS sad recall", ravdess, ravdess and ravdess["per_class_recall"].get("sad"), TARGETS["ravdess_sad_recall"])
    add("MELD UA", meld, meld and meld["ua"], TARGETS["meld_ua"])
    for row in rows:
        add(f"ECE {row['data']}, {row['modalities']}", row, row.get("ece"), TARGETS["ece"], at_most=True)
    return out


def modality_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The unimodal / bimodal table: per test set, UA with speech, text and speech + text (None: not measured)."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault(row["data"], {"data": row["data"], "split": row["split"], "speech": None, "text": None,
                                               "speech + text": None})
        if row["modalities"] in entry:
            entry[row["modalities"]] = row["ua"]
    return list(table.values())


def check_format(stored: dict[str, Any], path: Path) -> None:
    """Refuses an ``evaluation.json`` whose figures do not name their split (written before format 2)."""
    if stored.get("format") != FORMAT:
        raise ValueError(f"{path} is format {stored.get('format', 1)}, which does not name the split of its figures; "
                         "re-run `python -m train.lite` without --card-only to measure the checkpoint again")


def ablation_record(title: str, paper_delta_wa: float | None, rows: Sequence[dict[str, Any]],
                    max_epochs: int | None = None) -> dict[str, Any]:
    """One variant's ``evaluation.json`` entry from its test rows (``evaluation_row``) and its epoch budget."""
    if not rows:
        raise ValueError(f"ablation {title!r}: no test set was measured")
    keep = ("data", "dataset", "split", "modalities", "n", "wa", "ua", "macro_f1")
    return {"title": title, "paper_delta_wa": paper_delta_wa, "max_epochs": max_epochs,
            "test": [{k: r[k] for k in keep} for r in rows], "mean_ua": sum(r["ua"] for r in rows) / len(rows)}


def ablation_table(ablations: dict[str, dict[str, Any]] | None) -> dict[str, Any] | None:
    """The card's ablation table: a UA column per test set, their mean, and the change against the full model.

    Returns ``{"columns": [{"data", "modalities", "split"}], "rows": [{"title", "ua": [...], "mean_ua",
    "delta", "paper_delta_wa"}], "max_epochs"}``: ``delta`` (points of mean UA) is ``None`` for the full
    model, or when a variant was not measured on the same test sets; ``max_epochs`` is the variants'
    epoch budget (``None`` if they differ). ``None`` when there is nothing to show.
    """
    if not ablations:
        return None
    columns: dict[tuple[str, str], dict[str, str]] = {}
    for entry in ablations.values():
        for r in entry["test"]:
            columns.setdefault((r["dataset"], r["modalities"]),
                               {"data": r["data"], "modalities": r["modalities"], "split": r["split"]})
    keys = list(columns)

    def sets(entry: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted((r["dataset"], r["modalities"]) for r in entry["test"])

    full = ablations.get("full")
    rows = []
    for name, entry in ablations.items():
        by_key = {(r["dataset"], r["modalities"]): r["ua"] for r in entry["test"]}
        comparable = full is not None and name != "full" and sets(entry) == sets(full)
        rows.append({"title": entry["title"], "ua": [by_key.get(k) for k in keys], "mean_ua": entry["mean_ua"],
                     "delta": 100 * (entry["mean_ua"] - full["mean_ua"]) if comparable else None,
                     "paper_delta_wa": entry.get("paper_delta_wa")})
    budgets = {entry.get("max_epochs") for entry in ablations.values()}
    return {"columns": list(columns.values()), "rows": rows, "max_epochs": budgets.pop() if len(budgets) == 1 else None}
