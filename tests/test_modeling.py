"""The model: shapes, masks, padding invariance, missing modalities, ablations, loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gia_mic import MODALITIES, GiaMicConfig
from gia_mic.modules import MaskedAttention, masked_window_mean, symmetric_kl
from tests.conftest import build_tiny, random_inputs


def run(model, frames=None, audio=None, text=None, labels=None, **kw):
    inputs = model.processor(frames=frames, audio=audio, text=text, **kw)
    with torch.no_grad():
        return model(**inputs, labels=labels)


def test_output_has_every_part(tiny_model, rng):
    frames, audio, text = random_inputs(rng, 2, seconds=(1.0, 1.5), texts=("happy day", "so sad"))
    out = run(tiny_model, frames, audio, text, labels=torch.tensor([1, 3]))
    assert out.logits.shape == (2, 4)
    assert sorted(out.gates) == sorted(["video<-audio", "audio<-video", "audio<-text", "text<-audio",
                                        "text<-video", "video<-text"])
    assert out.gates["video<-audio"].shape == (2, 8, 32)
    assert out.gates["audio<-text"].shape[:2] == out.msr["audio"].shape[:2]
    for g in out.gates.values():
        assert torch.all((g >= 0) & (g <= 1))
    assert set(out.msr) == set(out.mir) == set(MODALITIES)
    assert out.mir["video"].shape == out.mir["text"].shape  # same query positions
    assert out.masks["mir"].shape == out.mir["audio"].shape[:2]
    assert torch.isfinite(out.loss) and out.mir_loss > 0
    assert torch.allclose(out.loss, out.ce_loss + 0.1 * out.mir_loss)


def test_padding_never_changes_logits(tiny_model, rng):
    frames, audio, text = random_inputs(rng, 3, seconds=(0.7, 2.3, 1.1),
                                        texts=("hi", "this is a much longer transcript with many words", "ok then"))
    batched = run(tiny_model, frames, audio, text).logits
    for i in range(3):
        alone = run(tiny_model, frames[i : i + 1], audio[i : i + 1], text[i : i + 1]).logits
        torch.testing.assert_close(batched[i : i + 1], alone, atol=2e-5, rtol=1e-4)


def test_padding_invariance_with_missing_modalities(tiny_model, rng):
    frames, audio, text = random_inputs(rng, 3, seconds=(0.7, 2.3, 1.1), texts=("hi", None, "a longer one here"))
    frames[1] = None
    audio[2] = None
    batched = run(tiny_model, frames, audio, text).logits
    for i in range(3):
        alone = run(tiny_model, frames[i : i + 1], audio[i : i + 1], text[i : i + 1]).logits
        torch.testing.assert_close(batched[i : i + 1], alone, atol=2e-5, rtol=1e-4)


def test_group_norm_speech_encoder_is_padding_invariant(rng):
    cfg = GiaMicConfig.from_preset("tiny").encoder_configs["audio"]
    model = build_tiny(encoder_configs={"audio": {**cfg, "feat_extract_norm": "group", "do_stable_layer_norm": False}},
                       modalities=["audio", "text"])
    assert model.encoders["audio"].per_sample
    _, audio, text = random_inputs(rng, 2, seconds=(0.5, 2.0), texts=("a", "b c d"))
    batched = run(model, audio=audio, text=text).logits
    alone = run(model, audio=audio[:1], text=text[:1]).logits
    torch.testing.assert_close(batched[:1], alone, atol=2e-5, rtol=1e-4)


def test_batch_where_every_sample_lacks_text(tiny_model, rng):
    frames, audio, _ = random_inputs(rng, 2, seconds=(1.0, 1.2))
    out = run(tiny_model, frames, audio, [None, None], labels=torch.tensor([0, 2]))
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
    assert not out.modality_mask[:, 2].any()
    assert out.msr["text"].shape[1] == 1  # one all-masked token
    assert not out.masks["text"].any()
    # only the video-audio MIC pair remains
    assert out.mir_loss > 0


def test_single_modality_has_no_mic_pair_and_no_cross_gate(tiny_model, rng):
    _, audio, _ = random_inputs(rng, 1)
    out = run(tiny_model, audio=audio, labels=torch.tensor([1]))
    assert out.mir_loss.item() == 0.0
    assert torch.all(out.gates["audio<-video"] == 0) and torch.all(out.gates["audio<-text"] == 0)
    assert out.modality_mask.tolist() == [[False, True, False]]


def test_modality_subset_equals_dropping_the_input(tiny_model, rng):
    frames, audio, text = random_inputs(rng, 1)
    subset = run(tiny_model, frames, audio, text, modalities="audio,text").logits
    dropped = run(tiny_model, None, audio, text).logits
    torch.testing.assert_close(subset, dropped)
    full = run(tiny_model, frames, audio, text).logits
    assert not torch.allclose(full, subset)


def test_an_absent_modality_is_no_query_and_reaches_nothing(tiny_model, rng):
    """SPEC §8: an absent modality takes part in no attention and adds nothing to the classifier.

    Whatever sits at an absent modality's position (its zero token, or anything a bug puts there)
    must not change the output: perturbing every fusion weight that only an absent modality's own
    stream uses (its feature extractor, the GIA directions it queries) leaves the logits equal.
    """
    _, audio, text = random_inputs(rng, 2, seconds=(1.0, 1.4), texts=("happy day", "so sad"))
    before = run(tiny_model, audio=audio, text=text)
    saved = {k: v.detach().clone() for k, v in tiny_model.state_dict().items()}
    own = [n for n, _ in tiny_model.named_parameters()
           if n.startswith(("feature_extractors.video.", "gia.video<-", "projections.video."))]
    assert own, "the tiny model has a video stream to perturb"
    try:
        with torch.no_grad():
            for n, p in tiny_model.named_parameters():
                if n in own:
                    p.add_(torch.randn_like(p))
        after = run(tiny_model, audio=audio, text=text)
    finally:
        tiny_model.load_state_dict(saved)
    torch.testing.assert_close(before.logits, after.logits)
    assert torch.all(before.gates["audio<-video"] == 0) and torch.all(before.gates["text<-video"] == 0)


def test_blocks_exist_only_for_the_configured_modalities(rng):
    model = build_tiny(modalities=["audio", "text"])
    names = [n for n, _ in model.named_parameters()]
    assert not any("video" in n for n in names), [n for n in names if "video" in n][:3]
    assert model.fusion_modalities == ("audio", "text")
    assert sorted(model.gia) == ["audio<-text", "text<-audio"] and sorted(model.mig) == ["audio", "text"]
    assert model.classifier[0].in_features == 2 * 2 * model.config.hidden_size  # MSR + MIR of 2 modalities
    _, audio, text = random_inputs(rng, 2, seconds=(1.0, 1.2), texts=("a b", "c"))
    out = model(**model.processor(audio=audio, text=text), labels=torch.tensor([0, 1]))
    out.loss.backward()
    idle = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not idle, f"fusion parameters that never receive a gradient: {idle[:5]}"


def test_building_a_model_leaves_the_callers_config_alone():
    config = GiaMicConfig.from_preset("tiny")
    carried = {m: dict(v) for m, v in config.encoder_configs.items()}
    config.encoder_configs.pop("text")
    config.text_encoder = None
    config.encoder_configs["text"] = carried["text"]
    before = config.to_dict()
    build_tiny(encoder_configs=config.encoder_configs)
    from gia_mic import GiaMicForEmotionRecognition
    GiaMicForEmotionRecognition(config)
    assert config.to_dict() == before


def test_a_misspelt_input_is_an_error_not_a_missing_modality(tiny_model, rng):
    _, audio, _ = random_inputs(rng, 1)
    inputs = tiny_model.processor(audio=audio)
    inputs["audio_value"] = inputs.pop("audio_values")
    with pytest.raises(TypeError, match="audio_value"):
        tiny_model(**inputs)


def test_inputs_for_a_modality_without_an_encoder_are_refused(rng):
    model = build_tiny(modalities=["audio", "text"])
    frames, _, _ = random_inputs(rng, 1)
    with pytest.raises(ValueError, match="no encoder for it"):
        model.encode(pixel_values=torch.zeros(1, 8, 3, 32, 32))


def test_probabilities_use_the_calibration_temperature(tiny_model):
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    plain = tiny_model.probabilities(logits)
    torch.testing.assert_close(plain, logits.softmax(-1))
    tiny_model.config.temperature = 2.0
    try:
        torch.testing.assert_close(tiny_model.probabilities(logits), (logits / 2).softmax(-1))
    finally:
        tiny_model.config.temperature = 1.0


def test_each_row_gets_its_modality_sets_temperature(tiny_model):
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [1.0, 3.0, 0.0, 0.0], [0.5, 0.0, 2.0, 1.0]])
    config = tiny_model.config
    config.temperature, config.temperatures = 2.0, {"audio+text": 3.0, "text": 0.5}
    try:
        got = tiny_model.probabilities(logits, [["text", "audio"], ["text"], ["video"]])
        expected = torch.cat([(logits[0:1] / 3.0).softmax(-1), (logits[1:2] / 0.5).softmax(-1),
                              (logits[2:3] / 2.0).softmax(-1)])  # video alone: not listed, the global T
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(tiny_model.probabilities(logits), (logits / 2.0).softmax(-1))
        with pytest.raises(ValueError, match="one list per row expected"):
            tiny_model.probabilities(logits, [["text"]])
    finally:
        config.temperature, config.temperatures = 1.0, {}


@pytest.mark.parametrize("temperatures,message", [
    ({"text+audio": 1.5}, "key 'text\\+audio' must be a '\\+'-joined set"),
    ({"video": 1.5}, "key 'video'"),
    ({"": 1.5}, "key ''"),
    ({"text": 0.0}, "temperatures\\['text'\\]: must be a number in \\[0.01, 100\\]"),
    ({"text": True}, "temperatures\\['text'\\]"),
    ([1.5], "temperatures: must be an object"),
])
def test_bad_per_set_temperatures_are_named(temperatures, message):
    from gia_mic.configuration import GiaMicConfig
    from gia_mic.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        GiaMicConfig.from_preset("tiny", modalities=["audio", "text"], temperatures=temperatures)


@pytest.mark.parametrize("overrides,check", [
    ({"use_msr": False}, lambda m, o: not o.gates and not hasattr(m, "gia")),
    ({"use_mir": False}, lambda m, o: not o.mir and m.classifier[0].in_features == 3 * 32),
    ({"mic_weight": 0.0}, lambda m, o: torch.equal(o.loss, o.ce_loss) and o.mir_loss > 0),
    ({"gate_pool_kernel": 0}, lambda m, o: torch.allclose(o.gates["audio<-text"], o.gates["audio<-text"][:, :1])),
    ({"mig_shared_weights": True}, lambda m, o: m.mig["video"] is m.mig["text"]),
])
def test_ablations_and_choices(overrides, check, rng):
    model = build_tiny(**overrides)
    frames, audio, text = random_inputs(rng, 1)
    out = run(model, frames, audio, text, labels=torch.tensor([0]))
    assert check(model, out)
    assert torch.isfinite(out.loss)


def test_freezing_follows_the_spec(tiny_model):
    enc = tiny_model.encoders
    assert not any(p.requires_grad for p in enc["video"].parameters())
    assert not any(p.requires_grad for p in enc["text"].parameters())
    assert not any(p.requires_grad for p in enc["audio"].model.feature_extractor.parameters())
    assert any(p.requires_grad for p in enc["audio"].model.encoder.parameters())
    tiny_model.train()
    try:
        assert not enc["video"].training and not enc["text"].training and enc["audio"].training
    finally:
        tiny_model.eval()


def test_gradients_reach_fusion_and_speech_encoder(rng):
    model = build_tiny().train()
    frames, audio, text = random_inputs(rng, 2, seconds=(1.0, 1.3), texts=("yes", "no"))
    out = model(**model.processor(frames=frames, audio=audio, text=text), labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert model.gia["video<-audio"].gate.weight.grad.abs().sum() > 0
    assert model.mig["text"].strided_conv.weight.grad.abs().sum() > 0
    assert model.encoders["audio"].model.encoder.layers[0].attention.k_proj.weight.grad is not None
    assert model.encoders["text"].model.embeddings.word_embeddings.weight.grad is None


def test_modality_dropout_keeps_one_modality():
    model = build_tiny(modality_dropout=0.9).train()
    present = torch.ones(256, 3, dtype=torch.bool)
    present[::2, 0] = False
    kept = model._drop_modalities(present)
    assert kept.any(dim=1).all()
    assert not (kept & ~present).any()
    assert kept.sum() < present.sum()


def test_bert_family_text_encoder(rng):
    bert = {"model_type": "bert", "vocab_size": 50261, "hidden_size": 40, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2}
    model = build_tiny(encoder_configs={"text": bert}, modalities=["audio", "text"])
    assert isinstance(model.projections["text"], torch.nn.Linear)
    _, audio, text = random_inputs(rng, 2, seconds=(0.5, 1.0), texts=("short", "a longer sentence here"))
    batched = run(model, audio=audio, text=text).logits
    alone = run(model, audio=audio[1:], text=text[1:]).logits
    torch.testing.assert_close(batched[1:], alone, atol=2e-5, rtol=1e-4)


def test_masked_attention_empty_rows_are_zero_not_nan():
    attn = MaskedAttention(dim=8, heads=2)
    q, k = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    out = attn(q, k, mask)
    assert torch.isfinite(out).all() and torch.all(out[1] == 0) and out[0].abs().sum() > 0


def test_masked_window_mean_ignores_padding():
    x = torch.arange(5.0).view(1, 5, 1)
    mask = torch.tensor([[True, True, True, False, False]])
    pooled = masked_window_mean(x, mask, kernel=3)
    assert pooled[0, :3, 0].tolist() == pytest.approx([0.5, 1.0, 1.5])


def test_symmetric_kl():
    p = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert symmetric_kl(p, p, mask).item() == pytest.approx(0.0, abs=1e-6)
    q = torch.randn(2, 5, 8)
    value = symmetric_kl(p, q, mask)
    assert value > 0 and value == pytest.approx(symmetric_kl(q, p, mask).item(), rel=1e-5)
    assert symmetric_kl(p, q, torch.zeros_like(mask)).item() == 0.0
    # padding positions never count
    q2 = q.clone()
    q2[:, 4] = 100.0
    mask[:, 4] = False
    assert symmetric_kl(p, q, mask) == symmetric_kl(p, q2, mask)


def test_forward_with_no_usable_input_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="no input for any modality"):
        tiny_model()


def test_frames_of_wrong_shape_are_refused(tiny_model):
    from gia_mic import InputError

    with pytest.raises(InputError, match="frames must be"):
        tiny_model.processor(frames=[np.zeros((3, 10, 10, 3), np.uint8)])


def test_sample_weights_scale_each_cross_entropy(tiny_model, rng):
    frames, audio, text = random_inputs(rng, 3, seconds=(1.0, 1.2, 0.9), texts=("a", "b", "c"))
    inputs = tiny_model.processor(frames=frames, audio=audio, text=text)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        plain = tiny_model(**inputs, labels=labels)
        ones = tiny_model(**inputs, labels=labels, sample_weights=torch.ones(3))
        weighted = tiny_model(**inputs, labels=labels, sample_weights=torch.tensor([1.0, 0.0, 3.0]))
    per_sample = torch.nn.functional.cross_entropy(plain.logits, labels, reduction="none")
    torch.testing.assert_close(ones.ce_loss, plain.ce_loss)
    torch.testing.assert_close(weighted.ce_loss, (per_sample[0] + 3 * per_sample[2]) / 3)
