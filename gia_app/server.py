"""Serving the app: model choice, command line, the upload janitor and ``launch`` (web page, API and MCP)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from gia_app.ui import DEFAULT_CONCURRENCY, DEFAULT_MAX_UPLOAD_MB, DEFAULT_QUEUE_SIZE, build_demo
from gia_mic.asr import DEFAULT_ASR_MODEL
from gia_mic.errors import USER_ERRORS
from gia_mic.hub import default_model

logger = logging.getLogger("gia_mic.app")

APP_DIR = Path(__file__).resolve().parents[1]
DEFAULT_MAX_STORED_MB = 2048.0


class UploadJanitor:
    """Keeps the app's uploaded and generated files under a total size (oldest deleted first).

    Gradio's ``delete_cache`` removes files older than an age and everything at shutdown; this
    bounds the total in between, so a client posting uploads cannot fill the disk.

    Args:
        demo: The Blocks whose tracked files (``temp_file_sets``) are swept.
        max_bytes: Total size kept.
        every: Seconds between sweeps.
    """

    def __init__(self, demo: gr.Blocks, max_bytes: int, every: float = 10.0) -> None:
        self.demo, self.max_bytes, self.every = demo, max_bytes, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gia-mic-upload-janitor", daemon=True)

    def start(self) -> UploadJanitor:
        """Starts sweeping in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops sweeping."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sweep()

    def sweep(self) -> int:
        """Deletes the oldest tracked files until the total is under ``max_bytes``; returns bytes freed."""
        files = []
        for tracked in list(self.demo.temp_file_sets):
            for name in list(tracked):
                with contextlib.suppress(OSError):
                    stat = os.stat(name)
                    files.append((stat.st_mtime, stat.st_size, name, tracked))
        total, freed = sum(f[1] for f in files), 0
        for _, size, name, tracked in sorted(files):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.remove(name)
            tracked.discard(name)
            total, freed = total - size, freed + size
        if freed:
            logger.info("upload store over %d MB: deleted %d MB of the oldest files", self.max_bytes >> 20, freed >> 20)
        return freed


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, prevent_thread_lock: bool = False,
           max_stored_mb: float = DEFAULT_MAX_STORED_MB, mcp_server: bool = True, **kwargs: Any) -> Any:
    """Starts the server with the demo's upload limit and a bounded upload store.

    Uploads and generated files older than ``UPLOAD_MAX_AGE_S`` are deleted (Gradio's
    ``delete_cache``), all of them when the server stops, and the oldest as soon as their total
    exceeds ``max_stored_mb`` (``UploadJanitor``). With ``mcp_server`` (default) the page is also
    an MCP server at ``/gradio_api/mcp/`` whose tools are ``classify`` and ``timeline``.
    """
    max_mb = getattr(demo, "gia_mic_max_upload_mb", DEFAULT_MAX_UPLOAD_MB)
    if mcp_server and importlib.util.find_spec("mcp") is None:
        logger.warning("the mcp package is missing (pip install 'gradio[mcp]'): serving without the MCP server")
        mcp_server = False
    janitor = UploadJanitor(demo, int(max_stored_mb * 1024 * 1024)).start()
    demo.gia_mic_janitor = janitor
    return demo.launch(server_name=host, server_port=port, max_file_size=int(max_mb * 1024 * 1024),
                       prevent_thread_lock=prevent_thread_lock, show_error=True, footer_links=["api"],
                       mcp_server=mcp_server, css=getattr(demo, "gia_mic_css", None), **kwargs)


