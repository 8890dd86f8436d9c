"""benchmarks/inference.py: the --quick run on the tiny preset, its numbers consistent with each other and with
the model; the report's table over the stored results."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.inference_bench import BATCH_SIZES, FUSION_TARGET, STAGES, TRANSCRIPT
from benchmarks.inference_report import findings, markdown

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "bench.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inference.py"), "--presets", "tiny", "--quick", "--threads", "1",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"benchmark --quick on tiny took {time.perf_counter() - start:.1f} s")  # target < 20 s on an idle 2-core machine
    return proc.stdout, json.loads(out.read_text(encoding="utf-8"))


def test_parameter_counts_match_the_model(quick_tiny):
    from tests.conftest import build_tiny

    _, report = quick_tiny
    assert report["quick"] is True and list(report["presets"]) == ["tiny"]
    params = report["presets"]["tiny"]["params"]
    model = build_tiny()
    assert params["total"]["total"] == sum(p.numel() for p in model.parameters())
    assert params["total"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert params["encoder_audio"]["total"] == sum(p.numel() for p in model.encoders["audio"].parameters())
    groups = {k: v for k, v in params.items() if k not in ("total", "fusion_total")}
    assert sum(v["total"] for v in groups.values()) == params["total"]["total"]  # shared weights counted once
    assert params["fusion_total"]["total"] == params["total"]["total"] - sum(
        v["total"] for k, v in groups.items() if k.startswith("encoder_"))


def test_derived_figures_follow_from_the_measured_ones(quick_tiny):
    _, report = quick_tiny
    r = report["presets"]["tiny"]
    lat = {s: r["latency_ms"][s]["median_ms"] for s in STAGES}
    encoders = sum(lat[f"encoder_{m}"] for m in ("video", "audio", "text"))
    assert r["total_ms"] == pytest.approx(sum(lat.values())) and r["encoders_ms"] == pytest.approx(encoders)
    assert r["fusion_over_encoders"] == pytest.approx(lat["fusion"] / encoders)
    assert r["fusion_target_met"] == (r["fusion_over_encoders"] < FUSION_TARGET)
    for stage in STAGES:
        samples = r["latency_ms"][stage]["samples_ms"]
        assert r["latency_ms"][stage]["n"] == len(samples)
        assert min(samples) - 1e-3 <= lat[stage] <= max(samples) + 1e-3  # samples are rounded to 1 us
    for name in ("encoder_video", "encoder_audio", "encoder_text", "fusion"):
        flops = r["flops"][name]
        assert flops["gflop"] > 0 and flops["gflop_per_s"] == pytest.approx(flops["gflop"] / (lat[name] / 1000))
        assert flops["fraction_of_matmul"] == pytest.approx(flops["gflop_per_s"] / r["matmul"]["gflop_per_s"])
    assert sorted(r["throughput"]["batches"], key=int) == [str(b) for b in BATCH_SIZES]
    for batch, entry in r["throughput"]["batches"].items():
        assert entry["clips_per_s"] == pytest.approx(int(batch) / (entry["median_ms"] / 1000))
        assert entry["median_ms"] == pytest.approx(entry["encoders_ms"] + entry["fusion_ms"], rel=0.5)
        assert (entry["fusion_clip_by_clip_ms"] is None) == (batch == "1")
    assert r["tokens"]["video"] == 8  # the tiny preset's frame count
    assert r["asr"]["source"] == "whisper:custom" and r["asr"]["output_chars"] > 0
    assert report["settings"]["transcript_for_text_encoder"] == TRANSCRIPT


def test_printed_table_is_the_report_of_the_json(quick_tiny):
    stdout, report = quick_tiny
    assert markdown(report) in stdout
    assert all(f"- {line}" in stdout for line in report["findings"]) and report["findings"] == findings(report)


def test_report_table_of_the_stored_results():
    report = json.loads((ROOT / "benchmarks" / "results" / "inference-cpu.json").read_text(encoding="utf-8"))
    presets = list(report["presets"])
    lines = markdown(report).strip().splitlines()
    assert lines[0] == "| | " + " | ".join(presets) + " |"
    assert all(line.count(" | ") == len(presets) for line in lines[2:]), "every row has a cell per preset"
    sections = [line.split("**")[1] for line in lines if line.startswith("| **")]
    assert [s.split(" ")[0] for s in sections] == ["Parameters", "Latency,", "Throughput,", "Peak", "Compute"]
    tiny, base = report["presets"]["tiny"], report["presets"]["base"]
    assert f"| total | {tiny['total_ms']:,.1f} | {base['total_ms']:,.1f} |" in lines
    assert any(line.startswith("base: fusion+classifier is") for line in findings(report))


def test_timeline_benchmark_quick(tmp_path):
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "ravdess").is_dir():
        pytest.skip("../shared/data/ravdess is absent (a fresh clone): the timeline benchmark needs real clips")
    out = tmp_path / "timeline.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "timeline.py"), "--quick", "--minutes", "0.25", "--actors", "20",
         "--data", str(SHARED_DATA), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| 0.25 min | off |" in proc.stdout and "| vad |" in proc.stdout and "clips one by one (speech)" in proc.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["minutes"], r["asr"]) for r in report["speed"]] == [(0.25, False)]
    for run in report["speed"]:
        assert run["rtf"] > 0 and run["peak_rss_mib"] > 0 and run["segments"] >= 1
        assert abs(run["duration_s"] - 60 * run["minutes"]) < 5
    assert report["memory_ratio"] == {"off": 1.0}
    acc = report["accuracy"]
    assert acc["clips"] == 36 and list(acc["methods"]) == ["vad"]
    vad = acc["methods"]["vad"]
    for key in ("f1", "precision", "recall", "speech_time_accuracy", "coverage", "accuracy_where_covered"):
        assert 0 <= vad[key] <= 1, key
    assert vad["segments"] >= 18 and vad["f1"] > 0.5  # segmentation finds most of the 36 utterances
    assert 0 < acc["per_clip"]["speech"]["accuracy"] <= 1
