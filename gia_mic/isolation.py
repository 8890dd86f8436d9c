"""Decoding of untrusted media files in a worker process with memory, CPU and time limits.

FFmpeg's decoders are native code: a crafted or damaged file can crash them, hang them or
make them allocate without bound. ``IsolatedDecoder`` runs ``media.decode_clip`` in a child
process so that such a file becomes that file's ``MediaError`` while the caller (the app's
server, a long ``gia-mic evaluate`` run) keeps going:

* memory: the worker's address space is capped (``RLIMIT_AS``);
* CPU: each file may use at most ``cpu_seconds`` of CPU time (``RLIMIT_CPU``, raised
  before every file);
* wall time: a file that takes longer than ``wall_seconds`` gets its worker killed.

Results come back as a JSON header plus raw array bytes, never as a pickle, so even a
worker taken over by a malicious file cannot make the parent run code. Workers are kept
alive between files (one per concurrent caller) and replaced after a failure.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gia_mic.media import DecodedClip, MediaError

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_MB = 3072
DEFAULT_CPU_SECONDS = 120
DEFAULT_WALL_SECONDS = 180
_ARRAYS = ("frames", "frame_times", "audio")
DEFAULT_TARGET = "gia_mic.media:decode_clip"
DEFAULT_STREAM_TARGET = "gia_mic.audio_stream:stream_audio"
_STARTUP_SECONDS = 120.0
_DTYPES = {"frames": ("|u1",), "frame_times": ("<f8",), "audio": ("<f4",)}


@dataclass(frozen=True)
class Limits:
    """Per-file limits of an ``IsolatedDecoder``.

    Attributes:
        memory_mb: Address-space cap of the worker process, in MiB.
        cpu_seconds: CPU time one file may use.
        wall_seconds: Wall-clock time one file may take.
    """

    memory_mb: int = DEFAULT_MEMORY_MB
    cpu_seconds: int = DEFAULT_CPU_SECONDS
    wall_seconds: float = DEFAULT_WALL_SECONDS


# ---------------------------------------------------------------------------------------------- framing
def _write(stream, payload: bytes) -> None:
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def _read_exact(stream, count: int) -> bytes:
    data = stream.read(count)
    if data is None or len(data) != count:
        raise EOFError("the decoder process closed its pipe")
    return data


def _read(stream, limit: int) -> bytes:
    (size,) = struct.unpack(">Q", _read_exact(stream, 8))
    if size > limit:
        raise ValueError(f"a {size}-byte message exceeds the {limit}-byte bound")
    return _read_exact(stream, size)


# ---------------------------------------------------------------------------------------------- worker side
def _mapped_bytes() -> int:
    """Address space the process has mapped now (Linux), else 0."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _set_memory_limit(memory_mb: int) -> None:
    """Caps the address space at what the worker maps after its imports plus ``memory_mb``."""
    import resource

    cap = _mapped_bytes() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _allow_cpu(seconds: int) -> None:
    """Lets the next file use ``seconds`` more CPU time than the worker has used so far."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used.ru_utime + used.ru_stime) + 1 + seconds
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _encode_clip(clip: DecodedClip) -> list[bytes]:
    header: dict[str, Any] = {"ok": True, "path": clip.path, "sample_rate": clip.sample_rate, "duration": clip.duration,
                              "truncated": clip.truncated, "missing": clip.missing, "arrays": {}}
    blobs = []
    for name in _ARRAYS:
        value = getattr(clip, name)
        if value is not None:
            array = np.ascontiguousarray(value)
            header["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape)}
            blobs.append(array.tobytes())
    return [json.dumps(header).encode("utf-8"), *blobs]


def _failure(kind: str, message: str = "") -> list[bytes]:
    return [json.dumps({"ok": False, "kind": kind, "message": message}).encode("utf-8")]


def _transcode(request: dict[str, Any], stream_audio: Any) -> int:
    """Streams a file's audio into raw little-endian float32 samples at ``out``; returns the count."""
    count = 0
    with open(request["out"], "wb") as handle:
        for chunk in stream_audio(request["path"], sample_rate=int(request["sample_rate"]), end=request["max_seconds"]):
            handle.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
            count += len(chunk)
    return count


