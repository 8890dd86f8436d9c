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
training). Several processes, GPUs or machines (DDP; ``optim.batch_size`` is the global batch):
``torchrun --nproc_per_node 4 -m train --config ... --output-dir ...`` or ``accelerate launch -m train ...``
(see ``train.distributed`` and the README).

Writes ``DIR/results.json``, ``DIR/best/`` (or ``DIR/fold_<k>/best/``: checkpoints that
``EmotionRecognizer.from_pretrained`` loads, each with its model card), ``curves.png``, ``confusion.png`` and
``train_config.yaml`` (also beside every checkpoint).
"""

from __future__ import annotations

import argparse
import sys

from train.cli import add_arguments, run_cli


def main(argv: list[str] | None = None) -> int:
    """``python -m train``."""
    parser = argparse.ArgumentParser(prog="python -m train", description="Train GIA-MIC (see the module docstring).",
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--ablations", action="store_true", help="run the ablation table instead of one model")
    args = parser.parse_args(argv)
    if args.ablations:
        from train.ablate import run_ablations as run
    else:
        from train.run import run_training as run
    return run_cli(args, run, ablations=args.ablations)


if __name__ == "__main__":
    sys.exit(main())