def space_model(readme: Path) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` from a Space README's front matter (``models`` + ``preload_from_hub``)."""
    if not readme.is_file():
        return None
    import yaml

    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return None
    if not isinstance(meta, dict) or "sdk" not in meta or not meta.get("models"):
        return None
    model = str(meta["models"][0])
    for entry in meta.get("preload_from_hub") or []:
        parts = str(entry).split()
        if parts and parts[0] == model and len(parts) == 3:
            return model, parts[2]
    return model, None


def choose_model(arg: str | None) -> tuple[str, str | None]:
    """``--model`` > ``$GIA_MIC_MODEL`` > the Space README's model > the embedded default.

    ``ORG/NAME@REV`` pins a Hub revision. Raises ``CheckpointError`` when nothing is given.
    """
    chosen = arg or os.environ.get("GIA_MIC_MODEL")
    if not chosen:
        found = space_model(APP_DIR / "README.md")
        if found is not None:
            return found
        chosen = default_model()
    if "@" in chosen and not Path(chosen).exists():
        name, revision = chosen.rsplit("@", 1)
        return name, revision or None
    return chosen, None


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(name) or default


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags (each also has an environment variable)."""
    p = argparse.ArgumentParser(description="GIA-MIC Gradio demo")
    p.add_argument("--model", default=None, help="checkpoint dir or ORG/NAME[@REV] (env GIA_MIC_MODEL; default: "
                                                 "the embedded checkpoints/gia-mic-lite)")
    p.add_argument("--host", default=_env("GRADIO_SERVER_NAME", "127.0.0.1"), help="bind address (env GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(_env("GRADIO_SERVER_PORT", "7860")), help="env GRADIO_SERVER_PORT")
    p.add_argument("--asr-model", default=_env("GIA_MIC_ASR_MODEL", DEFAULT_ASR_MODEL),
                   help="Whisper model for clips without a transcript, or 'none' (env GIA_MIC_ASR_MODEL)")
    p.add_argument("--device", default=_env("GIA_MIC_DEVICE", None), help="cpu or cuda (default: cuda when present)")
    p.add_argument("--max-upload-mb", type=float, default=float(_env("GIA_MIC_MAX_UPLOAD_MB", str(DEFAULT_MAX_UPLOAD_MB))),
                   help="largest upload in MB (env GIA_MIC_MAX_UPLOAD_MB)")
    p.add_argument("--max-seconds", type=float, default=_env("GIA_MIC_MAX_SECONDS", None),
                   help="longest clip in seconds (env GIA_MIC_MAX_SECONDS; default and ceiling: the model's "
                        "max_audio_seconds)")
    p.add_argument("--concurrency", type=int, default=int(_env("GIA_MIC_CONCURRENCY", str(DEFAULT_CONCURRENCY))),
                   help="predictions at once (env GIA_MIC_CONCURRENCY)")
    p.add_argument("--queue-size", type=int, default=int(_env("GIA_MIC_QUEUE_SIZE", str(DEFAULT_QUEUE_SIZE))),
                   help="requests that may wait (env GIA_MIC_QUEUE_SIZE)")
    return p


def create_demo(args: argparse.Namespace) -> gr.Blocks:
    """Loads the model once (GPU when present) and builds the app; ``CheckpointError`` if none is given."""
    from gia_mic.pipeline import EmotionRecognizer

    model, revision = choose_model(args.model)
    asr = None if str(args.asr_model).lower() in ("none", "off", "") else args.asr_model
    print(f"loading {model}{'@' + revision if revision else ''} ...", flush=True)
    recognizer = EmotionRecognizer.from_pretrained(model, revision=revision, asr_model=asr, device=args.device,
                                                   isolate=True)  # a crashing upload must not take the server down
    print(f"model on {recognizer.device}; labels: {', '.join(recognizer.labels)}", flush=True)
    return build_demo(recognizer, max_upload_mb=args.max_upload_mb,
                      max_seconds=float(args.max_seconds) if args.max_seconds else None,
                      concurrency=args.concurrency, queue_size=args.queue_size)


def main(argv: list[str] | None = None) -> int:
    """Serves the app until interrupted; exit status 2 when no usable model is given."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        demo = create_demo(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    launch(demo, host=args.host, port=args.port)
    return 0
