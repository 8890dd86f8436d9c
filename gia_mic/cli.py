"""``gia-mic``: command-line predictions and evaluation.

gia-mic predict clip.mp4 [--text T] [--modalities video,audio,text] [--model DIR_OR_ID] [--json]
gia-mic evaluate --model DIR_OR_ID --manifest test.csv [--root DIR] [--modalities ...] [--json]
torchrun --nproc_per_node N -m gia_mic.cli evaluate ...   (each process scores 1/N of the rows)

A file name that starts with ``-`` goes after ``--``: ``gia-mic predict -- -clip.mp4``.
User errors (bad files, fields, checkpoints) print one line on stderr and exit 2; JSON
output is always strict JSON (no NaN).

``gia-mic export-onnx --model DIR_OR_ID --out DIR`` (the ``[onnx]`` extra) writes the graphs that
``gia_mic.onnx_runtime`` runs without torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gia_mic.asr import DEFAULT_ASR_MODEL
from gia_mic.configuration import normalize_modalities
from gia_mic.distributed import Shards, launch_local_rank
from gia_mic.errors import USER_ERRORS, InputError
from gia_mic.hub import default_model
from gia_mic.manifest import read_manifest


def _say(*parts: object, file=None) -> None:
    """The CLI talks to people on stdout (errors on stderr); the library itself only logs."""
    (file or sys.stdout).write(" ".join(str(p) for p in parts) + "\n")


def _json(data: Any) -> str:
    """Strict JSON: a non-finite number (never expected) becomes null instead of invalid ``NaN``."""
    from gia_mic.utils import strict_json

    return strict_json(data, indent=2)


def _recognizer(args: argparse.Namespace, *, isolate: bool = False):
    from gia_mic.pipeline import EmotionRecognizer

    asr = None if str(args.asr_model).lower() in ("none", "off", "") else args.asr_model
    return EmotionRecognizer.from_pretrained(args.model or default_model(), revision=args.revision,
                                             asr_model=asr, device=args.device, isolate=isolate)


def _predict(args: argparse.Namespace) -> int:
    """Exit 0: every file analysed; 1: some files failed (their rows say why); 2: a user error."""
    from gia_mic.predict_files import expand_inputs

    files = expand_inputs(args.paths)
    many = len(files) > 1 or any(Path(p).is_dir() for p in args.paths)
    if args.text is not None and many:
        raise InputError("--text gives one transcript: use it with a single file")
    out = Path(args.out) if args.out else None
    fmt = _output_format(args, out, many)
    if args.timeline and args.no_timeline:
        raise InputError("--timeline and --no-timeline contradict each other: give one")
    timeline = True if args.timeline or fmt in ("srt", "vtt") else False if args.no_timeline else None
    recognizer = _recognizer(args, isolate=many and not args.no_isolation)
    results = _analyse(args, recognizer, files, timeline, progress=many and not args.quiet)
    if not many and results[0].failed:
        raise InputError(results[0].error)
    _write_results(args, results, fmt, out, recognizer.labels, many)
    return 1 if any(r.failed for r in results) else 0


def _output_format(args: argparse.Namespace, out: Path | None, many: bool) -> str | None:
    from gia_mic.predict_files import format_for

    fmt = format_for(out, args.format, as_json=args.json)
    if fmt in ("srt", "vtt") and many and (out is None or out.suffix):
        raise InputError(f"{fmt} subtitles hold one recording: with several files give --out FOLDER "
                         "(one subtitle file per input)")
    return fmt


def _analyse(args: argparse.Namespace, recognizer, files: list[Path], timeline: bool | None, *, progress: bool):
    from tqdm import tqdm

    from gia_mic.predict_files import analyse

    modalities = normalize_modalities(args.modalities) if args.modalities else None
    with tqdm(total=len(files), desc="predicting", unit="file", file=sys.stderr, disable=not progress) as bar:
        return analyse(recognizer, files, text=args.text, modalities=modalities, timeline=timeline,
                       method=args.method, batch_size=args.batch_size, progress=bar.update)


def _write_results(args: argparse.Namespace, results, fmt: str | None, out: Path | None, labels, many: bool) -> None:
    from gia_mic.predict_files import render, subtitles, text_lines
    from gia_mic.utils import atomic_write_text

    if fmt in ("srt", "vtt"):
        for r in results:
            if r.failed:
                _say(f"gia-mic: {r.file}: error: {r.error}", file=sys.stderr)
            elif out is not None and many:
                atomic_write_text(out / f"{Path(r.file).stem}.{fmt}", subtitles(r, fmt))
            elif out is not None:
                atomic_write_text(out, subtitles(r, fmt))
            else:
                sys.stdout.write(subtitles(r, fmt))
        return
    if fmt is None:
        lines = _clip_lines(results[0]) if not many and results[0].prediction is not None else (
            _timeline_lines(results[0]) if not many else text_lines(results))
        text = "\n".join(lines) + "\n"
    else:
        text = render(results, fmt, labels, single=not many)
    if out is not None:
        atomic_write_text(out, text)
        failed = sum(r.failed for r in results)
        _say(f"wrote {out}: {len(results)} files, {failed} failed", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _clip_lines(result) -> list[str]:
    from gia_mic.predict_files import PLAIN_NAMES

    pred, name = result.prediction, Path(result.file).name
    lines = [f"{name}: {pred.label}"]
    lines += [f"  {s['label']:<12} {s['score']:6.3f}  {'#' * round(40 * s['score'])}" for s in pred.scores]
    if pred.agreement is not None:
        alone = ", ".join(f"{PLAIN_NAMES[m]} alone: {a['label']} {a['score']:.0%}" for m, a in pred.per_modality.items())
        lines.append(f"{alone} ({'they agree' if pred.agreement else 'they disagree'})")
    lines.append(f"modalities used: {', '.join(pred.modalities_used)}")
    lines += [f"  not used: {m} ({why})" for m, why in pred.missing.items()]
    lines.append(f"transcript ({pred.transcript_source}): {pred.transcript!r}")
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"time: {pred.timings_ms['total']:.0f} ms")
    return lines


def _timeline_lines(result) -> list[str]:
    tl = result.timeline
    lines = [f"{Path(result.file).name}: {tl.duration:.1f} s, {len(tl.segments)} segments ({tl.method})"]
    if tl.summary is None:
        return [*lines, f"  {tl.message}"]
    for seg in tl.segments:
        words = f"  \u201c{seg.transcript}\u201d" if seg.transcript else ""
        lines.append(f"  {seg.start:7.2f}-{seg.end:7.2f} s  {seg.label:<8} {seg.scores[seg.label]:4.0%}{words}")
    top = tl.summary.scores[tl.summary.label]
    shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(tl.summary.shares.items(), key=lambda kv: -kv[1]) if v)
    lines.append(f"overall: {tl.summary.label} {top:.0%} (scores weighted by duration); "
                 f"time by label: {shares} of {tl.summary.speech_seconds:.1f} s of speech")
    return lines


def _evaluation_rows(args: argparse.Namespace, labels: list[str]) -> tuple[list[dict[str, Any]], list[str], int]:
    """Scorable rows of the manifest as pipeline items, the refused rows' errors, and the skipped count."""
    rows = read_manifest(Path(args.manifest), root=Path(args.root) if args.root else None,
                         allow_outside_root=args.allow_outside_root,
                         required=(("label",), ("transcript",), ("path", "video", "audio")))
    items, errors, skipped = [], [], 0
    for row in rows:
        if row.error:
            errors.append(f"line {row.line}: {row.error}")
        elif row.get("label") not in labels:
            skipped += 1
        else:
            items.append({"line": row.line, "label": row.get("label"), "text": row.get("transcript") or None,
                          "video": row.video, "audio": row.audio})
    return items, errors, skipped


