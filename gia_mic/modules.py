"""Fusion blocks of GIA-MIC (``SPEC.md`` sections 2-5): attention, GIA, MIG, MIC.

Conventions: ``B`` batch, ``L`` tokens, ``D`` width; a mask is ``(B, L)`` bool, True on
real tokens. Every block honours masks so that padding never changes a sample's output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid tokens; a row with no valid token (an absent modality) is zero.

    Args:
        x: ``(B, L, D)``.
        mask: ``(B, L)`` bool.

    Returns:
        ``(B, D)``.
    """
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    count = weights.sum(dim=1)  # (B, 1)
    mean = (x * weights).sum(dim=1) / count.clamp(min=1.0)  # (B, D)
    return mean  # an empty row sums to zero


def masked_window_mean(x: torch.Tensor, mask: torch.Tensor, kernel: int, stride: int = 1) -> torch.Tensor:
    """Average pool along tokens over valid positions only ("same" windows, odd kernel).

    Args:
        x: ``(B, L, D)``.
        mask: ``(B, L)`` bool.
        kernel: Odd window size; 0 means one global masked mean broadcast to every token.
        stride: Output stride; output length is ``ceil(L / stride)``.

    Returns:
        ``(B, ceil(L / stride), D)``.
    """
    if kernel == 0:
        return masked_mean(x, mask).unsqueeze(1).expand(-1, -(-x.shape[1] // stride), -1)
    weights = mask.to(x.dtype).unsqueeze(1)  # (B, 1, L)
    summed = F.avg_pool1d(rearrange(x, "b l d -> b d l") * weights, kernel, stride, kernel // 2,
                          count_include_pad=True, ceil_mode=False)  # (B, D, L')
    counts = F.avg_pool1d(weights, kernel, stride, kernel // 2, count_include_pad=True, ceil_mode=False)
    pooled = summed / counts.clamp(min=1e-6)
    return rearrange(pooled, "b d l -> b l d")


class MaskedAttention(nn.Module):
    """Multi-head attention with a key padding mask and safe empty rows.

    A query whose keys are all masked (an absent modality) gets a zero output instead of
    the NaN a softmax over nothing would give.
    """

    def __init__(self, *, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """Attends ``query`` (B, Lq, D) over ``context`` (B, Lk, D) where ``context_mask``."""
        q = rearrange(self.to_q(query), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.to_kv(context), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        has_key = context_mask.any(dim=1)  # (B,)
        safe_mask = context_mask | ~has_key.unsqueeze(1)  # empty rows attend everywhere, zeroed below
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=safe_mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, Lq, d)
        out = self.to_out(rearrange(out, "b h l d -> b l (h d)"))  # (B, Lq, D)
        return out * has_key.to(out.dtype)[:, None, None]


class FeatureExtractorLayer(nn.Module):
    """One post-norm Transformer encoder layer (D, heads, FFN ``mult * D``) with masks (spec §2)."""

    def __init__(self, *, dim: int, heads: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.attn = MaskedAttention(dim=dim, heads=heads, dropout=dropout)
        self.ff = nn.Sequential(nn.Linear(dim, mult * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(mult * dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, L, D), ``mask`` (B, L) -> (B, L, D)."""
        x = self.norm1(x + self.drop(self.attn(x, x, mask)))
        return self.norm2(x + self.drop(self.ff(x)))


class GatedInteractiveAttention(nn.Module):
    """One direction A <- B of a GIA block (spec §3).

    ``H_{A->B} = MHA(H_A, H_B)``; ``G = sigmoid(W_g AvgPool_t(H_{A->B}) + b_g)``;
    ``out = G * H_{A->B} + (1 - G) * H_A``. Where B is absent for a sample, the output
    is ``H_A`` and the gate is 0: nothing crosses over.
    """

    def __init__(self, *, dim: int, heads: int, dropout: float, pool_kernel: int) -> None:
        super().__init__()
        self.attn = MaskedAttention(dim=dim, heads=heads, dropout=dropout)
        self.gate = nn.Linear(dim, dim)
        self.pool_kernel = pool_kernel

    def forward(self, h_a: torch.Tensor, mask_a: torch.Tensor, h_b: torch.Tensor,
                mask_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (H_A^(B) (B, L_A, D), gate G_{A,B} (B, L_A, D))."""
        cross = self.attn(h_a, h_b, mask_b)  # (B, L_A, D)
        pooled = masked_window_mean(cross, mask_a, self.pool_kernel)  # (B, L_A, D)
        gate = torch.sigmoid(self.gate(pooled))  # (B, L_A, D)
        gate = gate * mask_b.any(dim=1).to(gate.dtype)[:, None, None]  # absent B: gate 0
        return gate * cross + (1.0 - gate) * h_a, gate


class ModalityInvariantGenerator(nn.Module):
    """One MIG block (spec §4): shared query over all tokens, conv mask, strided refinement."""

    def __init__(self, *, dim: int, heads: int, dropout: float, kernel: int, stride: int) -> None:
        super().__init__()
        self.attn = MaskedAttention(dim=dim, heads=heads, dropout=dropout)
        self.mask_conv = nn.Conv1d(2 * dim, dim, kernel_size=1)
        self.strided_conv = nn.Conv1d(dim, dim, kernel_size=kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)
        self.kernel = kernel
        self.stride = stride

    def forward(self, h_vst: torch.Tensor, mask_vst: torch.Tensor, h_msr: torch.Tensor,
                mask_msr: torch.Tensor) -> torch.Tensor:
        """Returns H_M^MIR ``(B, ceil(L_VST / stride), D)`` for ``h_vst`` (B, L_VST, D)."""
        share = self.attn(h_vst, h_msr, mask_msr)  # (B, L_VST, D)
        both = rearrange(torch.cat([share, h_vst], dim=-1), "b l c -> b c l")  # (B, 2D, L_VST)
        h_b = share * torch.sigmoid(rearrange(self.mask_conv(both), "b d l -> b l d"))  # (B, L_VST, D)
        h_b = h_b * mask_vst.unsqueeze(-1).to(h_b.dtype)  # padding contributes nothing
        conv = rearrange(self.strided_conv(rearrange(h_b, "b l d -> b d l")), "b d l -> b l d")  # (B, L', D)
        residual = masked_window_mean(h_b, mask_vst, self.kernel, self.stride)  # (B, L', D)
        return self.norm(conv + residual)


def downsample_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Mask of a stride-``stride`` "same" sequence: position j is valid where token ``j*stride`` is."""
    return mask[:, ::stride]


def symmetric_kl(p_tokens: torch.Tensor, q_tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``D_SKL`` of spec §5: mean over valid tokens of KL(p||q) + KL(q||p), softmax over D.

    Args:
        p_tokens: ``(B, L, D)``.
        q_tokens: ``(B, L, D)``.
        mask: ``(B, L)`` bool; tokens (and whole samples) to average over.

    Returns:
        A scalar; 0 when no token is valid.
    """
    log_p = F.log_softmax(p_tokens.float(), dim=-1)
    log_q = F.log_softmax(q_tokens.float(), dim=-1)
    skl = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1)  # (B, L): KL(p||q)+KL(q||p)
    weights = mask.to(skl.dtype)
    return (skl * weights).sum() / weights.sum().clamp(min=1.0)
