"""FLOPs formulas every base shares (one multiply-add = 2 FLOPs, matrix products and convolutions only; see
vivid/flops.py): the clip-size check, a convolution, a T5-style text encoder (T5, UMT5)."""

from __future__ import annotations



def check_clip_size(frames: int, height: int, width: int, patch: int, temporal: int, spatial: int) -> None:
    """ValueError unless `frames` is temporal * k + 1 (4k+1) and height, width are positive multiples of
    spatial x `patch` (the VAE's compression times the patch size)."""
    if frames < 1 or (frames - 1) % temporal:
        raise ValueError(f"frames must be {temporal}k+1 (1, {temporal + 1}, ..., 49), got {frames}")
    step = spatial * patch
    if height < step or width < step or height % step or width % step:
        raise ValueError(f"height and width must be positive multiples of {step}, got {height}x{width}")


def conv_flops(c_in: int, c_out: int, kernel_volume: int, positions: int) -> int:
    return 2 * c_in * c_out * kernel_volume * positions


def t5_flops(t5: dict, tokens: int, gated: bool, batch: int = 1) -> float:
    """A T5-style encoder (T5, UMT5) forward over `tokens` tokens (both bases pad every prompt to their length)."""
    d, inner = t5["d_model"], t5["num_heads"] * t5["d_kv"]
    ff_mats = 3 if gated else 2
    per_layer = 2 * tokens * d * inner * 4 + 2 * 2 * tokens * tokens * inner + ff_mats * 2 * tokens * d * t5["d_ff"]
    return float(per_layer * t5["num_layers"] * batch)
