"""What ``benchmarks/inference.py`` measures, in a fresh subprocess per preset (``--worker``).

``Bench`` builds one preset on random weights, decodes a generated clip, runs ASR, the processor,
each encoder and the fusion under timers, a memory sampler and a FLOP counter, then batch
throughput; ``worker`` writes its result as JSON for the parent (``inference.py``) to report.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import PeakMemory, log, stats_ms

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("tiny", "base")
BATCH_SIZES = (1, 8, 32)
CLIP_SECONDS = 5.0
THROUGHPUT_SECONDS = 3.0
CLIP_SIZE = (480, 360)  # CREMA-D-like frames (width, height)
CLIP_FPS = 30
ASR_SAMPLE_LEN = 48  # tokens per 30-s window: ~ a 5-s utterance; random weights never stop by themselves
FUSION_TARGET = 0.05
TRANSCRIPT = ("I really cannot believe you did that to me again, it is so unfair "
              "and I am honestly upset about the whole thing today.")
STAGES = ("decode", "asr", "preprocess", "encoder_video", "encoder_audio", "encoder_text", "fusion")
STAGE_LABELS = {
    "decode": "decode (mp4, 8 frames + 16 kHz audio)",
    "asr": "ASR (whisper-tiny dims, random weights)",
    "preprocess": "preprocess (processor)",
    "encoder_video": "video encoder",
    "encoder_audio": "audio encoder",
    "encoder_text": "text encoder",
    "fusion": "fusion + classifier",
}
PARAM_GROUPS = ("encoder_video", "encoder_audio", "encoder_text", "projections", "placeholders",
                "feature_extractors", "gia", "mig", "classifier")

# Base-size encoder configs built offline (same shapes as the base preset's Hub checkpoints).
BASE_ENCODER_CONFIGS: dict[str, dict[str, Any]] = {
    "video": {  # openai/clip-vit-base-patch16, vision tower
        "model_type": "clip_vision_model", "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
        "projection_dim": 512,
    },
    "audio": {  # microsoft/wavlm-base-plus: WavLMConfig defaults are base-size
        "model_type": "wavlm", "feat_extract_norm": "group", "do_stable_layer_norm": False,
    },
    "text": {  # FacebookAI/roberta-base
        "model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 514,
        "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    },
}
WHISPER_TINY_DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4,
    "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4,
}



class Bench:
    """Runs one preset; everything it measures lands in ``self.result``."""

    def __init__(self, preset: str, quick: bool) -> None:
        import torch

        self.torch = torch
        self.preset = preset
        self.quick = quick
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.reps = 2 if quick else 7
        self.budget_s = 1.5 if quick else 12.0  # per measured stage, after its first run
        self.result: dict[str, Any] = {"preset": preset, "memory_mib": {}, "latency_ms": {}}
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ plumbing
    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.cuda:
            return self.torch.autocast("cuda", dtype=self.torch.float16)
        return contextlib.nullcontext()

    def timed(self, fn: Any) -> tuple[Any, float]:
        """Runs ``fn``; returns its output and wall seconds (``self.last_cpu``: process CPU seconds)."""
        self.sync()
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.sync()
        self.last_cpu = time.process_time() - cpu
        return out, time.perf_counter() - start

    def measure(self, name: str, fn: Any, *, reps: int | None = None, budget_s: float | None = None,
                count_flops: bool = False, first_is_sample: bool = False, on_device: bool = True) -> Any:
        """First run (warm-up) under the memory sampler (and FLOP counter); then timed repeats.

        The timed repeats stop after ``reps`` or once ``budget_s`` is spent (at least one).
        ``first_is_sample`` also keeps the warm-up run as a sample (for costly stages);
        ``on_device=False`` marks a host-only stage (host RSS even on CUDA).
        """
        from torch.utils.flop_counter import FlopCounterMode

        reps = self.reps if reps is None else reps
        budget_s = self.budget_s if budget_s is None else budget_s
        with contextlib.ExitStack() as stack:
            if count_flops:
                # FlopCounterMode's module tracker hooks the autograd graph of inputs that require grad
                # (the fine-tuned speech encoder's weights); under inference_mode that fails, so the
                # warm-up run that counts FLOPs runs under plain no_grad.
                stack.enter_context(self.torch.inference_mode(False))
                stack.enter_context(self.torch.no_grad())
                counter = stack.enter_context(FlopCounterMode(display=False))
            memory = stack.enter_context(PeakMemory(self.cuda and on_device))
            out, first = self.timed(fn)
        self.result["memory_mib"][name] = memory.result
        if count_flops:
            self.result.setdefault("flops", {})[name] = {"gflop": counter.get_total_flops() / 1e9}
        samples = [first] if first_is_sample else []
        cpu = [self.last_cpu / first] if first_is_sample else []
        start = time.perf_counter()
        while len(samples) < reps and (not samples or time.perf_counter() - start < budget_s):
            out, seconds = self.timed(fn)
            samples.append(seconds)
            cpu.append(self.last_cpu / seconds)
        stats = stats_ms(samples)
        stats["first_ms"] = first * 1000.0
        stats["cpu_util"] = statistics.median(cpu)  # CPU-seconds per wall-second (contention shows up here)
        log(f"[{self.preset}] {name}: {stats['median_ms']:.1f} ms (median of {stats['n']}, first {first * 1000:.0f} ms)")
        return out, stats

    # ------------------------------------------------------------------ building
    def build_model(self) -> Any:
        from gia_mic import GiaMicConfig, GiaMicForEmotionRecognition

        self.torch.manual_seed(0)
        if self.preset == "tiny":
            config = GiaMicConfig.from_preset("tiny")
        else:
            config = GiaMicConfig.from_preset("base", video_encoder=None, audio_encoder=None, text_encoder=None,
                                              encoder_configs=BASE_ENCODER_CONFIGS)
        with PeakMemory(self.cuda) as memory:
            start = time.perf_counter()
            model = GiaMicForEmotionRecognition.from_config(config).eval().to(self.device)
            build_s = time.perf_counter() - start
        self.result["memory_mib"]["model_build"] = memory.result
        self.result["build_s"] = build_s
        enc = model.encoders
        self.result["encoders"] = {
            "video": {k: config.encoder_configs["video"].get(k) for k in
                      ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size",
                       "projection_dim")},
            "audio": {k: config.encoder_configs["audio"].get(k) for k in
                      ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "feat_extract_norm")},
            "text": {k: config.encoder_configs["text"].get(k) for k in
                     ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")},
            "audio_per_sample": bool(enc["audio"].per_sample),
        }
        self.result["fusion_config"] = {"hidden_size": config.hidden_size, "num_heads": config.num_heads,
                                        "num_frames": config.num_frames}
        self.result["params"] = param_counts(model)
        log(f"[{self.preset}] built in {build_s:.1f} s: {self.result['params']['total']['total'] / 1e6:.1f} M parameters; "
            f"audio encoder per-sample: {enc['audio'].per_sample}")
        return model

    def build_asr(self) -> Any:
        import whisper
        from whisper.model import ModelDimensions, Whisper

        from gia_mic.asr import WhisperTranscriber

        self.torch.manual_seed(0)
        model = Whisper(ModelDimensions(**WHISPER_TINY_DIMS)).eval().to(self.device)
        # No temperature fallback (WhisperTranscriber decodes at temperature 0 only) and a token cap:
        # random weights never emit end-of-text, so each 30-s window would decode n_text_ctx / 2 tokens.
        model.transcribe = functools.partial(whisper.transcribe, model, sample_len=ASR_SAMPLE_LEN)
        self.result["asr"] = {
            "label": "ASR (whisper-tiny dims, random weights)",
            "dims": WHISPER_TINY_DIMS, "params": sum(p.numel() for p in model.parameters()),
            "sample_len": ASR_SAMPLE_LEN, "temperature": 0.0,
        }
        return WhisperTranscriber(model, device=self.device)

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        import torch

        from gia_mic.encoders import EncoderOutput
        from tests.clips import make_clip

        torch.set_grad_enabled(False)
        self.result["torch_threads"] = torch.get_num_threads()
        self.result["loadavg_start"] = list(os.getloadavg())
        model = self.build_model()
        processor = model.processor
        transcriber = self.build_asr()

        with tempfile.TemporaryDirectory() as tmp:
            path = make_clip(Path(tmp) / "clip.mp4", seconds=CLIP_SECONDS, fps=CLIP_FPS, size=CLIP_SIZE)
            clip, lat = self.measure("decode", lambda: processor.decode(path), on_device=False)
            self.result["latency_ms"]["decode"] = lat
            transcript, lat = self.measure("asr", lambda: transcriber.transcribe(clip.audio),
                                           reps=3 if not self.quick else 1, first_is_sample=self.quick)
            self.result["latency_ms"]["asr"] = lat
            self.result["asr"]["output_chars"] = len(transcript.text or "")
            self.result["asr"]["source"] = transcript.source
            if transcript.text is None:
                raise RuntimeError(f"ASR produced no text: {transcript.reason}")
            inputs, lat = self.measure("preprocess", lambda: processor(frames=[clip.frames], audio=[clip.audio],
                                                                       text=[TRANSCRIPT]), on_device=False)
            self.result["latency_ms"]["preprocess"] = lat
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            encoded = self.latency_model_stages(model, inputs)
            self.result["tokens"] = {m: int(e.mask.sum()) for m, e in encoded.items()}
            self.matmul()
            self.throughput(model, processor, clip, EncoderOutput)
            if not self.quick:
                self.pipeline_check(model, transcriber, path)
        self.summarise()
        self.result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.result["loadavg_end"] = list(os.getloadavg())
        self.result["wall_s"] = time.perf_counter() - self.t0
        return self.result

    def latency_model_stages(self, model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        groups = {"video": ("pixel_values",), "audio": ("audio_values", "audio_attention_mask"),
                  "text": ("input_ids", "text_attention_mask")}
        encoded = {}
        with self.torch.inference_mode(), self.autocast():
            for m, keys in groups.items():
                out, lat = self.measure(f"encoder_{m}", lambda m=m, keys=keys: model.encode(**{k: inputs[k] for k in keys})[m],
                                        count_flops=True)
                self.result["latency_ms"][f"encoder_{m}"] = lat
                encoded[m] = out
            _, lat = self.measure("fusion", lambda: model.fuse(encoded), count_flops=True)
            self.result["latency_ms"]["fusion"] = lat
        return encoded

    def matmul(self) -> None:
        torch = self.torch
        n, dtype = (4096, torch.float16) if self.cuda else (2048, torch.float32)
        a = torch.randn(n, n, device=self.device, dtype=dtype)
        b = torch.randn(n, n, device=self.device, dtype=dtype)
        reps = 5 if self.quick else 15
        with torch.inference_mode():
            self.timed(lambda: a @ b)
            samples = [self.timed(lambda: a @ b)[1] for _ in range(reps)]
        median = statistics.median(samples)
        self.result["matmul"] = {"n": n, "dtype": str(dtype).replace("torch.", ""), "reps": reps,
                                 "median_ms": median * 1000, "gflop_per_s": 2 * n**3 / median / 1e9}
        log(f"[{self.preset}] dense {n}x{n} {dtype} matmul: {self.result['matmul']['gflop_per_s']:.0f} GFLOP/s")

    def throughput(self, model: Any, processor: Any, clip: Any, encoder_output: Any) -> None:
        """Encoders + fusion over B copies of one pre-decoded clip (audio cut to THROUGHPUT_SECONDS)."""
        samples_audio = int(THROUGHPUT_SECONDS * processor.config.sample_rate)
        start = time.perf_counter()
        one = processor(frames=[clip.frames], audio=[clip.audio[:samples_audio]], text=[TRANSCRIPT])
        preprocess_s = time.perf_counter() - start
        one = {k: v.to(self.device) for k, v in one.items() if k != "modality_mask"}
        results = {}
        for batch in BATCH_SIZES:
            # B copies of the processed clip (what the processor would give for B identical clips).
            inputs = {k: v.expand(batch, *v.shape[1:]).contiguous() for k, v in one.items()}
            results[str(batch)] = {**self.throughput_at(model, inputs, batch, encoder_output),
                                   "preprocess_ms_per_clip": preprocess_s * 1000}
        self.result["throughput"] = {"clip_seconds": THROUGHPUT_SECONDS, "batches": results}

    def throughput_at(self, model: Any, inputs: dict[str, Any], batch: int, encoder_output: Any) -> dict[str, Any]:
        """Timed encoder + fusion passes at one batch size, and one clip-by-clip fusion pass."""
        budget = 1.0 if self.quick else 25.0
        runs: list[tuple[float, float]] = []
        cpu: list[float] = []
        memory = None
        loop_start = time.perf_counter()
        with self.torch.inference_mode(), self.autocast():
            while len(runs) < self.reps and (not runs or time.perf_counter() - loop_start < budget):
                # The first pass at a batch size runs under the memory sampler and counts as a sample
                # (no separate warm-up: the model is warm from the batch-1 stages; base at B=32 is slow).
                sampler = PeakMemory(self.cuda) if memory is None else contextlib.nullcontext()
                with sampler:
                    encoded, enc_s = self.timed(functools.partial(model.encode, **inputs))
                    enc_cpu = self.last_cpu
                    _, fuse_s = self.timed(functools.partial(model.fuse, encoded))
                    cpu.append((enc_cpu + self.last_cpu) / (enc_s + fuse_s))
                if memory is None:
                    memory = sampler.result
                runs.append((enc_s, fuse_s))
            per_clip_fusion_s = None
            if batch > 1:  # EmotionRecognizer.batch fuses clip by clip (classify); one pass of that
                singles = [{m: encoder_output(e.features[i : i + 1], e.mask[i : i + 1]) for m, e in encoded.items()}
                           for i in range(batch)]
                _, per_clip_fusion_s = self.timed(lambda: [model.fuse(one) for one in singles])
        totals = [e + f for e, f in runs]
        median_total = statistics.median(totals)
        enc_med, fuse_med = statistics.median(e for e, _ in runs), statistics.median(f for _, f in runs)
        log(f"[{self.preset}] batch {batch}: {batch / median_total:.2f} clips/s (median of {len(runs)}; "
            f"fusion/encoders {fuse_med / enc_med:.1%})")
        return {"clips_per_s": batch / median_total, "median_ms": median_total * 1000, "n": len(runs),
                "encoders_ms": enc_med * 1000, "fusion_ms": fuse_med * 1000, "fusion_over_encoders": fuse_med / enc_med,
                "samples_ms": [round(t * 1000, 1) for t in totals], "memory_mib": memory,
                "cpu_util": statistics.median(cpu),
                "fusion_clip_by_clip_ms": None if per_clip_fusion_s is None else per_clip_fusion_s * 1000}

    def pipeline_check(self, model: Any, transcriber: Any, path: Path) -> None:
        """One end-to-end ``EmotionRecognizer`` call; its own ``timings_ms`` cross-check the stages."""
        from gia_mic.pipeline import EmotionRecognizer

        recognizer = EmotionRecognizer(model, transcriber=transcriber, device=self.device)
        start = time.perf_counter()
        prediction = recognizer.classify(recognizer.prepare(video=path), explain=False)
        wall = time.perf_counter() - start
        self.result["pipeline_check"] = {"wall_ms": wall * 1000,
                                         "timings_ms": {k: round(v, 2) for k, v in prediction.timings_ms.items()},
                                         "modalities_used": prediction.modalities_used}
        log(f"[{self.preset}] EmotionRecognizer end to end: {wall * 1000:.0f} ms {self.result['pipeline_check']['timings_ms']}")

    def summarise(self) -> None:
        lat = self.result["latency_ms"]
        enc_ms = sum(lat[f"encoder_{m}"]["median_ms"] for m in ("video", "audio", "text"))
        fuse_ms = lat["fusion"]["median_ms"]
        ratio = fuse_ms / enc_ms
        self.result["encoders_ms"] = enc_ms
        self.result["total_ms"] = sum(lat[s]["median_ms"] for s in STAGES)
        self.result["fusion_over_encoders"] = ratio
        self.result["fusion_target"] = FUSION_TARGET
        self.result["fusion_target_met"] = ratio < FUSION_TARGET
        peak = self.result["matmul"]["gflop_per_s"]
        flops = self.result["flops"]
        for name, entry in flops.items():
            seconds = lat[name]["median_ms"] / 1000
            entry["gflop_per_s"] = entry["gflop"] / seconds
            entry["fraction_of_matmul"] = entry["gflop_per_s"] / peak
        enc_gflop = sum(flops[f"encoder_{m}"]["gflop"] for m in ("video", "audio", "text"))
        flops["encoders"] = {"gflop": enc_gflop, "gflop_per_s": enc_gflop / (enc_ms / 1000),
                             "fraction_of_matmul": enc_gflop / (enc_ms / 1000) / peak}
        for batch, entry in self.result["throughput"]["batches"].items():
            achieved = enc_gflop * int(batch) / (entry["encoders_ms"] / 1000)
            entry["encoder_gflop_per_s"] = achieved  # FLOPs of the 5-s clip: audio is cut to 3 s here (upper bound)
        self.result["throughput"]["note"] = (
            "encoder_gflop_per_s scales the batch-1 FLOP count of the 5-s clip; the throughput clips have "
            f"{THROUGHPUT_SECONDS:g}-s audio, so the audio share is slightly overstated")


def param_counts(model: Any) -> dict[str, dict[str, int]]:
    """Parameters per stage (shared parameters counted once), trainable vs frozen."""
    counts: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        group = f"encoder_{parts[1]}" if parts[0] == "encoders" else parts[0]
        entry = counts.setdefault(group, {"total": 0, "trainable": 0, "frozen": 0})
        entry["total"] += p.numel()
        entry["trainable" if p.requires_grad else "frozen"] += p.numel()
    total = {k: sum(c[k] for c in counts.values()) for k in ("total", "trainable", "frozen")}
    ordered = {g: counts[g] for g in PARAM_GROUPS if g in counts}
    ordered.update({g: c for g, c in counts.items() if g not in ordered})  # anything unexpected
    ordered["fusion_total"] = {k: sum(c[k] for g, c in ordered.items() if not g.startswith("encoder_"))
                               for k in ("total", "trainable", "frozen")}
    ordered["total"] = total
    return ordered


def worker(preset: str, quick: bool, out: Path, threads: int | None) -> None:
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    if threads:
        torch.set_num_threads(threads)
    result = Bench(preset, quick).run()
    result["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                          "python": platform.python_version()}
    result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the slow interpreter teardown of torch & co (seconds on a busy machine)

