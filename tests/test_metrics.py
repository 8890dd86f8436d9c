"""WA / UA / macro-F1 / per-class recall / confusion: the contract, checked against hand counts."""

from __future__ import annotations

import math

import pytest

from gia_mic.metrics import classification_report

LABELS = ["neutral", "happy", "angry", "sad"]


def test_against_hand_counts():
    # true 0 x3, 1 x1, 2 x2; "sad" (3) is predicted once but never true
    r = classification_report([0, 0, 0, 1, 2, 2], [0, 0, 1, 1, 2, 3], LABELS)
    assert r["n"] == 6 and r["wa"] == pytest.approx(4 / 6)
    assert r["per_class_recall"] == pytest.approx({"neutral": 2 / 3, "happy": 1.0, "angry": 0.5, "sad": None})
    assert r["ua"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)  # "sad" is absent from y_true: left out of UA
    f1 = {"neutral": 2 * 1 * (2 / 3) / (1 + 2 / 3), "happy": 2 * 0.5 * 1 / 1.5, "angry": 2 * 1 * 0.5 / 1.5}
    assert r["macro_f1"] == pytest.approx(sum(f1.values()) / 3)  # and out of macro-F1
    assert r["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert r["labels"] == LABELS


def test_a_true_class_never_predicted_scores_zero_f1():
    r = classification_report([0, 1, 1], [0, 0, 0], LABELS)
    precision, recall = 1 / 3, 1.0  # neutral: 1 of 3 predictions right, its one sample found
    assert r["per_class_recall"]["happy"] == 0.0
    assert r["macro_f1"] == pytest.approx((2 * precision * recall / (precision + recall) + 0.0) / 2)


def test_empty_and_mismatched_input():
    r = classification_report([], [], LABELS)
    assert r["n"] == 0 and all(math.isnan(r[k]) for k in ("wa", "ua", "macro_f1"))
    assert r["per_class_recall"] == dict.fromkeys(LABELS) and r["confusion"] == [[0] * 4] * 4
    with pytest.raises(ValueError, match="y_true has 2 items but y_pred has 1"):
        classification_report([0, 1], [0], LABELS)
