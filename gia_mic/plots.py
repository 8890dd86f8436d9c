"""Figures for predictions and evaluations (matplotlib, Agg, no pyplot state).

Every function returns a ``matplotlib.figure.Figure`` built with the object API: it is
never registered with pyplot, so nothing has to be closed and threads do not share
figure state; it is freed with its last reference.

Contents: GIA gates summarised per token (``plot_gate_summary``) and as heat maps
(``plot_gates``), a timeline's segments (``plot_timeline``), training figures
(``plot_confusion``, ``plot_training_curves``) and ``save_figure`` (atomic PNG).
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

GATE_SENTENCE = (
    "A gate is the model's valve between two modalities: for each moment of speech (or each word) it "
    "decides how much of the other modality's information is let in, from 0 (closed) to 1 (open)."
)
"""What a gate is, in one sentence (shown by the app)."""

GATE_CAPTION = (
    "Each panel is one gate, named target \u2190 source: how far the source's information is let into the "
    "target. Columns are the target's tokens (time in seconds for video and speech, word pieces for text); "
    "rows are channels (or groups of channels averaged). Brighter = more open (towards 1), darker = more "
    "closed (towards 0); all panels share one colour scale, fitted to this clip's range."
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
    for digits in (1, 2, 3):  # a short clip needs more decimals for distinct labels
        labels = [f"{float(axis[i]):.{digits}f}" for i in idx]
        if len(set(labels)) == len(labels):
            break
    keep = [k for k, label in enumerate(labels) if label not in labels[:k]]  # never two equal labels
    return [idx[k] for k in keep], [labels[k] for k in keep], "time (s)"


def plot_gates(gates: Mapping[str, np.ndarray], gate_axes: Mapping[str, Sequence], *, max_channels: int = 64,
               title: str | None = None) -> Figure:
    """Heat maps of the six GIA gates of one prediction.

    Args:
        gates: ``"A<-B"`` -> ``(L_A, D)`` gate values (``Prediction.gates``); only the
            directions present get a panel (a modality not used has none).
        gate_axes: Per modality, the token axis (``Prediction.gate_axes``): seconds for
            video and audio, subword strings for text.
        max_channels: Channels shown per panel; wider gates are averaged in equal groups.
        title: Figure title (default: a short one).

    Returns:
        One panel per gate present, two per row, in ``GATE_ORDER`` (one colour scale shared by all).
    """
    if max_channels < 1:
        raise ValueError(f"max_channels must be >= 1, got {max_channels}")
    shown = {name: _channel_summary(g, max_channels) for name, g in gates.items() if np.asarray(g).size}
    values = [m for m, _ in shown.values()]
    vmin = float(min(np.nanmin(v) for v in values)) if values else 0.0
    vmax = float(max(np.nanmax(v) for v in values)) if values else 1.0
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.5e-3, vmax + 0.5e-3

    names = [f"{a}<-{b}" for a, b in GATE_ORDER if f"{a}<-{b}" in shown]
    ncols = 2 if len(names) > 1 else 1
    nrows = max(1, int(np.ceil(len(names) / ncols)))
    fig = Figure(figsize=(11, 1.0 + 3.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols))
    image = None
    if not names:
        axes.flat[0].text(0.5, 0.5, "no gates: the fusion needs two modalities", ha="center", va="center",
                          fontsize=12, color="0.4", transform=axes.flat[0].transAxes)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        a, b = name.split("<-")
        ax.set_title(f"{_NAMES[a]} \u2190 {_NAMES[b]}", fontsize=12)
        matrix, group = shown[name]  # (C, L_A)
        image = ax.imshow(matrix, aspect="auto", origin="lower", interpolation="nearest", cmap="magma",
                          vmin=vmin, vmax=vmax)
        ticks, labels, xlabel = _token_ticks(list(gate_axes.get(a, range(matrix.shape[1])))[: matrix.shape[1]], a)
        ax.set_xticks(ticks, labels, rotation=90 if a == "text" else 0, fontsize=10)
        ax.set_xlabel(f"{_NAMES[a]}: {xlabel}", fontsize=11)
        ax.set_ylabel("channel" if group == 1 else f"channels (groups of {group})", fontsize=11)
        ax.tick_params(axis="y", labelsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="gate value (shared scale)")
    fig.suptitle(title or "Gates per channel: how much each modality lets the other in", fontsize=13)
    return fig


_SUMMARY_TITLES = {
    "audio<-text": "Speech: how much of the words each moment let in",
    "text<-audio": "Words: how much of the speech each word let in",
    "audio<-video": "Speech: how much of the face each moment let in",
    "video<-audio": "Face: how much of the speech each frame let in",
    "text<-video": "Words: how much of the face each word let in",
    "video<-text": "Face: how much of the words each frame let in",
}
_EMOTION_COLOURS = {"neutral": "#7f7f7f", "happy": "#e69f00", "angry": "#d62728", "sad": "#1f77b4",
                    "fear": "#9467bd", "disgust": "#2ca02c", "surprise": "#17becf"}
_SPECIAL_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}


def gate_openness(gates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per gate ``"A<-B"``, the mean over channels of each of A's tokens: ``(L_A,)`` in [0, 1]."""
    return {name: np.asarray(g, dtype=np.float32).mean(axis=-1) for name, g in gates.items() if np.asarray(g).size}


