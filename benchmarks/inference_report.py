"""The inference benchmark's report: the machine, one markdown table over the presets, findings."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from benchmarks.inference_bench import BATCH_SIZES, CLIP_SECONDS, FUSION_TARGET, STAGE_LABELS, STAGES, THROUGHPUT_SECONDS


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"logical_cpus": os.cpu_count(), "platform": platform.platform()}
    with contextlib.suppress(AttributeError):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    info["cpu_model"] = fields.get("model name", platform.processor() or "unknown")
    info["cpu_family_model"] = f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    flags = set(fields.get("flags", "").split())
    info["cpu_flags"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"})
    with contextlib.suppress(OSError, ValueError):
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        info["memory_gib"] = round(kib / 2**20, 1)
    return info


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def peak(memory: dict[str, float]) -> float:
    """The peak a stage added: CUDA when measured there, else sampled RSS, else ru_maxrss growth."""
    for key in ("cuda_peak_mib", "rss_peak_mib", "maxrss_growth_mib"):
        if key in memory:
            return memory[key]
    return 0.0


def _mparams(entry: dict[str, int]) -> str:
    total, trainable = entry["total"] / 1e6, entry["trainable"] / 1e6
    return f"{total:.2f} M" if trainable == total else f"{total:.2f} M ({trainable:.2f} M trainable)"


PARAM_NAMES = {"encoder_video": "video encoder", "encoder_audio": "audio encoder", "encoder_text": "text encoder",
               "projections": "projections", "placeholders": "placeholders", "feature_extractors": "feature extractors",
               "gia": "GIA (6 directions)", "mig": "MIG (3)", "classifier": "classifier",
               "fusion_total": "fusion total", "total": "total"}
MEMORY_NAMES = {"model_build": "model build (weights)", "decode": "decode", "asr": "ASR", "preprocess": "preprocess",
                "encoder_video": "video encoder", "encoder_audio": "audio encoder", "encoder_text": "text encoder",
                "fusion": "fusion + classifier"}
FLOP_NAMES = {"encoder_video": "video encoder", "encoder_audio": "audio encoder", "encoder_text": "text encoder",
              "encoders": "encoders", "fusion": "fusion + classifier"}
Rows = list[tuple[str, list[str]]]


def _parameter_rows(res: list[dict[str, Any]]) -> Rows:
    rows = [(label, [_mparams(r["params"][key]) if key in r["params"] else "-" for r in res])
            for key, label in PARAM_NAMES.items()]
    return rows + [("ASR (whisper-tiny dims)", [f"{r['asr']['params'] / 1e6:.2f} M" for r in res])]


def _latency_rows(res: list[dict[str, Any]]) -> Rows:
    rows = [(STAGE_LABELS[stage], [f"{fmt(r['latency_ms'][stage]['median_ms'])} (n={r['latency_ms'][stage]['n']})"
                                   for r in res]) for stage in STAGES]
    util = [statistics.median(r["latency_ms"][f"encoder_{m}"]["cpu_util"] for m in ("video", "audio", "text")) for r in res]
    return rows + [
        ("total", [fmt(r["total_ms"]) for r in res]),
        ("CPU-s per wall-s in encoders (2 = both cores)", [f"{u:.2f}" for u in util]),
        ("fusion / encoders (target < 5 %)",
         [f"{r['fusion_over_encoders']:.1%} {'met' if r['fusion_target_met'] else 'NOT met'}" for r in res]),
    ]


def _throughput_rows(res: list[dict[str, Any]]) -> Rows:
    rows = []
    for batch in BATCH_SIZES:
        cells = []
        for r in res:
            e = r["throughput"]["batches"][str(batch)]
            cells.append(f"{e['clips_per_s']:.2f} clips/s (fusion {e['fusion_over_encoders']:.1%}, n={e['n']})")
        rows.append((f"batch {batch}", cells))
    last = [r["throughput"]["batches"][str(BATCH_SIZES[-1])] for r in res]
    return rows + [(f"batch {BATCH_SIZES[-1]} fusion: batched / clip by clip (ms)",
                    [f"{fmt(e['fusion_ms'])} / {fmt(e['fusion_clip_by_clip_ms'])}" for e in last])]


def _memory_rows(res: list[dict[str, Any]]) -> Rows:
    rows = [(label, [fmt(peak(r["memory_mib"][key])) for r in res]) for key, label in MEMORY_NAMES.items()]
    return rows + [
        (f"batch {BATCH_SIZES[-1]} encoders + fusion",
         [fmt(peak(r["throughput"]["batches"][str(BATCH_SIZES[-1])]["memory_mib"])) for r in res]),
        ("process peak (ru_maxrss)", [fmt(r["peak_rss_mib"]) for r in res]),
    ]


def _compute_rows(res: list[dict[str, Any]]) -> Rows:
    rows = []
    for key, label in FLOP_NAMES.items():
        flops = [r["flops"][key] for r in res]
        rows.append((label, [f"{f['gflop']:.3g} GFLOP, {f['gflop_per_s']:.3g} GFLOP/s ({f['fraction_of_matmul']:.1%})"
                             for f in flops]))
    return rows + [
        (f"encoders at batch {BATCH_SIZES[-1]}",
         [f"{r['throughput']['batches'][str(BATCH_SIZES[-1])]['encoder_gflop_per_s']:.1f} GFLOP/s" for r in res]),
        ("dense matmul reference",
         [f"{r['matmul']['gflop_per_s']:.1f} GFLOP/s ({r['matmul']['n']}² {r['matmul']['dtype']})" for r in res]),
    ]


def markdown(report: dict[str, Any]) -> str:
    """One table, a column per preset: parameters, latency, throughput, peak memory, compute."""
    presets = list(report["presets"])
    res = [report["presets"][p] for p in presets]
    sections = (("Parameters (random init)", _parameter_rows),
                (f"Latency, one {CLIP_SECONDS:g}-s clip (ms, median)", _latency_rows),
                (f"Throughput, encoders + fusion ({THROUGHPUT_SECONDS:g}-s clips, pre-decoded)", _throughput_rows),
                ("Peak memory (RSS above the stage's start, MiB)", _memory_rows),
                ("Compute (FlopCounterMode, batch 1)", _compute_rows))
    rows: Rows = []
    for title, make in sections:
        rows += [(f"**{title}**", ["" for _ in res]), *make(res)]
    header = "| | " + " | ".join(presets) + " |\n|---|" + "---|" * len(presets) + "\n"
    return header + "\n".join(f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows) + "\n"


def findings(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, r in report["presets"].items():
        verdict = "meets" if r["fusion_target_met"] else "does NOT meet"
        slowest = max(STAGES, key=lambda s: r["latency_ms"][s]["median_ms"])
        lines.append(f"{name}: fusion+classifier is {r['fusion_over_encoders']:.1%} of encoder time "
                     f"({verdict} the < {FUSION_TARGET:.0%} target); slowest stage: {STAGE_LABELS[slowest]} "
                     f"({r['latency_ms'][slowest]['median_ms']:.0f} ms)")
        flops = r["flops"]
        lines.append(f"{name}: fusion+classifier is {flops['fusion']['gflop'] / flops['encoders']['gflop']:.1%} of encoder "
                     f"FLOPs and ran at {flops['fusion']['gflop_per_s']:.3g} GFLOP/s vs {flops['encoders']['gflop_per_s']:.3g} "
                     f"for the encoders (dense matmul: {r['matmul']['gflop_per_s']:.3g})")
        last = r["throughput"]["batches"][str(BATCH_SIZES[-1])]
        lines.append(f"{name}: at batch {BATCH_SIZES[-1]}, fusing clip by clip (as EmotionRecognizer.batch -> classify "
                     f"does) took {last['fusion_clip_by_clip_ms']:.0f} ms vs {last['fusion_ms']:.0f} ms batched")
        util = statistics.median(r["latency_ms"][f"encoder_{m}"]["cpu_util"] for m in ("video", "audio", "text"))
        if util < 0.75 * r["torch_threads"]:
            lines.append(f"{name}: the encoders got {util:.2f} CPU-s per wall-s with {r['torch_threads']} threads: "
                         "the machine was busy, absolute times are inflated (ratios less so)")
        if r["encoders"]["audio_per_sample"]:
            lines.append(f"{name}: the audio encoder has a group-norm feature encoder (feat_extract_norm="
                         f"{r['encoders']['audio']['feat_extract_norm']!r}), so AudioEncoder.per_sample runs it one "
                         "sample at a time: batching does not speed the speech encoder up")
    return lines


