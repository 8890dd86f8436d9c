"""The training config: one dataclass that *contains* the model config.

A YAML file has four parts: ``model`` (a ``GiaMicConfig``; ``preset: tiny|base|paper`` plus
field overrides), ``data``, ``optim`` and a few top-level run settings. Dotted overrides
(``optim.lr=1e-4``, ``model.mic_weight=0``) are applied to the raw mapping first, then every
value is coerced to its field's declared type and validated; an unknown key is an error that
names it. ``TrainConfig.save`` writes the fully resolved config (the model section expanded,
no preset) so that ``TrainConfig.load`` of that file rebuilds exactly the same run.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gia_mic.configuration import ConfigError, GiaMicConfig

SOURCES = ("synthetic", "manifest", "iemocap")
SPEAKER_SIDES = ("marked_left", "marked_right", "none")
SELECT_METRICS = ("ua", "corpus_mean_ua")
PRECISIONS = ("no", "fp16", "bf16")


@dataclass
class DataConfig:
    """Where samples come from and how they are split.

    Attributes:
        source: ``synthetic`` (generated clips, no files), ``manifest`` (a CSV, any corpus)
            or ``iemocap`` (the official release layout under ``root``).
        manifest: The CSV for ``source: manifest`` (see ``train.data.read_manifest``).
        root: Media root for relative manifest paths (default: the CSV's folder), or the
            IEMOCAP release folder (``IEMOCAP_full_release``).
        label_map: Raw emotion name -> model label (e.g. ``calm: neutral``). Names that map
            to no model label are dropped and counted. Model labels map to themselves.
        val_fraction: Share of *speakers* held out for validation when the data give no
            split or fold column and ``num_folds`` is 1.
        num_folds: > 1: speaker-group k-fold cross-validation when no split is given.
        selection_fraction: In cross-validation (a ``fold`` column, IEMOCAP's sessions, or
            ``num_folds`` > 1) the held-out fold is the *test* fold: this share of the training
            folds' speakers is held out instead to choose the epoch (early stopping), so no
            test speaker ever chooses anything.
        folds: Run only these folds (names as in ``results.json``); empty = all.
        iemocap_sessions: Sessions read from the IEMOCAP release (one fold each).
        iemocap_speaker_side: Which half of the side-by-side IEMOCAP video shows the
            speaker: ``marked_left`` = the actor whose gender letter matches the dialog's
            session letter (``Ses01F`` -> F, the actor wearing the motion-capture markers) is
            on the left half, the other actor on the right; ``marked_right`` the reverse;
            ``none`` keeps the full frame.
        synthetic_samples: Number of generated samples (``source: synthetic``).
        synthetic_speakers: Number of generated speakers.
        synthetic_seconds: Length of a generated clip.
        cache_dir: Frozen-encoder feature cache (default ``<output_dir>/feature_cache``).
        extract_batch_size: Batch size of the one-off frozen-encoder pass.
    """

    source: str = "synthetic"
    manifest: str | None = None
    root: str | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    val_fraction: float = 0.2
    num_folds: int = 1
    selection_fraction: float = 0.25
    folds: list[str] = field(default_factory=list)
    iemocap_sessions: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    iemocap_speaker_side: str = "marked_left"
    synthetic_samples: int = 64
    synthetic_speakers: int = 8
    synthetic_seconds: float = 1.0
    cache_dir: str | None = None
    extract_batch_size: int = 8


@dataclass
class OptimConfig:
    """Optimiser and schedule.

    Attributes:
        lr: Adam learning rate (paper: 1e-5).
        weight_decay: Adam weight decay (L2).
        betas: Adam betas.
        eps: Adam epsilon.
        batch_size: Samples per step per process.
        grad_accum_steps: Micro-batches accumulated per optimiser step.
        max_grad_norm: Gradient clipping norm; 0 turns clipping off.
        max_epochs: Upper bound on epochs.
        patience: Early stopping: epochs without a better selection score; 0 = never stop.
        select_metric: The validation score that picks the best epoch: ``ua`` (UA over all
            validation rows), or ``corpus_mean_ua`` (the mean of each corpus's UA, from the
            manifest's ``corpus`` column: a large corpus cannot drown a small one).
        group_by_modalities: Batch together samples that have the same modalities (mixed
            corpora: text-only rows are never padded to a speech clip's length).
    """

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    batch_size: int = 8
    grad_accum_steps: int = 1
    max_grad_norm: float = 0.0
    max_epochs: int = 30
    patience: int = 5
    group_by_modalities: bool = False
    select_metric: str = "ua"


@dataclass
class TrainConfig:
    """A full training run.

    Attributes:
        model: The model config (``GiaMicConfig``), saved in every checkpoint's ``config.json``.
        data: Data source and splits.
        optim: Optimiser and schedule.
        seed: Seeds Python, NumPy and torch; a CPU run is repeatable bit for bit.
        mixed_precision: ``no``, ``fp16`` or ``bf16`` autocast (GPU; ``fp16`` falls back to
            ``no`` on CPU).
        keep_checkpoints: Training-state checkpoints kept per fold (the newest ones).
        progress: Show tqdm progress bars.
        stop_after_epochs: Debug knob: stop (as if interrupted) after this many epochs of
            this invocation; ``--resume`` continues. ``None``: off.
    """

    model: GiaMicConfig = field(default_factory=lambda: GiaMicConfig.from_preset("tiny"))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    mixed_precision: str = "no"
    keep_checkpoints: int = 1
    progress: bool = True
    stop_after_epochs: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Checks every field; raises ``ConfigError`` naming the first bad one."""
        d, o = self.data, self.optim

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(d.source in SOURCES, f"data.source: must be one of {SOURCES}, got {d.source!r}")
        need(d.source != "manifest" or bool(d.manifest), "data.manifest: source 'manifest' needs a CSV path")
        need(d.source != "iemocap" or bool(d.root), "data.root: source 'iemocap' needs the IEMOCAP release folder")
        need(d.iemocap_speaker_side in SPEAKER_SIDES,
             f"data.iemocap_speaker_side: must be one of {SPEAKER_SIDES}, got {d.iemocap_speaker_side!r}")
        need(0.0 < d.val_fraction < 1.0, f"data.val_fraction: must be in (0, 1), got {d.val_fraction}")
        need(0.0 < d.selection_fraction < 1.0, f"data.selection_fraction: must be in (0, 1), got {d.selection_fraction}")
        need(d.num_folds >= 1, f"data.num_folds: must be >= 1, got {d.num_folds}")
        need(all(1 <= s <= 5 for s in d.iemocap_sessions) and bool(d.iemocap_sessions),
             f"data.iemocap_sessions: must be a non-empty subset of 1..5, got {d.iemocap_sessions}")
        need(d.synthetic_samples >= 4 and d.synthetic_speakers >= 2,
             "data.synthetic_samples must be >= 4 and data.synthetic_speakers >= 2")
        need(d.synthetic_seconds > self.model.min_audio_seconds,
             f"data.synthetic_seconds: must exceed model.min_audio_seconds ({self.model.min_audio_seconds})")
        need(d.extract_batch_size >= 1, f"data.extract_batch_size: must be >= 1, got {d.extract_batch_size}")
        bad = {k: v for k, v in d.label_map.items() if v not in self.model.labels}
        need(not bad, f"data.label_map: targets {bad} are not model labels {self.model.labels}")
        need(o.lr > 0, f"optim.lr: must be > 0, got {o.lr}")
        need(o.weight_decay >= 0 and o.eps > 0, "optim.weight_decay must be >= 0 and optim.eps > 0")
        need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), f"optim.betas: two values in [0, 1), got {o.betas}")
        for name in ("batch_size", "grad_accum_steps", "max_epochs"):
            need(getattr(o, name) >= 1, f"optim.{name}: must be >= 1, got {getattr(o, name)}")
        need(o.patience >= 0 and o.max_grad_norm >= 0, "optim.patience and optim.max_grad_norm must be >= 0")
        need(o.select_metric in SELECT_METRICS,
             f"optim.select_metric: must be one of {SELECT_METRICS}, got {o.select_metric!r}")
        need(self.mixed_precision in PRECISIONS, f"mixed_precision: must be one of {PRECISIONS}, got {self.mixed_precision!r}")
        need(self.keep_checkpoints >= 1, f"keep_checkpoints: must be >= 1, got {self.keep_checkpoints}")
        need(self.stop_after_epochs is None or self.stop_after_epochs >= 1,
             f"stop_after_epochs: must be >= 1 or null, got {self.stop_after_epochs}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict; the model section is the full ``config.json`` mapping."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["model"] = self.model.to_dict()
        out["data"] = dataclasses.asdict(self.data)
        out["optim"] = dataclasses.asdict(self.optim)
        return out

    def save(self, path: str | Path) -> None:
        """Writes the resolved config as YAML, atomically."""
        from gia_mic.utils import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Builds and validates a config from a nested mapping.

        Raises:
            ConfigError: unknown key (named, with a suggestion), wrong type, invalid value.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(raw).__name__}")
        raw = copy.deepcopy(raw)
        values = _section(cls, raw, "", skip=("model", "data", "optim"))
        values["model"] = _model_config(raw.get("model") or {})
        values["data"] = DataConfig(**_section(DataConfig, raw.get("data") or {}, "data."))
        values["optim"] = OptimConfig(**_section(OptimConfig, raw.get("optim") or {}, "optim."))
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
        """Reads a YAML file and applies ``key.sub=value`` overrides."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        for item in overrides:
            apply_override(raw, item)
        return cls.from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Applies one ``dotted.key=value`` override (value parsed as YAML) to a raw mapping."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-4")
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None


def _model_config(raw: dict[str, Any]) -> GiaMicConfig:
    raw = dict(raw)
    preset = raw.pop("preset", None)
    hints = typing.get_type_hints(GiaMicConfig)
    _reject_unknown(raw, hints, "model.")
    values = {k: coerce(v, hints[k], f"model.{k}") for k, v in raw.items()}
    try:
        if preset:
            return GiaMicConfig.from_preset(str(preset), **values)
        return GiaMicConfig.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"model: {err}") from None
    except TypeError as err:
        raise ConfigError(f"model: {err}") from None


def _section(cls: type, raw: dict[str, Any], prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.')}: must be a mapping, got {raw!r}")
    hints = {k: v for k, v in typing.get_type_hints(cls).items() if k not in skip}
    _reject_unknown({k: v for k, v in raw.items() if k not in skip}, hints, prefix)
    return {k: coerce(v, hints[k], prefix + k) for k, v in raw.items() if k not in skip}


def _reject_unknown(raw: dict[str, Any], known: dict[str, Any], prefix: str) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")


def coerce(value: Any, kind: Any, name: str) -> Any:
    """Converts ``value`` to the declared type ``kind`` or raises ``ConfigError`` naming ``name``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, name)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [coerce(v, args[0], f"{name}[{i}]") if args else v for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return {str(k): coerce(v, args[1], f"{name}.{k}") if args else v for k, v in value.items()}
    return _scalar(value, kind, name)


def _scalar(value: Any, kind: Any, name: str) -> Any:
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool) or value is None:
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if kind is int:
            if not number.is_integer():
                raise ConfigError(f"{name}: expected an integer, got {value!r}")
            return int(number)
        return number
    if kind is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    return value
