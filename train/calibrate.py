r"""Temperature scaling: fits the checkpoint's ``temperature`` on the selection split, never on test data.

    python -m train.calibrate --model checkpoints/gia-mic-lite --selection data/lite/selection/ravdess.csv:audio,text \
        --selection data/lite/selection/meld.csv:text [--write]

Scores are ``softmax(logits / T)`` with one temperature per modality set (``config.temperatures``,
e.g. speech + text, speech, text) and a global one (``config.temperature``) for any set the
selection data does not cover. Each T is chosen to minimise the negative log-likelihood of its
selection rows (Guo et al., 2017), with every selection set weighted equally: the test targets
are per test set, so a large corpus (MELD's dialogue lines) must not decide the temperature of a
small one (RAVDESS's two selection actors). Per modality set, because how over-confident the
model is depends on what it heard: the speech rows need a larger T than MELD's text rows, and
one shared T over-softens the text (measured on the lite model: MELD text ECE 0.06 -> 0.12). A
bounded 1-D search on log T (scipy's Brent) is enough: the NLL is convex in 1/T. ``--write``
stores the temperatures in the checkpoint's ``config.json``; ``train.lite`` calls the same functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gia_mic.configuration import modality_set_key
from gia_mic.errors import USER_ERRORS
from gia_mic.metrics import calibration_report
from gia_mic.utils import atomic_write_text

logger = logging.getLogger(__name__)

LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
"""The search interval of log T; a fit that ends on a bound is refused (the data cannot place T)."""


class CalibrationError(ValueError):
    """The selection data cannot fit a temperature; the message says why, in one line."""


@dataclass
class SelectionSet:
    """The logits and true class indices of one selection set (a corpus with a modality set).

    Attributes:
        name: E.g. ``"ravdess (audio,text)"``.
        logits: ``(N, C)`` logits (any per-row shift: only differences between classes matter).
        labels: ``(N,)`` true class indices.
        modalities: The modality set its rows used (``modality_set_key``, e.g. ``"audio+text"``);
            empty: not known (only the global temperature is fitted on it).
    """

    name: str
    logits: np.ndarray
    labels: np.ndarray
    modalities: str = ""


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature  # (N, C)
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))  # (N,)
    return float((log_norm - z[np.arange(len(labels)), labels]).mean())


def _checked(sets: Sequence[SelectionSet]) -> list[SelectionSet]:
    if not sets:
        raise CalibrationError("calibration: no selection set given")
    out, classes = [], set()
    for s in sets:
        logits = np.asarray(s.logits, dtype=np.float64)
        labels = np.asarray(s.labels, dtype=np.int64).reshape(-1)
        if not len(labels):
            raise CalibrationError(f"calibration: selection set {s.name} is empty")
        if logits.ndim != 2 or len(logits) != len(labels):
            raise CalibrationError(f"calibration: selection set {s.name} has logits of shape {logits.shape} "
                                   f"for {len(labels)} labels")
        if not np.isfinite(logits).all():
            raise CalibrationError(f"calibration: selection set {s.name} has non-finite logits")
        if ((labels < 0) | (labels >= logits.shape[1])).any():
            raise CalibrationError(f"calibration: selection set {s.name} has a label outside 0..{logits.shape[1] - 1}")
        classes |= set(labels.tolist())
        out.append(SelectionSet(s.name, logits, labels, s.modalities))
    if len(classes) < 2:
        raise CalibrationError("calibration: the selection rows hold a single class; a temperature needs at least two")
    if all(np.ptp(s.logits, axis=1).max() < 1e-9 for s in out):
        raise CalibrationError("calibration: every selection row has equal logits for all classes; "
                               "a temperature changes nothing")
    return out


def fit_temperature(sets: Sequence[SelectionSet]) -> float:
    """The T > 0 minimising the mean over ``sets`` of each set's mean NLL of ``softmax(logits / T)``.

    Raises:
        CalibrationError: empty, malformed or degenerate input, or a fit on the search bound.
    """
    from scipy.optimize import minimize_scalar

    sets = _checked(sets)

    def objective(log_t: float) -> float:
        return float(np.mean([_nll(s.logits, s.labels, math.exp(log_t)) for s in sets]))

    lo, hi = LOG_T_BOUNDS
    found = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    # a flat or monotone objective ends on (or level with) a bound: the data cannot place T
    at_bound = min(found.x - lo, hi - found.x) < 1e-3 or min(objective(lo), objective(hi)) <= found.fun + 1e-12
    if not found.success or at_bound:
        raise CalibrationError(f"calibration: the fitted temperature ran to the search bound ({math.exp(found.x):.3g}, "
                               f"searched {math.exp(lo):.3g}..{math.exp(hi):.3g}): the selection rows cannot place it "
                               "(every row right sends T to 0; scores no better than chance send it to infinity)")
    return float(math.exp(found.x))


def fit_temperatures(sets: Sequence[SelectionSet]) -> tuple[float, dict[str, float]]:
    """The global T (every set) and one T per modality set (its sets only), each by ``fit_temperature``.

    A modality set whose rows cannot place a T (``CalibrationError``) gets none: it uses the global one.

    Raises:
        CalibrationError: the sets together cannot place the global T.
    """
    temperature = fit_temperature(sets)
    per_set: dict[str, float] = {}
    for key in sorted({s.modalities for s in sets if s.modalities}):
        try:
            per_set[key] = fit_temperature([s for s in sets if s.modalities == key])
        except CalibrationError as err:
            logger.warning("%s: no temperature of its own (%s); it uses the global one", key, err)
    return temperature, per_set


def calibration_summary(sets: Sequence[SelectionSet], temperature: float,
                        temperatures: Mapping[str, float] | None = None) -> dict[str, Any]:
    """ECE (15 bins) and NLL before (T = 1) and after calibration, per set and pooled; split ``selection``.

    Each set is scaled by its modality set's temperature in ``temperatures``, else by ``temperature``.
    """
    sets = _checked(sets)
    temperatures = dict(temperatures or {})
    scaled = [softmax(s.logits, temperatures.get(s.modalities, temperature)) for s in sets]

    def both(logits: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        return {"n": int(len(labels)), "before": calibration_report(softmax(logits), labels),
                "after": calibration_report(probs, labels)}

    pooled = both(np.concatenate([s.logits for s in sets]), np.concatenate(scaled),
                  np.concatenate([s.labels for s in sets]))
    return {"split": "selection", "temperature": temperature, "temperatures": temperatures, **pooled,
            "by_set": {s.name: {**both(s.logits, p, s.labels), "temperature": temperatures.get(s.modalities, temperature)}
                       for s, p in zip(sets, scaled)}}


# ---------------------------------------------------------------------- a checkpoint's selection logits
def checkpoint_logits(model_dir: str | Path, manifest: str | Path, modalities: str, *,
                      batch_size: int = 16) -> SelectionSet:
    """One selection set: the checkpoint's logits on a ``path,label,transcript`` manifest.

    The logits are the log of the pipeline's scores times the checkpoint's temperature: the
    scores are ``softmax(logits / T)``, so this gives the logits up to a per-row shift (which no
    softmax sees), through the one decoding path the app uses.

    Raises:
        CalibrationError: a row that cannot be scored, or a label the model does not know.
    """
    from gia_mic.manifest import read_manifest
    from gia_mic.pipeline import EmotionRecognizer

    recognizer = EmotionRecognizer.from_pretrained(model_dir, asr_model=None, device="cpu")
    index = {label: i for i, label in enumerate(recognizer.labels)}
    rows = read_manifest(Path(manifest), allow_outside_root=True,
                         required=(("label",), ("transcript",), ("path", "video", "audio")))
    bad = [f"line {r.line}: {r.error or 'label ' + repr(r.get('label'))}" for r in rows
           if r.error or r.get("label") not in index]
    if bad:
        raise CalibrationError(f"calibration: {manifest}: {len(bad)} row(s) cannot be used, e.g. {bad[0]}")
    items = [{"video": r.video, "audio": r.audio, "text": r.get("transcript") or None} for r in rows]
    predictions = recognizer.batch(items, modalities=modalities.split(","), batch_size=batch_size)
    probs = np.zeros((len(rows), len(index)))
    for i, pred in enumerate(predictions):
        for score in pred.scores:
            probs[i, index[score["label"]]] = score["score"]
    # each row's scores used its modality set's temperature (rows missing a modality used fewer)
    temperatures = np.array([recognizer.model.config.temperature_for(p.modalities_used) for p in predictions])
    logits = temperatures[:, None] * np.log(np.maximum(probs, 1e-30))
    return SelectionSet(f"{Path(manifest).stem} ({modalities})", logits,
                        np.array([index[r.get("label")] for r in rows], dtype=np.int64),
                        modality_set_key(modalities.split(",")))


def store_temperature(model_dir: str | Path, temperature: float, temperatures: Mapping[str, float] | None = None) -> None:
    """Writes ``temperature`` and ``temperatures`` into the checkpoint's ``config.json`` (atomically; other fields kept)."""
    for key, value in {"temperature": temperature, **dict(temperatures or {})}.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise CalibrationError(f"calibration: temperature ({key}) must be a finite number > 0, got {value}")
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["temperature"] = float(temperature)
    config["temperatures"] = {k: float(v) for k, v in sorted((temperatures or {}).items())}
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def calibrate(model_dir: str | Path, selection: Mapping[str, str], *, write: bool = False) -> dict[str, Any]:
    """Fits the temperatures on ``{selection manifest: modalities}``; returns the selection summary; ``write`` stores them."""
    sets = [checkpoint_logits(model_dir, manifest, modalities) for manifest, modalities in selection.items()]
    temperature, temperatures = fit_temperatures(sets)
    summary = calibration_summary(sets, temperature, temperatures)
    if write:
        store_temperature(model_dir, temperature, temperatures)
    return summary


