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


# ---------------------------------------------------------------- calibration (ECE over 15 bins, NLL)
def test_ece_and_nll_against_hand_values():
    from gia_mic.metrics import calibration_report, expected_calibration_error, negative_log_likelihood

    probs = [[0.95, 0.05], [0.05, 0.95], [0.65, 0.35], [0.35, 0.65]]
    y = [0, 0, 0, 1]
    # bin (14/15, 1]: confidences .95 and .95, one right -> |0.5 - 0.95| = 0.45, weight 2/4
    # bin (9/15, 10/15]: confidences .65 and .65, both right -> |1 - 0.65| = 0.35, weight 2/4
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    nll = -(math.log(0.95) + math.log(0.05) + 2 * math.log(0.65)) / 4
    assert negative_log_likelihood(probs, y) == pytest.approx(nll)
    assert calibration_report(probs, y) == pytest.approx({"ece": 0.4, "nll": nll})


def test_ece_bins_are_upper_inclusive_and_nll_is_floored():
    from gia_mic.metrics import NLL_FLOOR, expected_calibration_error, negative_log_likelihood

    # confidence exactly 0.6 = 9/15 belongs to bin (8/15, 9/15] together with 0.55: one bin, one right
    probs = [[0.6, 0.4, 0.0], [0.55, 0.45, 0.0]]
    assert expected_calibration_error(probs, [0, 1]) == pytest.approx(abs(0.5 - (0.6 + 0.55) / 2))
    assert expected_calibration_error(probs, [0, 1], bins=1) == pytest.approx(abs(0.5 - 0.575))
    assert expected_calibration_error([[1.0, 0.0]], [0]) == 0.0  # perfectly confident and right
    assert negative_log_likelihood([[1.0, 0.0]], [1]) == pytest.approx(-math.log(NLL_FLOOR))  # finite


def test_calibration_input_errors():
    from gia_mic.metrics import calibration_report

    assert all(math.isnan(v) for v in calibration_report([], []).values())
    for probs, y, message in (([[0.5, 0.5]], [0, 1], "1 rows"), ([0.5, 0.5], [0, 1], r"\(N, C\)"),
                              ([[0.5, 0.5]], [2], "outside 0..1"), ([[float("nan"), 1.0]], [0], "finite")):
        with pytest.raises(ValueError, match=message):
            calibration_report(probs, y)
