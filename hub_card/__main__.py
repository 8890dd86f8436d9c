"""``python -m hub_card render --model-dir DIR [--results R] [--train-config T] [--evaluations E] --out README.md``.

Renders the model card of a checkpoint directory (its ``config.json``), checks it offline
(front matter, ``model-index``) and writes it. ``--evaluations`` is a JSON list of held-out
results, one row per dataset, split and modality set (see ``render_model_card``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from hub_card import CardError, check_card, render_model_card


def _read(path: Path | None, kind: str, shape: type = dict) -> dict | list | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} does not exist") from None
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SystemExit(f"error: {path} is not valid {kind.upper()}: {err}") from None
    if not isinstance(data, shape):
        raise SystemExit(f"error: {path} must hold a {'mapping' if shape is dict else 'list'}, got {type(data).__name__}")
    return data


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hub_card", description=__doc__.splitlines()[2])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="render README.md for a checkpoint directory")
    p.add_argument("--model-dir", type=Path, required=True, help="checkpoint directory (with config.json)")
    p.add_argument("--results", type=Path, help="results.json written by `python -m train`")
    p.add_argument("--train-config", type=Path, help="train_config.yaml written by `python -m train`")
    p.add_argument("--evaluations", type=Path, help="JSON list of held-out results: {dataset, hub_id, split, "
                                                    "modalities, n, wa, ua, macro_f1} per row")
    p.add_argument("--repo-id", help="ORG/NAME shown in the usage snippets")
    p.add_argument("--out", type=Path, required=True, help="where to write the card (e.g. README.md)")
    args = parser.parse_args(argv)

    model_config = _read(args.model_dir / "config.json", "json")
    evaluations = _read(args.evaluations, "json", list)
    text = render_model_card(model_config, _read(args.train_config, "yaml"), _read(args.results, "json"),
                             repo_id=args.repo_id, extra={"evaluations": evaluations} if evaluations else None)
    try:
        check_card(text)
    except CardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