def _load(target: str) -> Any:
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _serve(memory_mb: int, cpu_seconds: int, target: str, stream_target: str) -> None:  # pragma: no cover - worker
    """Decodes one request at a time from stdin until the parent closes it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    decode, stream = _load(target), _load(stream_target)
    _set_memory_limit(memory_mb)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but results may reach the pipe
    _write(stdout, b"ready")
    while True:
        try:
            request = json.loads(_read(stdin, 1 << 20).decode("utf-8"))
        except EOFError:
            return
        _allow_cpu(cpu_seconds)
        try:
            if request.get("op") == "transcode":
                parts = [json.dumps({"ok": True, "samples": _transcode(request, stream)}).encode("utf-8")]
            else:
                parts = _encode_clip(decode(request["path"], **request["kwargs"]))
        except MediaError as err:
            parts = _failure("media", str(err))
        except MemoryError:
            parts = _failure("memory")
        except Exception as err:  # anything else is this file's failure too, never the parent's
            parts = _failure("media", f"{request['path']} cannot be decoded: {type(err).__name__}: {err}")
        for part in parts:
            _write(stdout, part)


# ---------------------------------------------------------------------------------------------- parent side
def _result_bytes(kwargs: dict[str, Any]) -> int:
    """Upper bound of one array of a ``decode_clip`` result with these arguments."""
    from gia_mic.media import MAX_SIDE

    frames = int(kwargs.get("num_frames", 8)) * MAX_SIDE * MAX_SIDE * 3
    audio = int((float(kwargs.get("max_seconds", 30.0)) + 1.0) * int(kwargs.get("sample_rate", 16000)) * 4)
    return max(frames, audio) + 4096


class _Worker:
    """One ``python -m gia_mic.isolation`` process speaking length-prefixed frames on stdin/stdout."""

    def __init__(self, limits: Limits, target: str, stream_target: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OMP_NUM_THREADS="1")
        args = [sys.executable, "-m", "gia_mic.isolation", str(limits.memory_mb), str(limits.cpu_seconds), target,
                stream_target]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        start_new_session=True)
        self.ready = False

    def start(self) -> None:
        """Waits for the worker's imports (not counted in a file's wall time)."""
        if not self.ready:
            if not self.wait_readable(_STARTUP_SECONDS) or _read(self.process.stdout, 16) != b"ready":
                raise EOFError("the decoder process did not start")
            self.ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_readable(self, seconds: float) -> bool:
        ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, seconds))
        return bool(ready)

    def stop(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class IsolatedDecoder:
    """``decode_clip`` in a sandboxed worker process (see the module docstring).

    Args:
        limits: Memory, CPU-time and wall-time limits per file.
        max_workers: Workers kept alive for concurrent callers (more callers wait).
        target: ``"module:function"`` the worker decodes clips with; default ``DEFAULT_TARGET``,
            i.e. ``media.decode_clip`` (tests swap in functions that crash, hang or exhaust memory).
        stream_target: The same for ``transcode`` (default ``audio_stream.stream_audio``).

    A call takes the same keyword arguments as ``media.decode_clip`` and returns the same
    ``DecodedClip``; a crash, hang or memory blow-up raises ``MediaError`` naming the file.
    """

    def __init__(self, limits: Limits | None = None, *, max_workers: int = 2,
                 target: str | None = None, stream_target: str | None = None) -> None:
        self.limits = limits or Limits()
        self.target = target or DEFAULT_TARGET
        self.stream_target = stream_target or DEFAULT_STREAM_TARGET
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, max_workers))
        self._closed = False

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.stop()
        return _Worker(self.limits, self.target, self.stream_target)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed:
                worker.stop()
            else:
                self._idle.append(worker)

    def __call__(self, path: str | os.PathLike, **kwargs: Any) -> DecodedClip:
        """Decodes ``path`` in a worker; see ``media.decode_clip`` for ``kwargs``."""
        file = Path(os.fspath(path))
        request = {"path": str(file), "kwargs": kwargs}
        return self._ask(file, request, lambda worker: self._receive(worker, file, _result_bytes(kwargs)))

    def transcode(self, path: str | os.PathLike, out: str | os.PathLike, *, sample_rate: int,
                  max_seconds: float | None = None) -> int:
        """Writes the audio of ``path`` (any length, streamed) to ``out`` as raw float32 mono samples.

        The untrusted container is parsed in the worker; what comes back is plain PCM that
        ``numpy.memmap`` reads in bounded memory. Returns the number of samples.

        Raises:
            MediaError: the file cannot be read, has no audio, or crashed, hung or bombed the worker.
        """
        file = Path(os.fspath(path))
        request = {"op": "transcode", "path": str(file), "out": str(Path(out)), "sample_rate": int(sample_rate),
                   "max_seconds": max_seconds}
        return self._ask(file, request, lambda worker: self._receive_count(worker, file))

    def _ask(self, file: Path, request: dict[str, Any], receive: Any) -> Any:
        with self._slots:
            worker = self._take()
            try:
                worker.start()
                _write(worker.process.stdin, json.dumps(request).encode("utf-8"))
                result = receive(worker)
            except (BrokenPipeError, EOFError):
                worker.stop()
                raise MediaError(self._death(worker, file)) from None
            except BaseException:
                worker.stop()
                raise
            self._give_back(worker)
            return result

    def _receive_count(self, worker: _Worker, file: Path) -> int:
        if not worker.wait_readable(self.limits.wall_seconds):
            raise MediaError(f"{file}: decoding took longer than {self.limits.wall_seconds:g} s and was stopped "
                             "(the file may be damaged or crafted)")
        try:
            header = json.loads(_read(worker.process.stdout, 1 << 20).decode("utf-8"))
        except (KeyError, TypeError, ValueError) as err:
            raise MediaError(f"{file}: the decoder returned a malformed result ({type(err).__name__})") from None
        if not header.get("ok"):
            self._raise_failure(file, header)
        return int(header["samples"])

    def _raise_failure(self, file: Path, header: dict[str, Any]) -> None:
        if header.get("kind") == "memory":
            raise MediaError(f"{file}: decoding needs more than {self.limits.memory_mb} MB of memory "
                             "(the file may be damaged or crafted)")
        raise MediaError(str(header.get("message")))

    def _receive(self, worker: _Worker, file: Path, limit: int) -> DecodedClip:
        deadline = time.monotonic() + self.limits.wall_seconds
        if not worker.wait_readable(deadline - time.monotonic()):
            raise MediaError(f"{file}: decoding took longer than {self.limits.wall_seconds:g} s and was stopped "
                             "(the file may be damaged or crafted)")
        stream = worker.process.stdout
        try:
            header = json.loads(_read(stream, 1 << 20).decode("utf-8"))
            failure = None if header["ok"] else (str(header["kind"]), str(header["message"]))
            if failure is None:
                arrays = {name: self._array(stream, name, spec, limit) for name, spec in header["arrays"].items()}
                return DecodedClip(path=str(header["path"]), frames=arrays.get("frames"),
                                   frame_times=arrays.get("frame_times"), audio=arrays.get("audio"),
                                   sample_rate=int(header["sample_rate"]), duration=float(header["duration"]),
                                   truncated=bool(header["truncated"]), missing=dict(header["missing"]))
        except EOFError:
            worker.stop()
            raise MediaError(self._death(worker, file)) from None
        except (KeyError, TypeError, ValueError, AttributeError) as err:  # a worker that breaks the protocol
            raise MediaError(f"{file}: the decoder returned a malformed result ({type(err).__name__})") from None
        self._raise_failure(file, {"kind": failure[0], "message": failure[1]})

    @staticmethod
    def _array(stream, name: str, spec: dict[str, Any], limit: int) -> np.ndarray:
        """One array of the result, checked against the protocol (name, dtype, size) before use."""
        if name not in _DTYPES or spec["dtype"] not in _DTYPES[name]:
            raise ValueError(f"unexpected array {name!r}")
        shape = [int(n) for n in spec["shape"]]
        data = _read(stream, limit)
        return np.frombuffer(data, dtype=np.dtype(spec["dtype"])).reshape(shape).copy()

    def _death(self, worker: _Worker, file: Path) -> str:
        code = worker.process.wait()
        if code < 0 and -code == getattr(signal, "SIGXCPU", -1):
            return f"{file}: decoding used more than {self.limits.cpu_seconds} s of CPU and was stopped"
        reason = signal.Signals(-code).name if code < 0 else f"exit code {code}"
        return f"{file} crashed the media decoder ({reason}); the file is damaged or not a supported format"

    def close(self) -> None:
        """Stops every idle worker (busy ones stop when their call returns)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def __enter__(self) -> IsolatedDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover - the worker process
    _serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
