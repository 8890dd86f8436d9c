"""int8 storage of large weight matrices: symmetric, one float scale per row.

Only embedding tables are quantised (at least ``QUANTIZE_MIN_ELEMENTS`` and one row per token, at
least ``QUANTIZE_MIN_ROWS``): a row is looked up, not multiplied, so its scale error stays with its
token. On the embedded default, quantising every matrix saved another 15 MB but cost 2.9 UA
points; a speech encoder's large projections (Whisper base's 2048 x 512) stay float.
"""

from __future__ import annotations

import torch

SCALE_SUFFIX = ".__int8_row_scale__"
QUANTIZE_MIN_ELEMENTS = 1_000_000
QUANTIZE_MIN_ROWS = 10_000  # a vocabulary (MiniLM: 30,522 rows); no projection matrix has this many


def quantize_state(state: dict[str, torch.Tensor], scale_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Replaces each float 2-D embedding table (``QUANTIZE_MIN_ELEMENTS``, ``QUANTIZE_MIN_ROWS``) by int8 plus a row scale.

    Args:
        state: CPU tensors by name.
        scale_dtype: Storage dtype of the scales (default float32).

    Returns:
        A new dict: ``name`` (int8) and ``name + SCALE_SUFFIX`` (per-row absmax / 127) for the
        quantised tensors, the others unchanged.
    """
    out = {}
    for k, v in state.items():
        if (v.is_floating_point() and v.ndim == 2 and v.numel() >= QUANTIZE_MIN_ELEMENTS
                and v.shape[0] >= QUANTIZE_MIN_ROWS):
            scale = v.float().abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (rows,)
            out[k] = torch.round(v.float() / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            out[k + SCALE_SUFFIX] = scale.to(scale_dtype or torch.float32).contiguous()
        else:
            out[k] = v
    return out


def dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turns int8 + row-scale pairs written by ``save_weights(quantize="int8")`` back into floats.

    Raises:
        ValueError: a scale that does not belong to a 2-D int8 tensor with one scale per row.
    """
    out = {}
    for k, v in state.items():
        if k.endswith(SCALE_SUFFIX):
            if k[: -len(SCALE_SUFFIX)] not in state:
                raise ValueError(f"scale {k} has no int8 tensor")
            continue
        scale = state.get(k + SCALE_SUFFIX)
        if scale is not None and (v.dtype != torch.int8 or v.ndim != 2 or tuple(scale.shape) != (v.shape[0],)):
            raise ValueError(f"the int8 scale of {k} has shape {tuple(scale.shape)}; expected ({v.shape[0]},) "
                             f"for an int8 {tuple(v.shape)} tensor")
        out[k] = v.float() * scale.float()[:, None] if scale is not None else v
    return out
