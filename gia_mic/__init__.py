"""gia_mic: GIA-MIC multimodal emotion recognition (video frames, speech, transcript).

The names below are imported on first use (PEP 562), so ``import gia_mic`` alone does not
import torch or transformers: the torch-free ONNX runtime (``gia_mic.onnx_runtime``) and the
media decoder live in this package too. ``transformers``' ``AutoConfig``, ``AutoModel`` and
``pipeline("multimodal-emotion-recognition")`` learn gia-mic when their modules are imported
(``gia_mic.registration``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gia_mic import registration

if TYPE_CHECKING:
    from gia_mic.configuration import MODALITIES, ConfigError, GiaMicConfig, normalize_modalities
    from gia_mic.modeling import GiaMicForEmotionRecognition, GiaMicOutput
    from gia_mic.processing import GiaMicProcessor, InputError

_EXPORTS = {
    "MODALITIES": "gia_mic.configuration",
    "ConfigError": "gia_mic.configuration",
    "GiaMicConfig": "gia_mic.configuration",
    "normalize_modalities": "gia_mic.configuration",
    "GiaMicForEmotionRecognition": "gia_mic.modeling",
    "GiaMicOutput": "gia_mic.modeling",
    "GiaMicProcessor": "gia_mic.processing",
    "InputError": "gia_mic.processing",
}
__all__ = [
    "MODALITIES",
    "ConfigError",
    "GiaMicConfig",
    "GiaMicForEmotionRecognition",
    "GiaMicOutput",
    "GiaMicProcessor",
    "InputError",
    "normalize_modalities",
]
__version__ = "0.1.0"

registration.install()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gia_mic' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
