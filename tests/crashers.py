"""Stand-ins for a native decoder that crashes, hangs or allocates without bound (isolation tests)."""

from __future__ import annotations

import ctypes
import time

import numpy as np


def segfault(path, **_):
    """Dies of SIGSEGV, as PyAV did on planar audio with 8+ channels."""
    ctypes.string_at(0)


def hang(path, **_):
    """Never returns, without using CPU."""
    time.sleep(3600)


def spin(path, **_):
    """Burns CPU for ever."""
    while True:
        pass


def memory_bomb(path, **_):
    """Allocates until the address-space limit stops it."""
    blocks = []
    while True:
        blocks.append(np.ones(256 * 1024 * 1024, dtype=np.uint8))


def crash_on_name(path, **kwargs):
    """``decode_clip``, except that a file whose name starts with ``crash`` kills the process."""
    from pathlib import Path

    from gia_mic.media import decode_clip

    if Path(path).name.startswith("crash"):
        segfault(path)
    return decode_clip(path, **kwargs)


def stream_crash_on_name(path, **kwargs):
    """``audio_stream.stream_audio``, except that a file named ``crash*`` kills the process."""
    from pathlib import Path

    from gia_mic.audio_stream import stream_audio

    if Path(path).name.startswith("crash"):
        segfault(path)
    return stream_audio(path, **kwargs)
