"""Emotion-recognition metrics: WA, UA, macro-F1, per-class recall, confusion matrix (scikit-learn)."""

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
