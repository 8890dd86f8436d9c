"""Emotion-recognition metrics: WA, UA, macro-F1, per-class recall, confusion matrix, ECE and NLL.

The classification figures come from scikit-learn; the calibration figures (expected calibration
error over 15 equal-width bins, negative log-likelihood) are written here: scikit-learn has no ECE.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """WA (accuracy), UA (mean recall over classes present in ``y_true``) and friends.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.
        labels: Class names, index order.

    Returns:
        ``{"n", "wa", "ua", "macro_f1", "per_class_recall", "confusion", "labels"}``;
        ``confusion[i][j]`` counts true class i predicted as j. Classes absent from
        ``y_true`` are left out of UA and macro-F1 (their recall is ``None``); with no
        samples, WA, UA and macro-F1 are NaN.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    classes = list(range(len(labels)))
    report = {"n": len(y_true), "wa": float("nan"), "ua": float("nan"), "macro_f1": float("nan"),
              "per_class_recall": dict.fromkeys(labels), "confusion": np.zeros((len(labels),) * 2, int).tolist(),
              "labels": list(labels)}
    if not len(y_true):
        return report
    present = sorted(set(y_true))
    recall = recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": left out of UA, as documented
        warnings.simplefilter("ignore", UserWarning)
        report["ua"] = float(balanced_accuracy_score(y_true, y_pred))
    report.update(
        wa=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        per_class_recall={label: float(recall[i]) if i in present else None for i, label in enumerate(labels)},
        confusion=confusion_matrix(y_true, y_pred, labels=classes).tolist())
    return report


CALIBRATION_BINS = 15
"""Equal-width confidence bins of the expected calibration error (Guo et al., 2017)."""

NLL_FLOOR = 1e-12
"""Probabilities below this count as it in the NLL, so one underflowed score cannot make it infinite."""


def _checked(probs: object, y_true: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C)`` float64 probabilities and ``(N,)`` int labels, or a one-line ``ValueError``."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if p.size == 0 and y.size == 0:
        return p.reshape(0, 0), y
    if p.ndim != 2:
        raise ValueError(f"probabilities must be an (N, C) array, got shape {p.shape}")
    if len(p) != len(y):
        raise ValueError(f"y_true has {len(y)} items but probabilities has {len(p)} rows")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    if ((y < 0) | (y >= p.shape[1])).any():
        raise ValueError(f"y_true holds a class index outside 0..{p.shape[1] - 1}")
    return p, y


def expected_calibration_error(probs: object, y_true: Sequence[int], *, bins: int = CALIBRATION_BINS) -> float:
    """Top-label ECE: the sample-weighted mean |accuracy - confidence| over equal-width confidence bins.

    The confidence is the top probability; bin ``k`` holds confidences in ``(k / bins, (k + 1) / bins]``
    (a confidence of exactly 0 falls in the first). Written here because scikit-learn has no ECE.

    Args:
        probs: ``(N, C)`` class probabilities (rows sum to 1).
        y_true: ``(N,)`` true class indices.
        bins: Number of bins.

    Returns:
        The ECE in [0, 1]; NaN with no samples.
    """
    p, y = _checked(probs, y_true)
    if not len(y):
        return float("nan")
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    correct = (predicted == y).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)  # (N,)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, correct, minlength=bins) - np.bincount(index, confidence, minlength=bins))
    return float(gap.sum() / len(y)) if count.sum() else float("nan")


def negative_log_likelihood(probs: object, y_true: Sequence[int]) -> float:
    """Mean ``-log p(true class)`` (natural log; probabilities floored at ``NLL_FLOOR``); NaN with no samples."""
    p, y = _checked(probs, y_true)
    if not len(y):
        return float("nan")
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], NLL_FLOOR)).mean())


def calibration_report(probs: object, y_true: Sequence[int], *, bins: int = CALIBRATION_BINS) -> dict[str, float]:
    """``{"ece", "nll"}`` of the given probabilities (see the two functions above)."""
    return {"ece": expected_calibration_error(probs, y_true, bins=bins), "nll": negative_log_likelihood(probs, y_true)}