def plot_gate_summary(gates: Mapping[str, np.ndarray], gate_axes: Mapping[str, Sequence], *,
                      title: str | None = None) -> Figure:
    """How strongly each moment of speech (or video) and each word let the other modality in.

    One row per gate present: the gate averaged over channels (``gate_openness``), drawn along
    time in seconds for video and speech, and as one bar per word piece for text (the
    tokenizer's special tokens left out).

    Args:
        gates: ``"A<-B"`` -> ``(L_A, D)`` (``Prediction.gates``).
        gate_axes: Per modality, seconds or word pieces (``Prediction.gate_axes``).
        title: Figure title (default: none; each panel says what it shows).
    """
    means = gate_openness(gates)
    names = [f"{a}<-{b}" for a, b in GATE_ORDER if f"{a}<-{b}" in means]
    fig = Figure(figsize=(6.4, 0.4 + 2.6 * max(1, len(names))), layout="constrained")  # narrow: legible on a phone
    axes = np.atleast_1d(fig.subplots(max(1, len(names)), 1))
    if not names:
        axes[0].text(0.5, 0.5, "no gates: the fusion needs two modalities", ha="center", va="center", fontsize=13,
                     color="0.4", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, name in zip(axes, names):
        a, b = name.split("<-")
        values = means[name]  # (L_A,)
        axis = list(gate_axes.get(a, range(len(values))))[: len(values)]
        ax.set_title(_SUMMARY_TITLES.get(name, f"{_NAMES[a]} \u2190 {_NAMES[b]}"), fontsize=14, loc="left")
        if a == "text":
            keep = [i for i, tok in enumerate(axis) if str(tok) not in _SPECIAL_TOKENS] or list(range(len(values)))
            ax.bar(range(len(keep)), values[keep], color="#6d4fc2")
            step = max(1, int(np.ceil(len(keep) / 30)))
            ax.set_xticks(range(0, len(keep), step), [str(axis[i]) if i < len(axis) else "?" for i in keep][::step],
                          rotation=60 if len(keep) > 6 else 0, ha="right" if len(keep) > 6 else "center", fontsize=13)
            ax.set_xlabel("words (word pieces)", fontsize=13)
        else:
            times = np.asarray(axis, dtype=np.float64) if len(axis) == len(values) else np.arange(len(values))
            ax.fill_between(times, values, color="#6d4fc2", alpha=0.35, step="mid")
            ax.plot(times, values, color="#4b2e9e", drawstyle="steps-mid")
            ax.set_xlabel("time (s)", fontsize=13)
            ax.set_xlim(float(times[0]), float(times[-1]) if len(times) > 1 else float(times[0]) + 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("open (0-1)", fontsize=13)
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(labelsize=12)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=15)
    return fig


def plot_timeline(timeline: Any, *, title: str | None = None) -> Figure:
    """A timeline's segments along time: one bar per segment, coloured by its label, as tall as its score.

    Args:
        timeline: A ``gia_mic.timeline.Timeline`` (``segments``, ``labels``, ``duration``).
        title: Figure title (default: a short one).
    """
    colours = {label: _EMOTION_COLOURS.get(label, f"C{i}") for i, label in enumerate(timeline.labels)}
    fig = Figure(figsize=(7, 3.4), layout="constrained")
    ax = fig.subplots()
    for seg in timeline.segments:
        score = seg.scores[seg.label]
        ax.bar(seg.start, score, width=max(seg.end - seg.start, 1e-3), align="edge", color=colours[seg.label],
               edgecolor="white")
        ax.text((seg.start + seg.end) / 2, min(score, 0.97) - 0.03, seg.label, ha="center", va="top", fontsize=11,
                color="white", rotation=90 if seg.end - seg.start < 0.05 * max(timeline.duration, 1e-3) else 0)
    for label, colour in colours.items():
        ax.bar(0, 0, color=colour, label=label)  # legend entries for every class
    ax.set_xlim(0, max(float(timeline.duration), 1e-3))
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)", fontsize=12)
    ax.set_ylabel("score of the label", fontsize=12)
    ax.tick_params(labelsize=11)
    ax.legend(fontsize=11, ncols=min(len(colours), 4), loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    if not timeline.segments:
        ax.text(0.5, 0.5, "no speech found", ha="center", va="center", fontsize=13, color="0.4", transform=ax.transAxes)
    ax.set_title(title or "Emotion over time (one bar per stretch of speech)", fontsize=13, loc="left")
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
