r"""Exports a GIA-MIC checkpoint to ONNX: one graph per encoder and one for the fusion.

    gia-mic export-onnx --model checkpoints/gia-mic-lite --out build/gia-mic-lite-onnx

The output folder is what ``gia_mic.onnx_runtime`` runs without torch:

* ``encoder_<modality>.onnx`` for each trained modality: the processor's tensors in, raw
  encoder tokens ``features (B, L, E)`` and their ``mask (B, L)`` out (dynamic batch, and
  dynamic length where the encoder takes a variable-length input);
* ``fusion.onnx``: ``modality_mask (B, 3)`` and ``<m>_features`` / ``<m>_mask`` of every
  trained modality in (dynamic batch and token lengths), ``logits (B, C)`` and the GIA gates
  out. It wraps ``model.fuse`` as it is, so it follows whatever the fusion's structure is;
* ``config.json`` (the model config: labels, sample rate, frame count, text length), the
  processor folders (``tokenizer/`` ...), ``preprocessing.safetensors`` (numeric constants such
  as Whisper's mel filters) and ``onnx_export.json`` (graph inputs/outputs and the
  preprocessing recipe of each modality).

The graphs come from ``torch.onnx.export(..., dynamo=True)`` (opset 18). The one operator it
cannot translate, the stable ``argsort`` that packs MIG tokens, is mapped to ONNX ``TopK``,
whose ties keep index order (the ONNX specification), i.e. a stable sort.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gia_mic.configuration import MODALITIES
from gia_mic.encoders import EncoderOutput
from gia_mic.errors import GiaMicError
from gia_mic.modeling import GiaMicForEmotionRecognition

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 1
OPSET = 18
MANIFEST_NAME = "onnx_export.json"
CONSTANTS_NAME = "preprocessing.safetensors"
ENCODER_INPUTS = {"video": ("pixel_values",), "audio": ("audio_values", "audio_attention_mask"),
                  "text": ("input_ids", "text_attention_mask")}
EXAMPLE_TEXTS = ("I really cannot believe it", "Fine.")


class ExportError(GiaMicError, RuntimeError):
    """The export cannot be made: a part the ONNX runtime does not support, or the ``[onnx]`` extra is missing."""


def gate_output_name(direction: str) -> str:
    """ONNX output name of a GIA gate, e.g. ``"audio<-text"`` -> ``"gate_audio_from_text"``."""
    a, b = direction.split("<-")
    return f"gate_{a}_from_{b}"


# ---------------------------------------------------------------------------------- graph wrappers
class _EncoderGraph(nn.Module):
    """One modality's encoder as the model runs it: processor tensors -> (features, mask)."""

    def __init__(self, model: GiaMicForEmotionRecognition, modality: str, per_sample: bool) -> None:
        super().__init__()
        self.model, self.modality, self.per_sample = model, modality, per_sample

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.per_sample:  # group-norm speech encoders run one unpadded clip at a time
            features = self.model.encoders["audio"].model(inputs[0]).last_hidden_state  # (1, L, E)
            return features, torch.ones(features.shape[:2], dtype=torch.bool)
        out = self.model.encode(**dict(zip(ENCODER_INPUTS[self.modality], inputs)))[self.modality]
        return out.features, out.mask  # (B, L, E), (B, L)


class _FusionGraph(nn.Module):
    """``model.fuse`` over every trained modality; absent ones are marked in ``modality_mask``."""

    def __init__(self, model: GiaMicForEmotionRecognition, gate_names: list[str]) -> None:
        super().__init__()
        self.model, self.gate_names = model, gate_names
        self.modalities = tuple(model.config.modalities)

    def forward(self, modality_mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoded = {m: EncoderOutput(tensors[2 * i], tensors[2 * i + 1]) for i, m in enumerate(self.modalities)}
        out = self.model.fuse(encoded, modality_mask=modality_mask)
        return (out.logits, *(out.gates[name] for name in self.gate_names))  # (B, C), (B, L_A, D) each


def _sort_stable(self: Any, stable: bool | None = None, dim: int = -1, descending: bool = False) -> Any:
    """``aten.sort.stable`` as ONNX ``TopK`` over all elements (TopK breaks ties by lower index)."""
    from onnxscript import ir
    from onnxscript import opset18 as op

    rank = len(self.shape)
    dim = dim % rank
    k = op.Shape(self, start=dim, end=dim + 1)
    keys = op.Cast(self, to=ir.DataType.DOUBLE)  # TopK takes no bool/int8 keys; double is exact for them
    _, indices = op.TopK(keys, k, axis=dim, largest=1 if descending else 0, sorted=1)
    return op.GatherElements(self, indices, axis=dim), indices


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
            output_names: list[str], dynamic: list[dict[int, str]], *, fixed_args: int = 0) -> None:
    """``dynamic`` names each input's dynamic axes; inputs after the first ``fixed_args`` fill ``*args``."""
    dims: dict[str, Any] = {}
    specs = [{axis: dims.setdefault(name, torch.export.Dim(name)) for axis, name in spec.items()} or None
             for spec in dynamic]
    shapes = (*specs[:fixed_args], tuple(specs[fixed_args:]))
    with warnings.catch_warnings():
        # Inputs that share a length on purpose (features and their mask) share one Dim; torch says so per axis.
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)  # torch-internal deprecation
        program = torch.onnx.export(module, args, input_names=input_names, output_names=output_names, opset_version=OPSET,
                                    dynamo=True, dynamic_shapes=shapes, verbose=False,
                                    custom_translation_table={torch.ops.aten.sort.stable: _sort_stable})
    program.save(str(path))


