"""Training for GIA-MIC: ``python -m train`` (see ``train/__main__.py``).

Modules: ``config`` (the training config, which contains the model config), ``data``
(samples, manifest and synthetic corpora, speaker-independent folds), ``iemocap`` (the
official release layout), ``cache`` + ``features`` (frozen-encoder outputs, computed once),
``state`` (atomic training-state checkpoints), ``loop`` (one fold), ``run`` (all folds,
results and plots), ``ablate`` (the paper's ablation table), ``prepare`` (manifests for
RAVDESS and MELD).
"""
