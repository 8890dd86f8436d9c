#!/usr/bin/env python
"""Inference benchmark of GIA-MIC: parameters, per-stage latency, throughput, memory, FLOP/s.

Usage::

    .venv/bin/python benchmarks/inference.py [--json OUT] [--presets tiny,base] [--quick]

Every preset runs in a fresh subprocess (so its peak-memory figures start clean) on random
weights, with no download:

* ``tiny`` is the test preset (encoders built from the configs it carries);
* ``base`` is the ``base`` preset with its three Hub ids replaced by carried configs of the
  same sizes: CLIP ViT-B/16 vision tower, WavLM base+ (group-norm feature encoder, so the
  speech encoder runs one sample at a time) and RoBERTa base.

Stages of one 5-s clip (an mp4 written by ``tests.clips.make_clip``): decode, ASR (an
openai-whisper model with whisper ``tiny`` dimensions and random weights, decoding capped),
preprocess (``GiaMicProcessor``), each encoder, fusion (+ classifier). Batch throughput runs
encoders + fusion on pre-decoded, pre-processed clips. CUDA (with fp16 autocast, as in
``EmotionRecognizer``) is used when present. Timings are medians over repeats; on a shared
machine they are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inference_bench import (  # noqa: E402
    BATCH_SIZES,
    CLIP_FPS,
    CLIP_SECONDS,
    CLIP_SIZE,
    FUSION_TARGET,
    PRESETS,
    ROOT,
    THROUGHPUT_SECONDS,
    TRANSCRIPT,
    worker,
)
from benchmarks.inference_report import findings, machine, markdown  # noqa: E402
from benchmarks.measure import log, write_json  # noqa: E402

SETTINGS = {
    "clip": {"seconds": CLIP_SECONDS, "size": list(CLIP_SIZE), "fps": CLIP_FPS, "writer": "tests.clips.make_clip"},
    "transcript_for_text_encoder": TRANSCRIPT,
    "throughput_clip_seconds": THROUGHPUT_SECONDS, "batch_sizes": list(BATCH_SIZES),
    "fusion_target": FUSION_TARGET, "timing": "median of repeats after a warm-up run; noisy on a shared machine",
    "memory": "rss_peak_mib: peak RSS (psutil, sampled every 2 ms) minus RSS at the stage's start, "
              "in a fresh subprocess per preset; maxrss_growth_mib: ru_maxrss growth; cuda_peak_mib on CUDA",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated: tiny, base")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test / CI)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.preset_list = [p.strip() for p in args.presets.split(",") if p.strip()]
    if not args.worker and (not args.preset_list or any(p not in PRESETS for p in args.preset_list)):
        parser.error(f"--presets: choose from {', '.join(PRESETS)} (got {args.presets!r}); "
                     "the paper preset needs downloaded encoders")
    return args


def run_worker(preset: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """One preset in a fresh subprocess (``--worker``), so its peak-memory figures start clean."""
    out = folder / f"{preset}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", preset, "--worker-out", str(out)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--threads", str(args.threads)] if args.threads else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    log(f"== {preset}: fresh subprocess")
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return json.loads(out.read_text(encoding="utf-8"))


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    """Runs every preset and assembles the report (machine, settings, per-preset results, findings)."""
    command = "benchmarks/inference.py" + (f" --json {args.json}" if args.json else "") + \
        f" --presets {','.join(args.preset_list)}" + (" --quick" if args.quick else "") + \
        (f" --threads {args.threads}" if args.threads else "")
    report: dict[str, Any] = {"schema": 1, "command": command, "quick": args.quick,
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                              "settings": SETTINGS, "presets": {}}
    report["machine"]["loadavg_start"] = list(os.getloadavg())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset_list:
            report["presets"][preset] = run_worker(preset, args, Path(tmp))
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["wall_s"] = time.perf_counter() - start
    first = next(iter(report["presets"].values()))
    report["machine"].update(torch_threads=first["torch_threads"], device=first["device"], **first["versions"])
    report["findings"] = findings(report)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.quick, args.worker_out, args.threads)
        return 0
    report = build_report(args)
    m = report["machine"]
    print(f"\nGIA-MIC inference benchmark: {m['device']} | {m['cpu_model']} ({m['cpu_family_model']}), "
          f"{m['logical_cpus']} logical CPUs, torch {m['torch']} with {m['torch_threads']} threads"
          f"{' | quick' if args.quick else ''} | {report['wall_s']:.0f} s\n")
    print(markdown(report))
    for line in report["findings"]:
        print(f"- {line}")
    if args.json:
        write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
