"""Emotion-recognition metrics: WA, UA, macro-F1, per-class recall, confusion matrix."""

from __future__ import annotations

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
        ``y_true`` are left out of UA and macro-F1 (their recall is ``None``).
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        confusion[int(t), int(p)] += 1
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    diag = np.diag(confusion)
    present = support > 0
    recall = np.where(present, diag / np.maximum(support, 1), np.nan)
    precision = np.where(predicted > 0, diag / np.maximum(predicted, 1), 0.0)
    f1 = np.where(precision + np.nan_to_num(recall) > 0,
                  2 * precision * np.nan_to_num(recall) / np.maximum(precision + np.nan_to_num(recall), 1e-12), 0.0)
    n = int(confusion.sum())
    return {
        "n": n,
        "wa": float(diag.sum() / n) if n else float("nan"),
        "ua": float(np.nanmean(recall)) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_recall": {labels[i]: (None if np.isnan(recall[i]) else float(recall[i])) for i in range(k)},
        "confusion": confusion.tolist(),
        "labels": list(labels),
    }