# ---------------------------------------------------------------------------------- preprocessing recipes
def _preprocessing(model: GiaMicForEmotionRecognition, constants: dict[str, np.ndarray]) -> dict[str, Any]:
    """What the torch-free runtime must do before each encoder, read off the processor components."""
    config, components = model.config, model.processor.components
    recipes: dict[str, Any] = {}
    for m in config.modalities:
        component = components[m]
        kind = type(component).__name__
        if m == "audio" and kind == "WhisperFeatureExtractor":
            window = config.encoder_configs["audio"].get("max_source_positions", 1500) * 2
            constants["audio.mel_filters"] = np.asarray(component.mel_filters, np.float64)  # (n_freq, n_mels)
            recipes[m] = {"kind": "whisper_log_mel", "n_fft": component.n_fft, "hop_length": component.hop_length,
                          "n_mels": component.feature_size, "frames": window, "dither": component.dither}
        elif m == "audio" and kind == "Wav2Vec2FeatureExtractor":
            recipes[m] = {"kind": "wav2vec2", "do_normalize": bool(component.do_normalize),
                          "padding_value": float(component.padding_value)}
        elif m == "text" and getattr(component, "is_fast", False):
            recipes[m] = {"kind": "tokenizers", "file": "tokenizer/tokenizer.json", "max_length": config.max_text_tokens,
                          "pad_id": int(component.pad_token_id), "pad_token": str(component.pad_token),
                          "padding_side": component.padding_side, "truncation_side": component.truncation_side}
        elif m == "video" and kind.startswith("CLIPImageProcessor"):
            size, crop = component.size, component.crop_size
            recipes[m] = {"kind": "clip_image", "shortest_edge": int(size["shortest_edge"]),
                          "crop": [int(crop["height"]), int(crop["width"])], "resample": int(component.resample),
                          "rescale_factor": float(component.rescale_factor), "mean": list(map(float, component.image_mean)),
                          "std": list(map(float, component.image_std))}
        else:
            raise ExportError(f"{m} preprocessing by {kind} is not supported by the torch-free runtime")
    return recipes


# ---------------------------------------------------------------------------------- examples
def _example_inputs(model: GiaMicForEmotionRecognition) -> dict[str, torch.Tensor]:
    """Two clips of different lengths through the model's own processor (batch 2: dynamic dims need >= 2)."""
    config, rng = model.config, np.random.default_rng(0)
    frames = [rng.integers(0, 255, (config.num_frames, 48, 64, 3), dtype=np.uint8) for _ in range(2)]
    audio = [(rng.standard_normal(int(config.sample_rate * s)) * 0.1).astype(np.float32) for s in (1.3, 0.7)]
    return model.processor(frames=frames, audio=audio, text=list(EXAMPLE_TEXTS))


def _encoder_spec(model: GiaMicForEmotionRecognition, m: str,
                  inputs: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], list[dict[int, str]], bool]:
    """Example args, dynamic axes and the per-sample flag of one encoder graph."""
    args = tuple(inputs[name] for name in ENCODER_INPUTS[m])
    if m == "video":
        return args, [{0: "batch"}], False
    if m == "text":
        return args, [{0: "batch", 1: "text_len"}] * 2, False
    if args[0].ndim == 3:  # a log-mel window of fixed length (Whisper)
        return args, [{0: "batch"}] * 2, False
    if model.encoders["audio"].per_sample:
        length = int(args[1][0].sum())
        return (args[0][:1, :length],), [{1: "samples"}], True
    return args, [{0: "batch", 1: "samples"}] * 2, False


