#!/usr/bin/env python
"""ONNX runtime vs torch on the embedded checkpoint: equality, cold start, latency, resident memory.

Usage::

    .venv/bin/python benchmarks/onnx.py [--model checkpoints/gia-mic-lite] [--export DIR] [--threads 1]
                                        [--data ../shared/data] [--json benchmarks/results/onnx-cpu.json]

1. Exports ``--model`` with ``gia_mic.onnx_export`` (or reuses ``--export`` when it holds one).
2. Equality: both backends classify the example clips (speech + the given transcript, and speech
   alone) and, when ``--data`` holds RAVDESS, every clip of the test actors 17-20 (speech + its
   transcript); prints the max and mean |Δp| over all classes and the label agreement.
3. For each backend a fresh process (``--worker``) imports, loads, classifies one example clip
   with its transcript (cold start: process wall time to the first answer, with the split into
   import / load / first prediction), then repeats it (warm latency, median) and reports its peak
   resident memory (``VmHWM``). No ASR: the transcript is given, since Whisper needs torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root, for `benchmarks`

from benchmarks.measure import write_json  # noqa: E402

CLIP = ROOT / "examples" / "1001_DFA_ANG_XX.mp4"
TEXT = "Don't forget a jacket."
REPEATS = 10


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``; ``ru_maxrss`` would include the parent's, kept across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(backend: str, model: str, export: str, threads: int) -> dict:
    """Runs in a fresh process: cold start, warm latency and peak RSS of one backend."""
    start = time.perf_counter()
    if backend == "onnx":
        from gia_mic.onnx_runtime import OnnxEmotionRecognizer

        imported = time.perf_counter()
        rec = OnnxEmotionRecognizer(export, threads=threads)
    else:
        import torch

        torch.set_num_threads(threads)
        from gia_mic.pipeline import EmotionRecognizer

        imported = time.perf_counter()
        rec = EmotionRecognizer.from_pretrained(model, asr_model=None, device="cpu")
    loaded = time.perf_counter()
    label = rec(video=CLIP, text=TEXT).label
    first = time.perf_counter()
    samples = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        rec(video=CLIP, text=TEXT)
        samples.append((time.perf_counter() - t) * 1000.0)
    return {"backend": backend, "label": label, "import_s": imported - start, "load_s": loaded - imported,
            "first_prediction_s": first - loaded, "warm_latency_ms": statistics.median(samples),
            "warm_latency_samples_ms": [round(s, 2) for s in samples],
            "peak_rss_mib": peak_rss_mib(),
            "torch_imported": "torch" in sys.modules}


def run_worker(backend: str, args: argparse.Namespace, export: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", backend, "--model", args.model,
           "--export", str(export), "--threads", str(args.threads)]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cold_start_s"] = result["import_s"] + result["load_s"] + result["first_prediction_s"]
    result["process_wall_s"] = wall
    return result


def equality(args: argparse.Namespace, export: Path) -> dict:
    import numpy as np

    from gia_mic.onnx_runtime import OnnxEmotionRecognizer
    from gia_mic.pipeline import EmotionRecognizer

    onnx = OnnxEmotionRecognizer(export, threads=args.threads)
    torch_rec = EmotionRecognizer.from_pretrained(args.model, asr_model=None, device="cpu")
    sets = {"examples, speech + transcript": [{"video": p, "text": TEXT} for p in sorted((ROOT / "examples").glob("*.mp4"))],
            "examples, speech": [{"audio": p} for p in sorted((ROOT / "examples").glob("*.mp4"))]}
    manifest = Path(args.data) / "ravdess" / "manifest.csv"
    if manifest.exists():
        rows = [r for r in csv.DictReader(manifest.open()) if int(r["actor"]) >= 17]
        sets["RAVDESS actors 17-20, speech + transcript"] = [
            {"audio": manifest.parent / r["path"], "text": r["transcript"]} for r in rows]
    out = {}
    for name, items in sets.items():
        diffs, agree = [], 0
        for start in range(0, len(items), 8):
            chunk = items[start : start + 8]
            for a, b in zip(onnx.predict_batch(chunk), torch_rec.batch(chunk)):
                pb = {s["label"]: s["score"] for s in b.scores}
                diffs.append(max(abs(s["score"] - pb[s["label"]]) for s in a.scores))
                agree += a.label == b.label
        out[name] = {"n": len(items), "max_abs_dp": float(np.max(diffs)), "mean_abs_dp": float(np.mean(diffs)),
                     "same_label": agree}
        print(f"{name}: n={len(items)} max |Δp| {np.max(diffs):.2e}, mean {np.mean(diffs):.2e}, "
              f"same label {agree}/{len(items)}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "gia-mic-lite"))
    parser.add_argument("--export", help="an existing export folder (default: export to a temporary one)")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=("onnx", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.export, args.threads)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(args.export) if args.export else Path(tmp) / "onnx"
        if not (export / "onnx_export.json").exists():
            from gia_mic.onnx_export import export_onnx

            start = time.perf_counter()
            export_onnx(args.model, export)
            print(f"exported in {time.perf_counter() - start:.1f} s", flush=True)
        sizes = {p.name: round(p.stat().st_size / 1e6, 2) for p in export.glob("*.onnx")}
        report = {"model": os.path.relpath(args.model, ROOT), "threads": args.threads, "onnx_mb": sizes, "machine": {
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            "equality": equality(args, export),
            "workers": {}}
        for backend in ("torch", "onnx"):
            run_worker(backend, args, export)  # warms the page cache, so both cold starts read files from memory
        report["workers"] = {backend: run_worker(backend, args, export) for backend in ("torch", "onnx")}
    print("\n| | torch | onnxruntime |\n|---|---|---|")
    t, o = report["workers"]["torch"], report["workers"]["onnx"]
    for key, label in (("cold_start_s", "cold start: import + load + first answer, s"), ("import_s", "import, s"),
                       ("load_s", "load, s"), ("first_prediction_s", "first prediction, s"),
                       ("warm_latency_ms", "warm latency (decode + encoders + fusion), ms"),
                       ("peak_rss_mib", "peak resident memory, MiB")):
        print(f"| {label} | {t[key]:.2f} | {o[key]:.2f} |")
    print(f"| torch imported | {t['torch_imported']} | {o['torch_imported']} |")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
