"""Measuring helpers of the benchmarks: peak memory of a block and latency statistics."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import threading
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)



class PeakMemory:
    """Peak memory of a block: host RSS sampled by a thread (psutil), ru_maxrss growth, CUDA peak.

    ``rss_peak_mib`` is the highest RSS seen during the block minus the RSS when it started
    (what the stage needed on top of what was already resident); ``maxrss_growth_mib`` is the
    growth of the process's high-water mark (0 when an earlier stage already went higher).
    """

    def __init__(self, cuda: bool, interval_s: float = 0.002) -> None:
        self.cuda = cuda
        self.interval_s = interval_s
        self.result: dict[str, float] = {}
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:  # ru_maxrss only
            self._process = None

    def _rss(self) -> int:
        return self._process.memory_info().rss if self._process is not None else 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()
        self._maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self._start = self._peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        if self._process is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.result["cuda_peak_mib"] = (torch.cuda.max_memory_allocated() - self._cuda_start) / 2**20
        self._stop.set()
        if self._process is not None:
            self._thread.join()
            self._peak = max(self._peak, self._rss())
            self.result["rss_peak_mib"] = (self._peak - self._start) / 2**20
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.result["maxrss_growth_mib"] = (maxrss - self._maxrss) / 1024
        self.result["maxrss_mib"] = maxrss / 1024


def stats_ms(samples_s: list[float]) -> dict[str, Any]:
    ms = [s * 1000.0 for s in samples_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "n": len(ms),
            "samples_ms": [round(x, 3) for x in ms]}


def write_json(path: Path, data: Any) -> None:
    """Writes a benchmark's results as indented JSON, atomically (a crash never leaves half a file)."""
    from gia_mic.utils import atomic_write_text

    atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")