# ---------------------------------------------------------------------------------- entry point
def export_onnx(model_dir: str | Path, out_dir: str | Path, *, revision: str | None = None) -> Path:
    """Exports a checkpoint's encoders and fusion to ONNX with everything preprocessing needs.

    Args:
        model_dir: Checkpoint directory or Hub id (as ``from_pretrained``).
        out_dir: Folder to write (created; existing files of the same names are replaced).
        revision: Hub revision.

    Returns:
        ``out_dir``.

    Raises:
        ExportError: a preprocessing component the torch-free runtime cannot reproduce, or the
            ``onnx`` / ``onnxscript`` packages are not installed.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx.export's dynamo exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(f"ONNX export needs the onnx extra: pip install 'gia-mic[onnx]' ({err})") from None
    model = GiaMicForEmotionRecognition.from_pretrained(model_dir, revision=revision, device="cpu").eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    constants: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "opset": OPSET, "torch": torch.__version__,
                                "labels": list(model.config.labels), "modalities": list(model.config.modalities),
                                "preprocessing": _preprocessing(model, constants), "graphs": {}}
    inputs = _example_inputs(model)
    encoded: dict[str, EncoderOutput] = {}
    with torch.no_grad():
        for m in model.config.modalities:
            args, dynamic, per_sample = _encoder_spec(model, m, inputs)
            names = list(ENCODER_INPUTS[m][: len(args)])
            graph = _EncoderGraph(model, m, per_sample).eval()
            _export(graph, args, out / f"encoder_{m}.onnx", names, ["features", "mask"], dynamic)
            full = model.encode(**{k: inputs[k] for k in ENCODER_INPUTS[m]})[m]
            encoded[m] = EncoderOutput(full.features, full.mask)
            manifest["graphs"][f"encoder_{m}"] = {"file": f"encoder_{m}.onnx", "inputs": names,
                                                  "outputs": ["features", "mask"], "per_sample": per_sample,
                                                  "width": int(full.features.shape[-1])}
        _export_fusion(model, encoded, out, manifest)
    _write_assets(model, out, manifest, constants)
    logger.info("exported %s to %s", model_dir, out)
    return out


def _export_fusion(model: GiaMicForEmotionRecognition, encoded: dict[str, EncoderOutput], out: Path,
                   manifest: dict[str, Any]) -> None:
    """The fusion graph; its example has lengths >= 2 per modality and one padded row."""
    mods = list(model.config.modalities)
    present = torch.ones(2, len(MODALITIES), dtype=torch.bool)  # (B, 3)
    gate_names = list(model.fuse(encoded, modality_mask=present).gates)
    args: list[torch.Tensor] = [present]
    names, dynamic = ["modality_mask"], [{0: "batch"}]
    for m in mods:
        features, mask = encoded[m].features, encoded[m].mask.clone()  # (2, L, E), (2, L)
        if features.shape[1] < 2:  # a length of 1 would be specialised as a constant
            features = torch.cat([features, torch.zeros_like(features)], dim=1)
            mask = torch.cat([mask, torch.zeros_like(mask)], dim=1)
        mask[1, -1] = False  # a padded position in the example: padding stays data, not a constant
        args += [features, mask]
        names += [f"{m}_features", f"{m}_mask"]
        dynamic += [{0: "batch", 1: f"{m}_len"}] * 2
    outputs = ["logits"] + [gate_output_name(g) for g in gate_names]
    _export(_FusionGraph(model, gate_names).eval(), tuple(args), out / "fusion.onnx", names, outputs, dynamic,
            fixed_args=1)
    manifest["graphs"]["fusion"] = {"file": "fusion.onnx", "inputs": names, "outputs": outputs,
                                    "gates": {gate_output_name(g): g for g in gate_names}}


def _write_assets(model: GiaMicForEmotionRecognition, out: Path, manifest: dict[str, Any],
                  constants: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    from gia_mic.checkpoint import CONFIG_NAME
    from gia_mic.processing import COMPONENT_DIRS

    for m in model.config.modalities:
        shutil.rmtree(out / COMPONENT_DIRS[m], ignore_errors=True)
    model.processor.save_pretrained(out)
    model.config.to_json_file(out / CONFIG_NAME)
    save_file({k: np.ascontiguousarray(v) for k, v in constants.items()}, str(out / CONSTANTS_NAME))
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m gia_mic.onnx_export ...`` is ``gia-mic export-onnx ...``."""
    from gia_mic.cli import main as cli_main

    return cli_main(["export-onnx", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
