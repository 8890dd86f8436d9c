"""benchmarks/inference.py runs end to end on the tiny preset (--quick) and writes a complete JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("decode", "asr", "preprocess", "encoder_video", "encoder_audio", "encoder_text", "fusion")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_inference_benchmark_quick_tiny(tmp_path):
    out = tmp_path / "results" / "bench.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inference.py"), "--presets", "tiny", "--quick", "--threads", "1",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| **Latency" in proc.stdout and "fusion / encoders" in proc.stdout

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["quick"] is True and list(report["presets"]) == ["tiny"]
    assert report["machine"]["cpu_model"] and report["machine"]["logical_cpus"] >= 1
    r = report["presets"]["tiny"]

    params = r["params"]
    for group in ("encoder_video", "encoder_audio", "encoder_text", "feature_extractors", "gia", "mig", "classifier",
                  "total"):
        assert _positive(params[group]["total"]), group
        assert params[group]["trainable"] + params[group]["frozen"] == params[group]["total"]
    assert sum(v["total"] for k, v in params.items() if k not in ("total", "fusion_total")) == params["total"]["total"]
    assert _positive(r["asr"]["params"]) and r["asr"]["label"] == "ASR (whisper-tiny dims, random weights)"

    for stage in STAGES:
        assert _positive(r["latency_ms"][stage]["median_ms"]), stage
        assert r["latency_ms"][stage]["n"] >= 1
        assert stage in r["memory_mib"]
    assert _positive(r["total_ms"]) and _positive(r["encoders_ms"])
    assert _positive(r["fusion_over_encoders"]) and isinstance(r["fusion_target_met"], bool)

    batches = r["throughput"]["batches"]
    assert sorted(batches, key=int) == ["1", "8", "32"]
    for entry in batches.values():
        assert _positive(entry["clips_per_s"]) and _positive(entry["encoders_ms"]) and _positive(entry["fusion_ms"])

    assert _positive(r["matmul"]["gflop_per_s"])
    for key in ("encoder_video", "encoder_audio", "encoder_text", "encoders", "fusion"):
        assert _positive(r["flops"][key]["gflop"]) and _positive(r["flops"][key]["gflop_per_s"]), key
        assert _positive(r["flops"][key]["fraction_of_matmul"]), key
    assert _positive(r["memory_mib"]["model_build"]["maxrss_mib"])
    assert _positive(r["peak_rss_mib"])
    print(f"benchmark --quick on tiny took {elapsed:.1f} s")  # target < 20 s on an idle 2-core machine
