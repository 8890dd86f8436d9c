"""Training figures in gia_mic.plots: confusion matrix and curves, no pyplot state."""

from __future__ import annotations

import sys

import pytest
from matplotlib.figure import Figure

from gia_mic.plots import plot_confusion, plot_training_curves, save_figure


def test_confusion_figure(tmp_path):
    fig = plot_confusion([[3, 1], [0, 4]], ["neutral", "happy"], title="val")
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["3\n75%", "1\n25%", "0\n0%", "4\n100%"]
    path = save_figure(fig, tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="shape"):
        plot_confusion([[1, 2]], ["a", "b"])


def test_confusion_on_given_axes():
    fig = Figure()
    ax = fig.subplots()
    assert plot_confusion([[1, 0], [0, 1]], ["a", "b"], ax=ax) is fig


def test_training_curves(tmp_path):
    history = [{"epoch": 1, "train_loss": 1.2, "val_loss": 1.3, "val_ua": 0.4, "val_wa": 0.5, "train_mir": None},
               {"epoch": 2, "train_loss": 0.9, "val_loss": 1.1, "val_ua": 0.6, "val_wa": 0.6, "train_mir": None}]
    fig = plot_training_curves(history, title="fold 1")
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["train_loss", "val_loss"]
    assert list(acc_ax.lines[0].get_ydata()) == [0.4, 0.6]
    save_figure(fig, tmp_path / "curves.png")
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_training_curves_show_each_corpus():
    history = [{"epoch": 1, "val_ua": 0.5, "val_wa": 0.5, "val_ua_meld": 0.45, "val_ua_ravdess": 0.6},
               {"epoch": 2, "val_ua": 0.6, "val_wa": 0.6, "val_ua_meld": 0.55, "val_ua_ravdess": 0.7}]
    _, acc_ax = plot_training_curves(history).axes
    assert [line.get_label() for line in acc_ax.lines] == ["val_ua", "val_wa", "val_ua_meld", "val_ua_ravdess"]
    assert list(acc_ax.lines[3].get_ydata()) == [0.6, 0.7]
