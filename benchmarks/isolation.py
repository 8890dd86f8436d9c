"""Overhead of decoding in the sandboxed worker (``gia_mic.isolation``) vs in-process, per clip.

    python benchmarks/isolation.py [--repeats 10] [--json OUT]

Decodes the example clips (``examples/*.mp4``, 2-3 s talking-face videos) with the model's
settings (8 frames, 16 kHz, 8-s window), first in this process, then through an
``IsolatedDecoder`` whose worker is already started; also times a cold worker start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from gia_mic.isolation import IsolatedDecoder
from gia_mic.media import decode_clip

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root, for `benchmarks`

from benchmarks.measure import write_json  # noqa: E402

KWARGS = {"num_frames": 8, "sample_rate": 16000, "max_seconds": 8.0}


def per_clip_ms(decode, clips, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        for clip in clips:
            start = time.perf_counter()
            decode(clip, **KWARGS)
            times.append((time.perf_counter() - start) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clips = sorted((ROOT / "examples").glob("*.mp4"))
    with IsolatedDecoder() as decoder:
        start = time.perf_counter()
        decoder(clips[0], **KWARGS)
        cold_ms = (time.perf_counter() - start) * 1000.0
        per_clip_ms(decode_clip, clips, 1)  # warm caches on both sides
        direct = per_clip_ms(decode_clip, clips, args.repeats)
        isolated = per_clip_ms(decoder, clips, args.repeats)
    result = {"clips": len(clips), "repeats": args.repeats, "in_process_ms_median": statistics.median(direct),
              "isolated_ms_median": statistics.median(isolated),
              "overhead_ms_median": statistics.median(isolated) - statistics.median(direct),
              "cold_worker_first_clip_ms": cold_ms}
    print(f"| decode of one example clip | median ms |\n|---|---|\n| in process | {result['in_process_ms_median']:.1f} |\n"
          f"| isolated worker (warm) | {result['isolated_ms_median']:.1f} |\n"
          f"| overhead per clip | {result['overhead_ms_median']:.1f} |\n"
          f"| first clip incl. worker start | {cold_ms:.0f} |")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
