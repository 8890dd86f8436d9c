"""Registers gia-mic with ``transformers`` when, and only when, transformers' own registries load.

``import gia_mic`` must stay cheap and must not import torch or transformers (the ONNX runtime
lives in this package), yet ``AutoConfig``, ``AutoModel`` and ``pipeline`` should know gia-mic
checkpoints without ``trust_remote_code``. So ``install`` asks Python to run a registration right
after the transformers module that holds the registry has executed (at once if it already has),
handing it that module:

* ``transformers.models.auto.configuration_auto`` -> ``gia_mic.auto.register_config`` (``AutoConfig``);
* ``transformers.models.auto.modeling_auto`` -> ``gia_mic.auto.register_model`` (``AutoModel``);
* ``transformers.pipelines`` -> ``gia_mic.auto_pipeline.register_pipeline_task``
  (``pipeline("multimodal-emotion-recognition", model=...)``).

A registration runs inside whatever import chain loaded its module, so it only uses that module
and modules it has already imported. One that fails logs a warning and leaves transformers as it was.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

HOOKS: dict[str, str] = {
    "transformers.models.auto.configuration_auto": "gia_mic.auto:register_config",
    "transformers.models.auto.modeling_auto": "gia_mic.auto:register_model",
    "transformers.pipelines": "gia_mic.auto_pipeline:register_pipeline_task",
}
"""transformers module -> the ``module:function`` called with it once it has executed."""


def _register(target: str, registry: ModuleType) -> None:
    module, function = target.split(":")
    try:
        getattr(importlib.import_module(module), function)(registry)
    except Exception as err:  # a broken integration must never break `import transformers`
        logger.warning("gia-mic could not register with transformers (%s: %s); AutoModel and pipeline "
                       "will not know gia-mic checkpoints", type(err).__name__, err)


class _AfterImport(MetaPathFinder):
    """Runs a callback right after each watched module has executed, the first time it is imported."""

    def __init__(self, callbacks: dict[str, Callable[[ModuleType], None]]) -> None:
        self.callbacks = callbacks

    def find_spec(self, name: str, path: Any = None, target: ModuleType | None = None) -> ModuleSpec | None:
        """The spec the other finders give ``name``, its loader set to call back after executing."""
        if name not in self.callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            callback = self.callbacks.pop(name, None)
            if callback is not None:
                callback(module)

        loader.exec_module = exec_module  # this spec's own loader object (each find_spec makes a new one)
        return spec


_FINDER: _AfterImport | None = None


def install() -> None:
    """Registers now for the transformers modules already imported, later for the others (idempotent)."""
    global _FINDER
    if _FINDER is not None:
        return
    pending = {}
    for name, target in HOOKS.items():
        if name in sys.modules:
            _register(target, sys.modules[name])
        else:
            pending[name] = lambda module, target=target: _register(target, module)
    _FINDER = _AfterImport(pending)
    sys.meta_path.insert(0, _FINDER)
