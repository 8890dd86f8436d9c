r"""Train GIA-MIC.

    python -m train --config train/configs/tiny.yaml --output-dir runs/tiny          # CPU, < 1 min
    python -m train --config train/configs/iemocap.yaml --output-dir runs/iemocap \
        --set data.root=/path/to/IEMOCAP_full_release                                # the paper, 5 folds
    python -m train.prepare ravdess --data-dir ../shared/data --out data/manifests
    python -m train --config train/configs/ravdess.yaml --output-dir runs/ravdess
    python -m train.prepare meld --data-dir ../shared/data --out data/manifests
    python -m train --config train/configs/meld.yaml --output-dir runs/meld

Options: ``--set key=value`` (repeatable: ``--set optim.lr=1e-4 --set model.mic_weight=0``),
``--resume`` (continue an interrupted run from its last checkpoint), ``--ablations`` (the
paper's ablation table, see ``train.ablate``), ``--push-to-hub ORG/NAME`` (publish after
training). Multi-GPU: ``accelerate launch -m train --config ... --output-dir ...``.

Writes ``DIR/results.json``, ``DIR/best/`` (or ``DIR/fold_<k>/best/``: checkpoints that
``EmotionRecognizer.from_pretrained`` loads), ``curves.png``, ``confusion.png`` and
``train_config.yaml`` (also beside every checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``python -m train`` and ``python -m train.ablate``."""
    parser.add_argument("--config", required=True, help="a YAML file, e.g. train/configs/tiny.yaml")
    parser.add_argument("--output-dir", required=True, help="run folder (results, checkpoints, plots)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. optim.lr=1e-4 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint")
    parser.add_argument("--push-to-hub", metavar="ORG/NAME", help="publish the result to this Hub repo after training")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _print_summary(output_dir: Path, summary: dict, ablations: bool) -> None:
    if ablations:
        print((output_dir / "ablations.md").read_text(encoding="utf-8"))
        return
    mean, std = summary["mean"], summary["std"]
    for fold in summary["folds"]:
        print(f"fold {fold['fold']}: WA {fold['wa']:.4f}  UA {fold['ua']:.4f}  macro-F1 {fold['macro_f1']:.4f}  "
              f"({fold['epochs']} epochs, best {fold['best_epoch']})")
    print(f"mean: WA {mean['wa']:.4f} ± {std['wa']:.4f}  UA {mean['ua']:.4f} ± {std['ua']:.4f}  "
          f"macro-F1 {mean['macro_f1']:.4f} ± {std['macro_f1']:.4f}")
    print(f"results: {output_dir / 'results.json'}")


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None, *, ablations: bool = False) -> int:
    """Parses arguments, trains, prints the summary; user errors exit with status 2."""
    from gia_mic.configuration import ConfigError
    from gia_mic.media import MediaError
    from train.config import TrainConfig
    from train.loop import TrainingInterrupted

    add_arguments(parser)
    if not ablations:
        parser.add_argument("--ablations", action="store_true", help="run the ablation table instead of one model")
    args = parser.parse_args(argv)
    ablations = ablations or getattr(args, "ablations", False)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output_dir = Path(args.output_dir)
    try:
        cfg = TrainConfig.load(args.config, args.overrides)
        if ablations:
            from train.ablate import run_ablations

            summary = run_ablations(cfg, output_dir, resume=args.resume)
        else:
            from train.run import run_training

            summary = run_training(cfg, output_dir, resume=args.resume)
    except TrainingInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 3
    except (ConfigError, MediaError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_summary(output_dir, summary, ablations)
    if args.push_to_hub:
        from train.publish import PublishError, publish

        try:
            url = publish(output_dir, args.push_to_hub)
        except PublishError as err:  # the message says what was uploaded and how to retry
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"published: {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train``."""
    parser = argparse.ArgumentParser(prog="python -m train", description="Train GIA-MIC (see the module docstring).",
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