def _selection_arg(text: str) -> tuple[str, str]:
    manifest, _, modalities = text.rpartition(":")
    if not manifest or not modalities:
        raise argparse.ArgumentTypeError(f"expected MANIFEST:MODALITIES (e.g. sel.csv:audio,text), got {text!r}")
    return manifest, modalities


def main(argv: list[str] | None = None) -> int:
    """``python -m train.calibrate``; prints the selection ECE / NLL before and after."""
    parser = argparse.ArgumentParser(prog="python -m train.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--selection", type=_selection_arg, action="append", required=True,
                        help="MANIFEST:MODALITIES of selection rows (repeat for each set); never test rows")
    parser.add_argument("--write", action="store_true", help="store the temperature in the checkpoint's config.json")
    args = parser.parse_args(argv)
    try:
        summary = calibrate(args.model, dict(args.selection), write=args.write)
    except (CalibrationError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"temperature {summary['temperature']:.4f} (fitted on the selection split, n={summary['n']})")
    for key, value in summary["temperatures"].items():
        print(f"  {key}: temperature {value:.4f}")
    for name, s in {"pooled": summary, **summary["by_set"]}.items():
        print(f"  {name:<28} n={s['n']:<5} ECE {s['before']['ece']:.4f} -> {s['after']['ece']:.4f}  "
              f"NLL {s['before']['nll']:.4f} -> {s['after']['nll']:.4f}  (selection)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
