"""The command line shared by ``python -m train`` and ``python -m train.ablate``.

Options, config loading, exit codes (2: bad config or data, 3: stopped by
``stop_after_epochs``), the printed summary and ``--push-to-hub``. The caller says what to run,
so this module imports neither entry point. Under ``torchrun`` / ``accelerate launch`` only
rank 0 logs progress, prints the summary and publishes; the others log warnings and errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def run_cli(args: argparse.Namespace, run: Callable[..., Any], *, ablations: bool = False) -> int:
    """Loads the config, calls ``run(cfg, output_dir, resume=...)``, prints the summary, publishes.

    Args:
        args: Parsed ``add_arguments`` options.
        run: ``train.run.run_training`` or ``train.ablate.run_ablations``.
        ablations: ``run`` is the ablation table (its summary is ``ablations.md``).

    Returns:
        The exit status: 0, 1 (upload failed), 2 (bad config or data) or 3 (interrupted).
    """
    from gia_mic.configuration import ConfigError
    from gia_mic.distributed import launch_rank
    from gia_mic.media import MediaError
    from train.config import TrainConfig
    from train.distributed import leave_process_group
    from train.loop import TrainingInterrupted

    main_process = launch_rank() == 0
    level = logging.WARNING if not main_process else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    output_dir = Path(args.output_dir)
    try:
        cfg = TrainConfig.load(args.config, args.overrides)
        summary = run(cfg, output_dir, resume=args.resume)
    except TrainingInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 3
    except (ConfigError, MediaError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        leave_process_group()
    if not main_process:
        return 0
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
