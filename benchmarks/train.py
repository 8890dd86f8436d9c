"""Training throughput with and without the frozen-feature cache, and a 5-fold wall time.

    python benchmarks/train.py [--json benchmarks/results/train.json] [--base-clips 16] [--folds-epochs 1]

The two base variants share one cache folder: the paper-recipe model has the same random
encoder weights (same seed), so its video/text extraction is all cache hits.

Measures, on whatever machine runs it (CPU here, no downloads):
- samples/s of one training epoch of the ``tiny`` preset and of a ``base``-size model
  (random-weight CLIP ViT-B/16 vision tower, WavLM base+, RoBERTa-base, built from their
  configs in code), each with the frozen encoders' outputs cached and without (every
  encoder runs at every step). ``base`` is measured twice: with the paper's recipe (WavLM
  fine-tuned, so it runs every step either way) and with every encoder frozen (the cache
  then replaces every encoder pass). ``cache_speedup`` in the JSON is the frozen case;
  ``cache_speedup_paper_recipe`` the other.
- the one-off extraction rate that fills the cache;
- the wall time of a full 5-fold run (``python -m train``'s own code path: folds,
  checkpoints, plots, results.json) of ``tiny`` on a synthetic 5,531-utterance set whose
  frozen features are synthetic (no extraction pass).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gia_mic.configuration import GiaMicConfig  # noqa: E402
from gia_mic.modeling import GiaMicForEmotionRecognition  # noqa: E402
from train.cache import FeatureCache  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.data import synthetic_samples  # noqa: E402
from train.features import extract_frozen  # noqa: E402
from train.run import load_samples, run_training  # noqa: E402
from train.step import TrainStep, build_batch  # noqa: E402

TINY_YAML = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny.yaml"


def _clean(config) -> dict:
    data = config.to_dict()
    for key in ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype"):
        data.pop(key, None)
    return data


def base_config(*, freeze_audio: bool) -> GiaMicConfig:
    """Base-size encoders from configs in code (random weights, no download)."""
    from transformers import CLIPVisionConfig, RobertaConfig, WavLMConfig

    video = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                             image_size=224, patch_size=16, projection_dim=512)
    audio = WavLMConfig()  # base and base+ share this architecture (94 M parameters)
    text = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2)
    return GiaMicConfig(video_encoder=None, audio_encoder=None, text_encoder=None, hidden_size=768, num_heads=8,
                        encoder_configs={"video": _clean(video), "audio": _clean(audio), "text": _clean(text)},
                        freeze_audio_encoder=freeze_audio)


def epoch_rate(model, samples, features, *, cached: bool, batch_size: int, seconds: float) -> float:
    """Samples/s of one training epoch (batching, encoders as needed, fusion, backward, Adam)."""
    torch.manual_seed(0)
    step = TrainStep(model).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    start = time.perf_counter()
    for i in range(0, len(samples), batch_size):
        batch = build_batch(samples[i : i + batch_size], features, model, synthetic_seconds=seconds,
                            frozen=None if cached else [])
        out = step(batch.cached, batch.inputs, batch.modality_mask, batch.labels)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    return len(samples) / (time.perf_counter() - start)


def measure_preset(name: str, config: GiaMicConfig, *, clips: int, seconds: float, batch_size: int,
                   cache_dir: Path) -> dict:
    """Extraction rate and epoch rates with / without the cache for one model config."""
    torch.manual_seed(0)
    model = GiaMicForEmotionRecognition.from_config(config)
    samples = synthetic_samples(count=clips, speakers=4, labels=config.labels, seed=0)
    start = time.perf_counter()
    features = extract_frozen(model, samples, FeatureCache(cache_dir), batch_size=batch_size,
                              device=torch.device("cpu"), synthetic_seconds=seconds, progress=False)
    extraction = clips / (time.perf_counter() - start)
    with_cache = epoch_rate(model, samples, features, cached=True, batch_size=batch_size, seconds=seconds)
    without = epoch_rate(model, samples, features, cached=False, batch_size=batch_size, seconds=seconds)
    return {"clips": clips, "seconds_per_clip": seconds, "batch_size": batch_size,
            "frozen": list(model.frozen_modalities()), "extraction_samples_per_s": extraction,
            "epoch_samples_per_s_cached": with_cache, "epoch_samples_per_s_uncached": without,
            "cache_speedup": with_cache / without}


def synthetic_features(samples, widths: dict[str, int], seed: int = 0) -> dict:
    """Class-dependent random ``(L, E)`` features standing in for cached encoder outputs."""
    rng = np.random.default_rng(seed)
    lengths = {"video": (8, 8), "audio": (20, 50), "text": (6, 20)}
    out = {}
    for s in samples:
        out[s.id] = {}
        for m, width in widths.items():
            n = int(rng.integers(lengths[m][0], lengths[m][1] + 1))
            x = rng.standard_normal((n, width)).astype(np.float32)
            x[:, s.label % width] += 1.0
            out[s.id][m] = torch.from_numpy(x)
    return out


def five_fold_tiny(*, epochs: int, batch_size: int, out_dir: Path) -> dict:
    """Wall time of ``run_training`` over 5 speaker folds of 5,531 synthetic utterances."""
    cfg = TrainConfig.load(TINY_YAML, ["data.synthetic_samples=5531", "data.synthetic_speakers=10", "data.num_folds=5",
                                       "model.freeze_audio_encoder=true", f"optim.max_epochs={epochs}",
                                       "optim.patience=0", f"optim.batch_size={batch_size}", "progress=false"])
    samples, _ = load_samples(cfg)
    probe = GiaMicForEmotionRecognition(cfg.model)
    features = synthetic_features(samples, {m: e.width for m, e in probe.encoders.items()})
    start = time.perf_counter()
    summary = run_training(cfg, out_dir, features=features)
    return {"utterances": len(samples), "folds": len(summary["folds"]), "epochs_per_fold": epochs,
            "batch_size": batch_size, "wall_s": time.perf_counter() - start, "mean_ua": summary["mean"]["ua"]}


def main() -> int:
    """Runs the benchmark, prints a table, optionally writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--tiny-clips", type=int, default=64)
    parser.add_argument("--base-clips", type=int, default=16)
    parser.add_argument("--folds-epochs", type=int, default=1)
    args = parser.parse_args()
    results: dict = {"device": "cuda" if torch.cuda.is_available() else f"cpu ({platform.processor() or 'unknown'})",
                     "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["tiny"] = measure_preset("tiny", GiaMicConfig.from_preset("tiny"), clips=args.tiny_clips, seconds=1.0,
                                         batch_size=8, cache_dir=tmp / "tiny")
        results["base_frozen"] = measure_preset("base_frozen", base_config(freeze_audio=True), clips=args.base_clips,
                                                seconds=3.0, batch_size=8, cache_dir=tmp / "base")
        results["base_paper_recipe"] = measure_preset("base_paper", base_config(freeze_audio=False),
                                                      clips=args.base_clips, seconds=3.0, batch_size=8, cache_dir=tmp / "base")
        results["five_fold_tiny"] = five_fold_tiny(epochs=args.folds_epochs, batch_size=64, out_dir=tmp / "folds")
    results["cache_speedup"] = results["base_frozen"]["cache_speedup"]
    results["cache_speedup_paper_recipe"] = results["base_paper_recipe"]["cache_speedup"]
    _print(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _print(results: dict) -> None:
    print(f"device: {results['device']}, torch threads: {results['torch_threads']}")
    print("| model | frozen encoders | extraction (clips/s) | epoch, cached (samples/s) "
          "| epoch, no cache (samples/s) | speedup |")
    print("|---|---|---|---|---|---|")
    for key in ("tiny", "base_frozen", "base_paper_recipe"):
        r = results[key]
        print(f"| {key} | {', '.join(r['frozen'])} | {r['extraction_samples_per_s']:.1f} | "
              f"{r['epoch_samples_per_s_cached']:.1f} | {r['epoch_samples_per_s_uncached']:.2f} | {r['cache_speedup']:.1f}x |")
    f = results["five_fold_tiny"]
    print(f"5-fold tiny, {f['utterances']} utterances, {f['epochs_per_fold']} epoch(s)/fold: {f['wall_s']:.1f} s "
          f"(mean UA {f['mean_ua']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
