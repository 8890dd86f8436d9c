r"""The paper's ablation table (``SPEC.md`` §7): full model, without MSR, without MIR, without MIC.

    python -m train.ablate --config train/configs/tiny.yaml --output-dir runs/ablate-tiny
    python -m train.ablate --config train/configs/iemocap.yaml --output-dir runs/ablate \
        --set data.root=/path/to/IEMOCAP_full_release

Each variant is one run in ``DIR/<variant>/`` (all share ``DIR/feature_cache``: the frozen
encoders do not change between variants); the table goes to ``DIR/ablations.md`` and
``DIR/ablations.json``. ``python -m train --ablations`` does the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gia_mic.distributed import launch_rank
from gia_mic.utils import atomic_write_text
from train.cli import add_arguments, run_cli
from train.config import TrainConfig, apply_override

VARIANTS: dict[str, tuple[str, list[str], float | None]] = {
    "full": ("GIA-MIC (full)", [], None),
    "no_msr": ("without MSR (no GIA blocks)", ["model.use_msr=false"], -1.1),
    "no_mir": ("without MIR (no MIG branch)", ["model.use_mir=false"], -0.9),
    "no_mic": ("without MIC (gamma = 0)", ["model.mic_weight=0"], -0.7),
}
"""name -> (row title, overrides, the paper's WA change in points)."""


def variant_config(cfg: TrainConfig, name: str, cache_dir: Path) -> TrainConfig:
    """``cfg`` with one ablation switched on and the shared feature cache."""
    raw = cfg.to_dict()
    for item in [*VARIANTS[name][1], f"data.cache_dir={cache_dir}"]:
        apply_override(raw, item)
    return TrainConfig.from_dict(raw)


def corpus_ua(summary: dict[str, Any]) -> dict[str, float]:
    """Per corpus, the validation UA averaged over folds (runs whose manifest names corpora)."""
    per: dict[str, list[float]] = {}
    for fold in summary.get("folds", []):
        for corpus, report in (fold.get("by_corpus") or {}).items():
            per.setdefault(corpus, []).append(report["ua"])
    return {c: sum(v) / len(v) for c, v in sorted(per.items())}


def ablation_entry(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """One variant's entry of ``ablations.json`` from its ``results.json``."""
    by_corpus = corpus_ua(summary)
    return {"mean": summary["mean"], "std": summary["std"], "paper_delta_wa": VARIANTS[name][2],
            **({"by_corpus_ua": by_corpus} if by_corpus else {})}


def ablation_table(results: dict[str, dict[str, Any]]) -> str:
    """One markdown table: WA / UA / macro-F1 (mean ± std over folds), change in WA vs. full.

    When the validation data names several corpora, each corpus's UA gets a column too.
    """
    full = results["full"]["mean"]["wa"] if "full" in results else None
    corpora = sorted({c for summary in results.values() for c in corpus_ua(summary)})
    extra = "".join(f" UA {c} (%) |" for c in corpora)
    lines = [f"| variant | WA (%) | UA (%) | macro-F1 (%) |{extra} ΔWA (points) | paper ΔWA |",
             "|---|---|---|---|" + "---|" * len(corpora) + "---|---|"]
    for name, summary in results.items():
        title, _, paper = VARIANTS[name]
        mean, std = summary["mean"], summary["std"]
        cells = [f"{100 * mean[k]:.1f} ± {100 * std[k]:.1f}" for k in ("wa", "ua", "macro_f1")]
        by_corpus = corpus_ua(summary)
        cells += [f"{100 * by_corpus[c]:.1f}" if c in by_corpus else "–" for c in corpora]
        delta = "–" if name == "full" or full is None else f"{100 * (mean['wa'] - full):+.1f}"
        lines.append(f"| {title} | {' | '.join(cells)} | {delta} | {'–' if paper is None else f'{paper:+.1f}'} |")
    return "\n".join(lines) + "\n"


def run_ablations(cfg: TrainConfig, output_dir: str | Path, *, resume: bool = False,
                  variants: tuple[str, ...] = tuple(VARIANTS)) -> dict[str, dict[str, Any]]:
    """Runs each variant and writes ``ablations.md`` and ``ablations.json``."""
    from train.run import run_training

    output_dir = Path(output_dir)
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else output_dir / "feature_cache"
    results, memo = {}, {}  # the frozen encoders are the same in every variant: decode and encode once
    for name in variants:
        results[name] = run_training(variant_config(cfg, name, cache_dir), output_dir / name, resume=resume,
                                     feature_memo=memo)
    if launch_rank() == 0:
        atomic_write_text(output_dir / "ablations.md", ablation_table(results))
        atomic_write_text(output_dir / "ablations.json", json.dumps(
            {name: ablation_entry(name, r) for name, r in results.items()},
            indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m train.ablate``."""
    parser = argparse.ArgumentParser(prog="python -m train.ablate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv), run_ablations, ablations=True)


if __name__ == "__main__":
    sys.exit(main())
