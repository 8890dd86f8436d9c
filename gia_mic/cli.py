"""``gia-mic``: command-line predictions and evaluation.

gia-mic predict clip.mp4 [--text T] [--modalities video,audio,text] [--model DIR_OR_ID] [--json]
gia-mic evaluate --model DIR_OR_ID --manifest test.csv [--root DIR] [--modalities ...] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gia_mic.asr import DEFAULT_ASR_MODEL
from gia_mic.checkpoint import CheckpointError, default_model
from gia_mic.configuration import ConfigError, normalize_modalities
from gia_mic.encoders import EncoderLoadError
from gia_mic.media import MediaError
from gia_mic.processing import InputError


def _say(*parts: object, file=None) -> None:
    """The CLI talks to people on stdout (errors on stderr); the library itself only logs."""
    (file or sys.stdout).write(" ".join(str(p) for p in parts) + "\n")


USER_ERRORS = (MediaError, InputError, ConfigError, CheckpointError, EncoderLoadError, FileNotFoundError)


def _recognizer(args: argparse.Namespace):
    from gia_mic.pipeline import EmotionRecognizer

    asr = None if str(args.asr_model).lower() in ("none", "off", "") else args.asr_model
    return EmotionRecognizer.from_pretrained(args.model or default_model(), revision=args.revision,
                                             asr_model=asr, device=args.device)


def _predict(args: argparse.Namespace) -> int:
    modalities = normalize_modalities(args.modalities) if args.modalities else None
    path = Path(args.path)
    recognizer = _recognizer(args)
    audio_only = path.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")
    pred = recognizer(video=None if audio_only else path, audio=path if audio_only else None,
                      text=args.text, modalities=modalities)
    result = {"label": pred.label, "scores": pred.scores, "transcript": pred.transcript,
              "transcript_source": pred.transcript_source, "modalities_used": pred.modalities_used,
              "timings_ms": {k: round(v, 2) for k, v in pred.timings_ms.items()}}
    if args.json:
        _say(json.dumps(result, indent=2))
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


def read_manifest(path: Path, root: Path | None) -> list[dict[str, Any]]:
    """Rows of an evaluation CSV: ``path,label,transcript`` (optional ``video``, ``audio``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"manifest not found: {path}") from None
    except UnicodeDecodeError as err:
        raise InputError(f"manifest {path} is not valid UTF-8 (byte {err.start})") from None
    reader = csv.DictReader(text.splitlines())
    columns = set(reader.fieldnames or [])
    need = {"label", "transcript"}
    if not need <= columns or not ({"path", "video", "audio"} & columns):
        raise InputError(f"manifest {path} needs columns path (or video/audio), label, transcript; "
                         f"it has {sorted(columns)}")
    base = root or path.parent
    rows = []
    for line, row in enumerate(reader, start=2):
        item: dict[str, Any] = {"line": line, "label": (row.get("label") or "").strip(),
                                "text": row.get("transcript") or None}
        for key, target in (("path", "video"), ("video", "video"), ("audio", "audio")):
            value = (row.get(key) or "").strip()
            if value:
                file = Path(value) if Path(value).is_absolute() else base / value
                is_audio = file.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")
                item["audio" if (key == "audio" or is_audio) else target] = file
        rows.append(item)
    return rows


def _evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gia_mic.metrics import classification_report

    modalities = normalize_modalities(args.modalities) if args.modalities else None
    recognizer = _recognizer(args)
    rows = read_manifest(Path(args.manifest), Path(args.root) if args.root else None)
    index = {label: i for i, label in enumerate(recognizer.labels)}
    usable = [r for r in rows if r["label"] in index]
    y_true, y_pred, errors = [], [], []
    bar = tqdm(total=len(usable), desc="evaluating", unit="clip", file=sys.stderr, disable=args.quiet)
    for start in range(0, len(usable), args.batch_size):
        chunk = usable[start : start + args.batch_size]
        try:
            preds = recognizer.batch(chunk, modalities=modalities, batch_size=args.batch_size)
        except USER_ERRORS:
            preds = []
            for row in chunk:  # find the bad rows; the others still count
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
    report = classification_report(y_true, y_pred, recognizer.labels)
    result = {"n": report["n"], "skipped": len(rows) - len(usable), "wa": report["wa"], "ua": report["ua"],
              "macro_f1": report["macro_f1"], "per_class_recall": report["per_class_recall"],
              "confusion": report["confusion"], "labels": report["labels"], "errors": errors}
    if args.json:
        _say(json.dumps(result, indent=2))
    else:
        _say(f"n={result['n']} skipped={result['skipped']} errors={len(errors)}")
        _say(f"WA {result['wa']:.4f}  UA {result['ua']:.4f}  macro-F1 {result['macro_f1']:.4f}")
        for label, r in result["per_class_recall"].items():
            _say(f"  recall {label:<12} {'n/a' if r is None else f'{r:.4f}'}")
        for e in errors[:10]:
            _say(f"  error: {e}")
    return 0


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

    p = sub.add_parser("predict", help="classify one clip")
    p.add_argument("path", help="video or audio file")
    p.add_argument("--text", help="transcript (otherwise Whisper, when available)")
    common(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="WA / UA / macro-F1 over a manifest CSV")
    p.add_argument("--manifest", required=True, help="CSV with path (or video/audio), label, transcript")
    p.add_argument("--root", help="folder that relative paths are under (default: the manifest's folder)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=_evaluate)
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
