"""The Gradio app on a tiny checkpoint, served in-process on 127.0.0.1 for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def load_app():
    """The ``app`` module at the repository root (it is not a package)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import app

    return app


def tiny_recognizer(checkpoint: Path, **kwargs: Any):
    """``EmotionRecognizer`` over a saved tiny checkpoint, CPU, ASR off unless given."""
    from gia_mic.pipeline import EmotionRecognizer

    kwargs.setdefault("asr_model", None)
    return EmotionRecognizer.from_pretrained(checkpoint, device="cpu", **kwargs)


@contextlib.contextmanager
def serve(recognizer: Any, **demo_kwargs: Any) -> Iterator[tuple[Any, str]]:
    """Builds and launches the demo on a free 127.0.0.1 port; yields ``(demo, url)``; closes it."""
    app = load_app()
    demo = app.build_demo(recognizer, **demo_kwargs)
    _, url, _ = app.launch(demo, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield demo, url
    finally:
        demo.close()
