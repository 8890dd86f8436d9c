"""``gia-mic``: command-line predictions and evaluation.

gia-mic predict clip.mp4 [--text T] [--modalities video,audio,text] [--model DIR_OR_ID] [--json]
gia-mic evaluate --model DIR_OR_ID --manifest test.csv [--root DIR] [--modalities ...] [--json]

A file name that starts with ``-`` goes after ``--``: ``gia-mic predict -- -clip.mp4``.
User errors (bad files, fields, checkpoints) print one line on stderr and exit 2; JSON
output is always strict JSON (no NaN).

``gia-mic export-onnx --model DIR_OR_ID --out DIR`` (the ``[onnx]`` extra) writes the graphs that
``gia_mic.onnx_runtime`` runs without torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from gia_mic.asr import DEFAULT_ASR_MODEL
from gia_mic.configuration import normalize_modalities
from gia_mic.errors import USER_ERRORS
from gia_mic.hub import default_model
from gia_mic.manifest import is_audio_file, read_manifest


def _say(*parts: object, file=None) -> None:
    """The CLI talks to people on stdout (errors on stderr); the library itself only logs."""
    (file or sys.stdout).write(" ".join(str(p) for p in parts) + "\n")


def _json(data: Any) -> str:
    """Strict JSON: a non-finite number (never expected) becomes null instead of invalid ``NaN``."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2, allow_nan=False)


def _recognizer(args: argparse.Namespace, *, isolate: bool = False):
    from gia_mic.pipeline import EmotionRecognizer

    asr = None if str(args.asr_model).lower() in ("none", "off", "") else args.asr_model
    return EmotionRecognizer.from_pretrained(args.model or default_model(), revision=args.revision,
                                             asr_model=asr, device=args.device, isolate=isolate)


def _predict(args: argparse.Namespace) -> int:
    modalities = normalize_modalities(args.modalities) if args.modalities else None
    path = Path(args.path)
    recognizer = _recognizer(args)
    audio_only = is_audio_file(path)
    pred = recognizer(video=None if audio_only else path, audio=path if audio_only else None,
                      text=args.text, modalities=modalities)
    result = {"label": pred.label, "scores": pred.scores, "transcript": pred.transcript,
              "transcript_source": pred.transcript_source, "modalities_used": pred.modalities_used,
              "timings_ms": {k: round(v, 2) for k, v in pred.timings_ms.items()}}
    if args.json:
        _say(_json(result))
        return 0
    _say(f"{path.name}: {pred.label}")
    for s in pred.scores:
        _say(f"  {s['label']:<12} {s['score']:6.3f}  {'#' * round(40 * s['score'])}")
    _say(f"modalities used: {', '.join(pred.modalities_used)}")
    for m, why in pred.missing.items():
        _say(f"  not used: {m} ({why})")
    _say(f"transcript ({pred.transcript_source}): {pred.transcript!r}")
    _say(f"time: {pred.timings_ms['total']:.0f} ms")
    return 0


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
           progress: bool) -> tuple[list[int], list[int]]:
    """Classifies the items in batches; a failing batch is retried row by row so the others still count."""
    from tqdm import tqdm

    index = {label: i for i, label in enumerate(recognizer.labels)}
    y_true, y_pred = [], []
    bar = tqdm(total=len(items), desc="evaluating", unit="clip", file=sys.stderr, disable=not progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        try:
            preds = recognizer.batch(chunk, modalities=modalities, batch_size=batch_size)
        except USER_ERRORS:
            preds = []
            for row in chunk:
                try:
                    preds.append(recognizer.batch([row], modalities=modalities)[0])
                except USER_ERRORS as err:
                    preds.append(None)
                    errors.append(f"line {row['line']}: {err}")
        for row, pred in zip(chunk, preds):
            if pred is not None:
                y_true.append(index[row["label"]])
                y_pred.append(index[pred.label])
        bar.update(len(chunk))
    bar.close()
    return y_true, y_pred


def _evaluate(args: argparse.Namespace) -> int:
    """Exit 0: every usable row scored; 1: some rows failed (figures over the rest); 2: nothing scored."""
    from gia_mic.metrics import classification_report

    modalities = normalize_modalities(args.modalities) if args.modalities else None
    recognizer = _recognizer(args, isolate=not args.no_isolation)
    items, errors, skipped = _evaluation_rows(args, recognizer.labels)
    y_true, y_pred = _score(recognizer, items, modalities, args.batch_size, errors, not args.quiet)
    report = classification_report(y_true, y_pred, recognizer.labels)
    result = {"n": report["n"], "skipped": skipped, "wa": report["wa"], "ua": report["ua"],
              "macro_f1": report["macro_f1"], "per_class_recall": report["per_class_recall"],
              "confusion": report["confusion"], "labels": report["labels"], "errors": errors}
    if args.json:
        _say(_json(result))
    elif report["n"]:
        _say(f"n={result['n']} skipped={result['skipped']} errors={len(errors)}")
        _say(f"WA {result['wa']:.4f}  UA {result['ua']:.4f}  macro-F1 {result['macro_f1']:.4f}")
        for label, r in result["per_class_recall"].items():
            _say(f"  recall {label:<12} {'n/a' if r is None else f'{r:.4f}'}")
        for e in errors[:10]:
            _say(f"  error: {e}")
    if not report["n"]:
        why = (f"{len(errors)} rows failed, e.g. {errors[0]}" if errors else
               f"no row has a label the model knows ({', '.join(recognizer.labels)}); {skipped} rows skipped")
        _say(f"gia-mic: error: nothing could be scored in {args.manifest}: {why}", file=sys.stderr)
        return 2
    return 1 if errors else 0


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

    p = sub.add_parser("predict", help="classify one clip",
                       usage="gia-mic predict [options] [--] PATH  (a PATH starting with '-' goes after '--')")
    p.add_argument("path", help="video or audio file")
    p.add_argument("--text", help="transcript (otherwise Whisper, when available)")
    common(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="WA / UA / macro-F1 over a manifest CSV",
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
