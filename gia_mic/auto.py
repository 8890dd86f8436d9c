"""``transformers.AutoConfig`` and ``AutoModel`` for gia-mic checkpoints (``model_type: gia-mic``).

    import gia_mic  # noqa: F401  (registers; see gia_mic.registration)
    from transformers import AutoConfig, AutoModel

    model = AutoModel.from_pretrained("runs/tiny/best")   # a GiaMicForEmotionRecognition
    AutoConfig.from_pretrained("runs/tiny/best").id2label  # {0: "neutral", 1: "happy", ...}

``AutoModel`` dispatches on ``model_type`` to ``GiaMicForEmotionRecognition.from_pretrained``
(strict, safetensors only, nothing executed from the checkpoint), so ``trust_remote_code`` is
never needed. The ``pipeline`` task lives in ``gia_mic.auto_pipeline``; ``gia_mic.registration`` registers both.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from transformers.configuration_utils import PreTrainedConfig

from gia_mic.configuration import MODEL_TYPE, GiaMicConfig

HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "token")
"""``from_pretrained`` keywords passed on to the Hub download (``gia_mic.hub.resolve``)."""
BOOKKEEPING_KWARGS = ("trust_remote_code", "adapter_kwargs", "code_revision", "_from_auto", "_from_pipeline",
                      "_commit_hash")
"""Keywords transformers' ``AutoModel`` and ``pipeline`` add on their own; none changes how a checkpoint loads."""


class GiaMicTransformersConfig(PreTrainedConfig):
    """``config.json`` as ``AutoConfig`` reads it; ``to_gia_mic()`` gives the validated ``GiaMicConfig``.

    ``id2label`` / ``label2id`` follow the checkpoint's ``labels`` (transformers' convention).
    """

    model_type = MODEL_TYPE

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        labels = getattr(self, "labels", None)
        if isinstance(labels, list) and labels:
            self.id2label = dict(enumerate(labels))
            self.label2id = {label: i for i, label in enumerate(labels)}

    def to_gia_mic(self) -> GiaMicConfig:
        """The gia-mic config these values describe (validated; raises ``ConfigError``)."""
        names = {f.name for f in dataclasses.fields(GiaMicConfig)}
        return GiaMicConfig.from_dict({k: v for k, v in self.to_dict().items() if k in names})


class GiaMicAutoModel:
    """What ``AutoModel`` resolves ``model_type: gia-mic`` to: ``GiaMicForEmotionRecognition``'s loaders."""

    config_class = GiaMicTransformersConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args: Any, config: Any = None,
                        revision: str | None = None, dtype: Any = None, subfolder: str = "", **kwargs: Any) -> Any:
        """``GiaMicForEmotionRecognition.from_pretrained`` with transformers' keywords.

        ``config`` is ignored (the checkpoint's own ``config.json`` is read and validated again);
        ``dtype`` (e.g. ``torch.float16``) casts the loaded model, ``"auto"`` keeps float32.

        Raises:
            TypeError: positional model arguments or keywords gia-mic does not support (named).
            ValueError: a ``subfolder`` (gia-mic checkpoints are whole repos or folders).
        """
        from gia_mic.modeling import GiaMicForEmotionRecognition

        for key in BOOKKEEPING_KWARGS:
            kwargs.pop(key, None)
        hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
        if model_args or kwargs:
            raise TypeError(f"gia-mic checkpoints do not take {[*map(repr, model_args), *sorted(kwargs)]} "
                            "when loaded through AutoModel")
        if subfolder:
            raise ValueError(f"subfolder={subfolder!r}: give the checkpoint folder itself (gia-mic checkpoints are "
                             "not stored in sub-folders)")
        model = GiaMicForEmotionRecognition.from_pretrained(pretrained_model_name_or_path, revision=revision, **hub)
        return model if dtype in (None, "auto") else model.to(dtype)

    @classmethod
    def _from_config(cls, config: GiaMicTransformersConfig, **kwargs: Any) -> Any:
        """``AutoModel.from_config``: a fresh model (pretrained encoders by id, or carried configs)."""
        from gia_mic.modeling import GiaMicForEmotionRecognition

        if kwargs:
            raise TypeError(f"gia-mic models take no extra arguments, got {sorted(kwargs)}")
        return GiaMicForEmotionRecognition.from_config(config.to_gia_mic())


def register_config(configuration_auto: ModuleType) -> None:
    """``AutoConfig`` for ``model_type: gia-mic``, given ``transformers.models.auto.configuration_auto``."""
    configuration_auto.AutoConfig.register(MODEL_TYPE, GiaMicTransformersConfig, exist_ok=True)


def register_model(modeling_auto: ModuleType) -> None:
    """``AutoModel`` for ``GiaMicTransformersConfig``, given ``transformers.models.auto.modeling_auto``."""
    modeling_auto.AutoModel.register(GiaMicTransformersConfig, GiaMicAutoModel, exist_ok=True)
