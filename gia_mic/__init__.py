"""gia_mic: GIA-MIC multimodal emotion recognition (video frames, speech, transcript)."""

from gia_mic.configuration import MODALITIES, ConfigError, GiaMicConfig, normalize_modalities
from gia_mic.modeling import GiaMicForEmotionRecognition, GiaMicOutput
from gia_mic.processing import GiaMicProcessor, InputError

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