def _score(recognizer, items: list[dict[str, Any]], modalities, batch_size: int, errors: list[str],
           progress: bool) -> tuple[list[int], list[int], list[list[float]]]:
    """Classifies the items in batches; a failing batch is retried row by row so the others still count.

    Returns the true and predicted class indices and each scored row's probabilities (label order):
    the scores the pipeline returns, i.e. after the checkpoint's temperature.
    """
    from tqdm import tqdm

    index = {label: i for i, label in enumerate(recognizer.labels)}
    y_true, y_pred, probs = [], [], []
    bar = tqdm(total=len(items), desc="evaluating", unit="clip", file=sys.stderr, disable=not progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        preds = []
        for row, clip in zip(chunk, recognizer.prepare_each(chunk, modalities=modalities)):
            try:
                if isinstance(clip, Exception):
                    raise clip
                preds.append(recognizer.classify(clip, modalities=modalities, explain=False))
            except USER_ERRORS as err:
                preds.append(None)
                errors.append(f"line {row['line']}: {err}")
        for row, pred in zip(chunk, preds):
            if pred is not None:
                y_true.append(index[row["label"]])
                y_pred.append(index[pred.label])
                row_probs = [0.0] * len(index)
                for score in pred.scores:
                    row_probs[index[score["label"]]] = float(score["score"])
                probs.append(row_probs)
        bar.update(len(chunk))
    bar.close()
    return y_true, y_pred, probs


def _device(requested: str | None, world: int) -> str | None:
    """Under a multi-process launch on a GPU machine, each process takes its own GPU (``LOCAL_RANK``)."""
    if world == 1 or requested not in (None, "cuda"):
        return requested
    import torch

    return f"cuda:{launch_local_rank()}" if torch.cuda.is_available() else requested


def _evaluate(args: argparse.Namespace) -> int:
    """Exit 0: every usable row scored; 1: some rows failed (figures over the rest); 2: nothing scored.

    Under ``torchrun`` each process scores a contiguous share of the rows; rank 0 prints the
    gathered result, and every process returns the same exit status.
    """
    from gia_mic.metrics import calibration_report, classification_report

    modalities = normalize_modalities(args.modalities) if args.modalities else None
    with Shards() as shards:
        args.device = _device(args.device, shards.world)
        recognizer = _recognizer(args, isolate=not args.no_isolation)
        items, errors, skipped = _evaluation_rows(args, recognizer.labels)
        mine, failed = shards.share(items), []
        scored = _score(recognizer, mine, modalities, args.batch_size, failed, not args.quiet and shards.rank == 0)
        gathered = shards.gather((*scored, failed, len(mine)))
    y_true = [y for part in gathered for y in part[0]]
    y_pred = [y for part in gathered for y in part[1]]
    probs = [p for part in gathered for p in part[2]]
    errors += [e for part in gathered for e in part[3]]  # shares are contiguous: still in manifest order
    report = classification_report(y_true, y_pred, recognizer.labels)
    calibration = calibration_report(probs, y_true)
    result = {"n": report["n"], "skipped": skipped, "wa": report["wa"], "ua": report["ua"],
              "macro_f1": report["macro_f1"], "ece": calibration["ece"], "nll": calibration["nll"],
              "per_class_recall": report["per_class_recall"],
              "confusion": report["confusion"], "labels": report["labels"], "errors": errors,
              "world_size": shards.world, "rows_per_process": [part[4] for part in gathered]}
    code = 2 if not report["n"] else 1 if errors else 0
    if shards.rank != 0:
        return code
    if args.json:
        _say(_json(result))
    elif report["n"]:
        _say(f"n={result['n']} skipped={result['skipped']} errors={len(errors)}")
        _say(f"WA {result['wa']:.4f}  UA {result['ua']:.4f}  macro-F1 {result['macro_f1']:.4f}")
        _say(f"ECE {result['ece']:.4f} (15 bins)  NLL {result['nll']:.4f}")
        for label, r in result["per_class_recall"].items():
            _say(f"  recall {label:<12} {'n/a' if r is None else f'{r:.4f}'}")
        for e in errors[:10]:
            _say(f"  error: {e}")
    if not report["n"]:
        why = (f"{len(errors)} rows failed, e.g. {errors[0]}" if errors else
               f"no row has a label the model knows ({', '.join(recognizer.labels)}); {skipped} rows skipped")
        _say(f"gia-mic: error: nothing could be scored in {args.manifest}: {why}", file=sys.stderr)
    return code


def _export_onnx(args: argparse.Namespace) -> int:
    from gia_mic.onnx_export import export_onnx

    out = export_onnx(args.model or default_model(), args.out, revision=args.revision)
    _say(f"wrote {out} (run it with gia_mic.onnx_runtime)")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``gia-mic`` argument parser."""
    parser = argparse.ArgumentParser(prog="gia-mic", description="GIA-MIC multimodal emotion recognition")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="checkpoint directory or Hub id org/name (default: $GIA_MIC_MODEL or the "
                                       "embedded gia-mic-lite)")
        p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
        p.add_argument("--modalities", help="comma-separated subset of video,audio,text (default: all trained)")
        p.add_argument("--asr-model", default=DEFAULT_ASR_MODEL,
                       help=f"Whisper model for clips without text, or 'none' (default: {DEFAULT_ASR_MODEL})")
        p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
        p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("predict", help="classify clips, or give long recordings a timeline",
                       usage="gia-mic predict [options] [--] PATH [PATH ...]  (a PATH starting with '-' goes "
                             "after '--')",
                       description="Each PATH is a video or audio file, or a folder searched for them. The model "
                                   "loads once. A file longer than the model's window gets a timeline (emotion per "
                                   "utterance) instead of being cut. Exit status: 0 every file analysed, 1 some "
                                   "failed (their rows say why), 2 a user error.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video or audio files, or folders")
    p.add_argument("--text", help="transcript of the (single) file; otherwise Whisper, when available")
    p.add_argument("--timeline", action="store_true", help="emotion per utterance for every file")
    p.add_argument("--no-timeline", action="store_true",
                   help="never a timeline: files longer than the model's window are cut to it (noted)")
    p.add_argument("--method", choices=("vad", "whisper", "fixed"), default="vad",
                   help="how a timeline finds utterances (default: vad, voice activity)")
    p.add_argument("--format", choices=("json", "jsonl", "csv", "srt", "vtt"),
                   help="output format (default: from --out's suffix; JSON with --json; else text)")
    p.add_argument("--out", help="write here instead of stdout (atomically); a folder for srt/vtt of several files")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="clips per encoder batch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-isolation", action="store_true",
                   help="with several files, decode them in this process instead of a sandboxed worker")
    common(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="WA / UA / macro-F1, ECE / NLL over a manifest CSV",
                       description="Exit status: 0 every usable row scored, 1 some rows failed (figures over the "
                                   "rest, errors listed), 2 nothing could be scored or a user error.")
    p.add_argument("--manifest", required=True, help="CSV with path (or video/audio), label, transcript")
    p.add_argument("--root", help="folder that relative paths are under (default: the manifest's folder)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="read rows whose paths resolve outside --root (absolute paths, '..'); refused by default")
    p.add_argument("--no-isolation", action="store_true",
                   help="decode files in this process instead of a sandboxed worker (faster start, less safe)")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("export-onnx", help="export the encoders and the fusion to ONNX (needs the [onnx] extra)",
                       description="Writes one ONNX graph per encoder and one for the fusion, with the labels and "
                                   "preprocessing constants, for gia_mic.onnx_runtime (no torch needed to run it).")
    p.add_argument("--model", help="checkpoint directory or Hub id org/name (default: $GIA_MIC_MODEL or the "
                                   "embedded gia-mic-lite)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument("--out", required=True, help="output folder (created; files of the same names are replaced)")
    p.set_defaults(func=_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and exit 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        _say(f"gia-mic: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
