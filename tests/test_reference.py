"""Reference tests: the GIA gate (SPEC §3) and the symmetric KL of the MIC (SPEC §5) against independent
computations (plain loops, ``F.kl_div``, ``torch.distributions``), not against the code under test."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gia_mic.modules import GatedInteractiveAttention, symmetric_kl
from tests.conftest import random_inputs


# ---------------------------------------------------------------------------------------- SPEC §3: the gate
def reference_attention(attn, h_a: torch.Tensor, h_b: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """MHA(query = H_A, key = value = H_B) written out: one sample, one head, one query at a time."""
    dim, heads = h_a.shape[-1], attn.heads
    d = dim // heads
    q = h_a @ attn.to_q.weight.T + attn.to_q.bias  # (B, L_A, D)
    kv = h_b @ attn.to_kv.weight.T + attn.to_kv.bias  # (B, L_B, 2D)
    k, v = kv[..., :dim], kv[..., dim:]
    out = torch.zeros_like(q)
    for b in range(h_a.shape[0]):
        keys = [j for j in range(h_b.shape[1]) if mask_b[b, j]]
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for i in range(h_a.shape[1]):
                scores = torch.stack([q[b, i, cols] @ k[b, j, cols] / math.sqrt(d) for j in keys])
                weights = torch.softmax(scores, dim=0)
                out[b, i, cols] = sum(w * v[b, j, cols] for w, j in zip(weights, keys))
    return out @ attn.to_out.weight.T + attn.to_out.bias


def reference_pool(x: torch.Tensor, mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """AvgPool_t over the valid tokens of each window (kernel 0: over the whole clip)."""
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        valid = [t for t in range(x.shape[1]) if mask[b, t]]
        for t in range(x.shape[1]):
            window = valid if kernel == 0 else [u for u in valid if abs(u - t) <= kernel // 2]
            if window:
                out[b, t] = torch.stack([x[b, u] for u in window]).mean(dim=0)
    return out


@pytest.mark.parametrize("kernel", [3, 0])
def test_gate_matches_the_spec_formula(kernel):
    torch.manual_seed(0)
    gia = GatedInteractiveAttention(dim=8, heads=2, dropout=0.0, pool_kernel=kernel).eval()
    h_a, h_b = torch.randn(2, 6, 8), torch.randn(2, 5, 8)
    mask_a = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    mask_b = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    with torch.no_grad():
        fused, gate = gia(h_a, mask_a, h_b, mask_b)
        cross = reference_attention(gia.attn, h_a, h_b, mask_b)  # H_{A->B}
        want_gate = torch.sigmoid(reference_pool(cross, mask_a, kernel) @ gia.gate.weight.T + gia.gate.bias)
        want = want_gate * cross + (1 - want_gate) * h_a
    valid = mask_a[..., None].expand_as(h_a)  # padded query tokens are masked downstream
    torch.testing.assert_close(gate[valid], want_gate[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused[valid], want[valid], atol=1e-5, rtol=1e-5)


def test_an_absent_modality_lets_nothing_cross():
    torch.manual_seed(1)
    gia = GatedInteractiveAttention(dim=8, heads=2, dropout=0.0, pool_kernel=3).eval()
    h_a, h_b = torch.randn(1, 4, 8), torch.randn(1, 3, 8)
    with torch.no_grad():
        fused, gate = gia(h_a, torch.ones(1, 4, dtype=torch.bool), h_b, torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(gate, torch.zeros_like(gate)) and torch.equal(fused, h_a)


# ---------------------------------------------------------------------------------------- SPEC §5: the MIC
def kl_div_skl(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean over valid tokens of KL(p||q) + KL(q||p), p and q softmaxes over D, with ``F.kl_div``."""
    log_p, log_q = F.log_softmax(p, dim=-1), F.log_softmax(q, dim=-1)
    # F.kl_div(input, target) = KL(target || exp(input))
    per_token = (F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)
                 + F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(-1))  # (B, L)
    return per_token[mask].mean()


def loop_skl(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> float:
    """The same with Python floats: sum_c p_c log(p_c / q_c) + q_c log(q_c / p_c), token by token."""
    total, count = 0.0, 0
    for b in range(p.shape[0]):
        for t in range(p.shape[1]):
            if not mask[b, t]:
                continue
            ep = [math.exp(x) for x in p[b, t].tolist()]
            eq = [math.exp(x) for x in q[b, t].tolist()]
            pp, qq = [x / sum(ep) for x in ep], [x / sum(eq) for x in eq]
            total += sum(a * math.log(a / c) + c * math.log(c / a) for a, c in zip(pp, qq))
            count += 1
    return total / count


def test_symmetric_kl_matches_kl_div_distributions_and_a_loop():
    torch.manual_seed(2)
    p, q = torch.randn(3, 7, 16) * 2, torch.randn(3, 7, 16) * 2
    mask = torch.rand(3, 7) > 0.3
    mask[0, 0] = True
    got = symmetric_kl(p, q, mask)
    torch.testing.assert_close(got, kl_div_skl(p, q, mask), atol=1e-5, rtol=1e-5)
    cp, cq = torch.distributions.Categorical(logits=p), torch.distributions.Categorical(logits=q)
    both = torch.distributions.kl_divergence(cp, cq) + torch.distributions.kl_divergence(cq, cp)  # (B, L)
    torch.testing.assert_close(got, both[mask].mean(), atol=1e-5, rtol=1e-5)
    assert got.item() == pytest.approx(loop_skl(p, q, mask), rel=1e-5)


def test_mir_loss_is_the_sum_of_the_three_pairs(tiny_model, rng):
    """L_MIR = D_SKL(V, S) + D_SKL(S, T) + D_SKL(T, V) on the model's own MIR tensors (all modalities present)."""
    model = tiny_model
    frames, audio, text = random_inputs(rng, 2, seconds=(1.0, 1.6), texts=("so happy", "leave me alone"))
    with torch.no_grad():
        out = model(**model.processor(frames=frames, audio=audio, text=text), labels=torch.tensor([0, 2]))
    mask = out.masks["mir"]
    want = sum(kl_div_skl(out.mir[a].float(), out.mir[b].float(), mask)
               for a, b in (("video", "audio"), ("audio", "text"), ("text", "video")))
    torch.testing.assert_close(out.mir_loss, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.loss, out.ce_loss + model.config.mic_weight * want, atol=1e-5, rtol=1e-4)
