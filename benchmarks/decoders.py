#!/usr/bin/env python
"""Media decoders compared on the formats gia-mic supports: PyAV (what gia_mic uses) vs decord and librosa.

Usage (in a scratch venv with the candidates, e.g. ``pip install av scipy numpy librosa decord soundfile``)::

    python benchmarks/decoders.py [--data ../shared/data] [--repeats 3] [--json OUT] [--registry]

Run from a checkout: it imports ``gia_mic.media`` (PyAV + scipy + numpy only) and ``tests.clips``.
Files: the CREMA-D mp4 examples, CREMA-D's original .flv (VP6 + MP3), RAVDESS FLAC and nEMO
Ogg/Opus from ``--data`` when present, and clips generated here in every container gia-mic
accepts (a 440 Hz tone; video frames whose red level ramps with time).

Per backend and file: does it decode, wall time (median of ``--repeats``), and correctness:
* audio (16 kHz mono): duration vs PyAV's, correlation with PyAV's waveform, and for generated
  clips the dominant frequency (440 Hz expected);
* video (8 frames sampled uniformly): mean absolute pixel difference to PyAV's frames.
Backends that are not installed are listed as such. ``--registry`` also asks pip (dry-run
reports, no download) which wheels each package offers for common platforms and Pythons.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import write_json  # noqa: E402

RATE, FRAMES = 16000, 8
GENERATED = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".flv", ".wav", ".flac", ".mp3", ".ogg", ".m4a")
VIDEO = {".mp4", ".webm", ".mkv", ".avi", ".mov", ".flv"}
PLATFORMS = {  # each with the older tags pip should also accept for it
    "linux x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64"),
    "linux aarch64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "macOS arm64": ("macosx_14_0_arm64", "macosx_11_0_arm64"),
    "windows x86_64": ("win_amd64",)}
PYTHONS = ("3.11", "3.13")


# ---------------------------------------------------------------------------------- backends
def pyav_audio(path: Path) -> np.ndarray:
    from gia_mic.media import decode_clip

    return decode_clip(path, num_frames=FRAMES, sample_rate=RATE, max_seconds=60.0).audio


def pyav_video(path: Path) -> np.ndarray:
    from gia_mic.media import decode_clip

    return decode_clip(path, num_frames=FRAMES, sample_rate=RATE, max_seconds=60.0).frames


def librosa_audio(path: Path) -> np.ndarray:
    import librosa

    return librosa.load(str(path), sr=RATE, mono=True)[0]


def soundfile_audio(path: Path) -> np.ndarray:
    import soundfile
    from scipy.signal import resample_poly

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return resample_poly(data.mean(axis=1), RATE, rate).astype(np.float32)


def decord_audio(path: Path) -> np.ndarray:
    import decord

    return decord.AudioReader(str(path), sample_rate=RATE, mono=True)[:].asnumpy()[0]


def decord_video(path: Path) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path))
    n = len(reader)
    return reader.get_batch([min(n - 1, int((i + 0.5) * n / FRAMES)) for i in range(FRAMES)]).asnumpy()


AUDIO: dict[str, tuple[str, Callable[[Path], np.ndarray]]] = {
    "pyav": ("av", pyav_audio), "librosa": ("librosa", librosa_audio), "soundfile": ("soundfile", soundfile_audio),
    "decord": ("decord", decord_audio)}
VIDEO_BACKENDS: dict[str, tuple[str, Callable[[Path], np.ndarray]]] = {"pyav": ("av", pyav_video),
                                                                        "decord": ("decord", decord_video)}


# ---------------------------------------------------------------------------------- files
def files(data: Path, folder: Path) -> list[tuple[str, Path]]:
    from tests.clips import make_clip

    out = [("examples mp4 (H.264 + AAC)", p) for p in sorted((ROOT / "examples").glob("*.mp4"))[:3]]
    out += [("CREMA-D flv (VP6 + MP3)", p) for p in sorted((data / "cremad" / "video").glob("*.flv"))[:3]]
    out += [("RAVDESS flac", p) for p in sorted((data / "ravdess").glob("Actor_17/*.flac"))[:3]]
    out += [("nEMO ogg/opus", p) for p in sorted((data / "nemo" / "audio").rglob("*.ogg"))[:3]]
    for suffix in GENERATED:
        path = make_clip(folder / f"gen{suffix}", seconds=3.0, fps=25, size=(320, 240), sample_rate=44100)
        out.append((f"generated {suffix[1:]}", path))
    return out


def timed(fn: Callable[[Path], np.ndarray], path: Path, repeats: int) -> tuple[np.ndarray | None, float | None, str | None]:
    samples, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            result = fn(path)
        except Exception as err:  # every failure is a finding
            text = str(err).splitlines()[0].replace(str(path), "FILE") if str(err) else ""
            return None, None, f"{type(err).__name__}: {text[:120]}"
        samples.append((time.perf_counter() - start) * 1000.0)
    return result, statistics.median(samples), None


def dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * RATE / len(audio))


def audio_check(audio: np.ndarray, reference: np.ndarray | None, generated: bool) -> dict:
    check = {"seconds": round(len(audio) / RATE, 3)}
    if reference is not None and min(len(reference), len(audio)) > 800:
        check["seconds_vs_pyav"] = round((len(audio) - len(reference)) / RATE, 3)
        length = min(len(audio), len(reference)) - 400  # +-25 ms lags: decoders differ in priming / padding

        def pair(lag: int) -> tuple[np.ndarray, np.ndarray]:
            return audio[max(0, lag):][:length], reference[max(0, -lag):][:length]

        best = max(range(-400, 401, 4), key=lambda lag: float(np.dot(*pair(lag))))
        check["corr_with_pyav"] = round(float(np.corrcoef(*pair(best))[0, 1]), 4)
        check["lag_ms"] = round(best / RATE * 1000.0, 2)
    if generated:
        check["tone_hz"] = round(dominant_hz(audio), 1)
    return check


def video_check(frames: np.ndarray, reference: np.ndarray | None) -> dict:
    check = {"shape": list(frames.shape)}
    if reference is not None and reference.shape == frames.shape:
        check["mean_abs_diff_vs_pyav"] = round(float(np.abs(frames.astype(np.float32) - reference).mean()), 2)
    return check


def run(data: Path, repeats: int) -> dict:
    available = {name: _version(dist) for name, (dist, _) in {**AUDIO, **VIDEO_BACKENDS}.items()}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for group, path in files(data, Path(tmp)):
            row = {"group": group, "file": path.name, "audio": {}, "video": {}}
            reference = None
            for name, (_, fn) in AUDIO.items():
                if available[name] is None:
                    continue
                audio, ms, error = timed(fn, path, repeats)
                if name == "pyav":
                    reference = audio
                row["audio"][name] = {"error": error} if error else {
                    "ms": round(ms, 1), **audio_check(audio, None if name == "pyav" else reference, "generated" in group)}
            if path.suffix in VIDEO:
                ref_frames = None
                for name, (_, fn) in VIDEO_BACKENDS.items():
                    if available[name] is None:
                        continue
                    frames, ms, error = timed(fn, path, repeats)
                    ref_frames = frames if name == "pyav" else ref_frames
                    row["video"][name] = {"error": error} if error else {
                        "ms": round(ms, 1), **video_check(frames, None if name == "pyav" else ref_frames)}
            results.append(row)
            print(json.dumps(row), flush=True)
    return {"versions": available, "files": results}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def registry(packages: dict[str, str]) -> dict:
    """Which wheel pip would take for each platform / Python (``pip install --dry-run --report``)."""
    out = {}
    for dist, version in packages.items():
        for platform, tags in PLATFORMS.items():
            for python in PYTHONS:
                cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps", "--only-binary=:all:",
                       "--target", tempfile.gettempdir(), *(f"--platform={t}" for t in tags), "--python-version", python,
                       "--report", "-", f"{dist}=={version}"]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                try:
                    url = json.loads(done.stdout)["install"][0]["download_info"]["url"]
                    out[f"{dist} {platform} py{python}"] = url.rsplit("/", 1)[-1]
                except (json.JSONDecodeError, KeyError, IndexError):
                    out[f"{dist} {platform} py{python}"] = None
    return out


def summary(report: dict) -> None:
    print("\n| files | backend | decoded | median ms/file | correctness |\n|---|---|---|---|---|")
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in report["files"]:
        for kind in ("audio", "video"):
            for backend, r in row[kind].items():
                groups.setdefault((row["group"], kind, backend), []).append(r)
    for (group, kind, backend), rows in groups.items():
        ok = [r for r in rows if "error" not in r]
        notes = sorted({r["error"] for r in rows if "error" in r})
        if ok and kind == "audio" and "corr_with_pyav" in ok[0]:
            notes.append(f"corr >= {min(r['corr_with_pyav'] for r in ok):.3f}, "
                         f"|Δduration| <= {max(abs(r['seconds_vs_pyav']) for r in ok):.3f} s")
        if ok and "tone_hz" in ok[0]:
            notes.append(f"tone {', '.join(sorted({str(r['tone_hz']) for r in ok}))} Hz")
        if ok and kind == "video" and "mean_abs_diff_vs_pyav" in ok[0]:
            notes.append(f"pixel |Δ| <= {max(r['mean_abs_diff_vs_pyav'] for r in ok)}")
        median = f"{statistics.median(r['ms'] for r in ok):.1f}" if ok else "-"
        print(f"| {group} | {kind}: {backend} | {len(ok)}/{len(rows)} | {median} | {'; '.join(notes)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--registry", action="store_true", help="ask pip which wheels exist (dry-run reports)")
    args = parser.parse_args(argv)
    report = run(args.data, args.repeats)
    if args.registry:
        report["wheels"] = registry({d: v for d, v in (("av", report["versions"]["pyav"]),
                                                       ("decord", report["versions"]["decord"])) if v})
        for key, name in report["wheels"].items():
            print(f"{key}: {name}")
    summary(report)
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
