"""Figures for predictions and evaluations (matplotlib, Agg, no pyplot state).

Every function returns a ``matplotlib.figure.Figure`` built with the object API: it is
never registered with pyplot, so nothing has to be closed and threads do not share
figure state; it is freed with its last reference.

Contents: GIA gate heat maps (``plot_gates``), training figures (``plot_confusion``,
``plot_training_curves``) and ``save_figure`` (atomic PNG).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GATE_ORDER: tuple[tuple[str, str], ...] = (
    ("video", "audio"), ("video", "text"),
    ("audio", "video"), ("audio", "text"),
    ("text", "video"), ("text", "audio"),
)  # fmt: skip
"""The six gate directions ``A<-B``, one row per target modality A."""

GATE_CAPTION = (
    "Each panel is one gate G(A<-B) of the GIA block: how far B's information is let into A. "
    "Columns are A's tokens (time in seconds for video and speech, subwords for text); rows are "
    "channels (or channel groups). Brighter = more open (towards 1), darker = more closed (towards 0); "
    "all six panels share one colour scale, fitted to this clip's range."
)
"""How to read ``plot_gates``; shown under the figure by the app."""

_NAMES = {"video": "video", "audio": "speech", "text": "text"}


def _channel_summary(gate: np.ndarray, max_channels: int) -> tuple[np.ndarray, int]:
    """``(L, D)`` -> ``(C, L)`` with C <= max_channels: channels averaged in equal groups."""
    gate = np.asarray(gate, dtype=np.float32)
    if gate.ndim != 2:
        raise ValueError(f"a gate must be (tokens, channels), got shape {gate.shape}")
    length, width = gate.shape
    group = max(1, int(np.ceil(width / max_channels)))
    if group == 1:
        return gate.T, 1
    pad = group * int(np.ceil(width / group)) - width
    padded = np.pad(gate, ((0, 0), (0, pad)), constant_values=np.nan)
    return np.nanmean(padded.reshape(length, -1, group), axis=-1).T, group  # (C, L)


def _token_ticks(axis: Sequence, modality: str, max_ticks: int = 8, max_words: int = 40) -> tuple[list[int], list[str], str]:
    """Tick positions, labels and axis title for a token axis."""
    n = len(axis)
    if n == 0:
        return [], [], "tokens"
    if modality == "text":
        step = max(1, int(np.ceil(n / max_words)))
        idx = list(range(0, n, step))
        return idx, [str(axis[i]) for i in idx], "subwords" + (f" (every {step})" if step > 1 else "")
    idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, max_ticks))})
    return idx, [f"{float(axis[i]):.1f}" for i in idx], "time (s)"


def plot_gates(gates: Mapping[str, np.ndarray], gate_axes: Mapping[str, Sequence], *, max_channels: int = 64,
               title: str | None = None) -> Figure:
    """Heat maps of the six GIA gates of one prediction.

    Args:
        gates: ``"A<-B"`` -> ``(L_A, D)`` gate values (``Prediction.gates``); absent
            directions (a modality not used) are drawn as empty panels.
        gate_axes: Per modality, the token axis (``Prediction.gate_axes``): seconds for
            video and audio, subword strings for text.
        max_channels: Channels shown per panel; wider gates are averaged in equal groups.
        title: Figure title (default: a short one).

    Returns:
        A 3 x 2 figure (rows: target modality A; one colour scale shared by all panels).
    """
    if max_channels < 1:
        raise ValueError(f"max_channels must be >= 1, got {max_channels}")
    shown = {name: _channel_summary(g, max_channels) for name, g in gates.items() if np.asarray(g).size}
    values = [m for m, _ in shown.values()]
    vmin = float(min(np.nanmin(v) for v in values)) if values else 0.0
    vmax = float(max(np.nanmax(v) for v in values)) if values else 1.0
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.5e-3, vmax + 0.5e-3

    fig = Figure(figsize=(11, 8.5), layout="constrained")
    axes = fig.subplots(3, 2)
    image = None
    for ax, (a, b) in zip(axes.flat, GATE_ORDER):
        name = f"{a}<-{b}"
        ax.set_title(f"{_NAMES[a]} \u2190 {_NAMES[b]}", fontsize=10)
        if name not in shown:
            ax.text(0.5, 0.5, f"not computed\n({_NAMES[a]} and {_NAMES[b]} both needed)", ha="center",
                    va="center", fontsize=9, color="0.4", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        matrix, group = shown[name]  # (C, L_A)
        image = ax.imshow(matrix, aspect="auto", origin="lower", interpolation="nearest", cmap="magma",
                          vmin=vmin, vmax=vmax)
        ticks, labels, xlabel = _token_ticks(list(gate_axes.get(a, range(matrix.shape[1])))[: matrix.shape[1]], a)
        ax.set_xticks(ticks, labels, rotation=90 if a == "text" else 0, fontsize=7 if a == "text" else 8)
        ax.set_xlabel(f"{_NAMES[a]} tokens: {xlabel}", fontsize=8)
        ax.set_ylabel("channel" if group == 1 else f"channel group (mean of {group})", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="gate value (shared scale)")
    fig.suptitle(title or "GIA gates: how much each modality lets the other in", fontsize=12)
    return fig


# ---------------------------------------------------------------------- training figures
def new_figure(*, figsize: tuple[float, float] = (5.0, 4.0), ncols: int = 1) -> tuple[Figure, Any]:
    """A pyplot-free figure with an Agg canvas and ``ncols`` axes."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Writes ``fig`` as a PNG atomically and returns the path."""
    from gia_mic.utils import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def plot_confusion(confusion: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], ax: Axes | None = None, *,
                   normalize: bool = True, title: str | None = None) -> Figure:
    """Confusion matrix, rows = true class, columns = predicted class.

    Args:
        confusion: ``(C, C)`` counts; ``confusion[i][j]`` = true ``i`` predicted ``j``.
        labels: Class names.
        ax: Draw here instead of on a new figure.
        normalize: Colour by row share (recall); cells show the count and the share.
        title: Axes title.

    Returns:
        The figure holding the axes.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion has shape {counts.shape}, expected ({len(labels)}, {len(labels)})")
    fig, ax = (ax.figure, ax) if ax is not None else new_figure(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(share if normalize else counts, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(len(labels)):
        for j in range(len(labels)):
            text = f"{int(counts[i, j])}\n{share[i, j]:.0%}" if normalize else f"{int(counts[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_training_curves(history: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Figure:
    """Loss and validation accuracy per epoch.

    Args:
        history: One mapping per epoch with ``epoch`` and any of ``train_loss``,
            ``train_ce``, ``train_mir``, ``val_loss`` (left panel) and ``val_ua``,
            ``val_wa`` and any per-corpus ``val_ua_<corpus>`` (right panel); missing or
            ``None`` values are skipped.
        title: Figure title.

    Returns:
        A two-panel figure.
    """
    fig, (loss_ax, acc_ax) = new_figure(figsize=(9.0, 3.6), ncols=2)
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    per_corpus = sorted({k for h in history for k in h if k.startswith("val_ua_")})
    for ax, keys in ((loss_ax, ("train_loss", "train_ce", "train_mir", "val_loss")),
                     (acc_ax, ("val_ua", "val_wa", *per_corpus))):
        for key in keys:
            points = [(e, h[key]) for e, h in zip(epochs, history) if h.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    loss_ax.set_ylabel("loss")
    acc_ax.set_ylabel("validation accuracy")
    acc_ax.set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    return fig
