"""Deletion synthesis (VIVID §3): a mask sequence taken from another sample is pasted onto background.

The target is the source video itself; the model learns to fill the erased region with the background that is
really there. The pasted region overlaps none of the sample's known entity masks (its own mask and
`entity_masks`) in any frame. Two ways to move it over time:
- "copy": the donor's mask sequence, translated; the pasted "object" keeps its own trajectory;
- "flow": the donor's largest frame is pasted at frame 0 and carried along with the background's dense optical
  flow (OpenCV Farneback by default, RAFT where torchvision and its weights exist), so it sticks to the scene.
Flow is computed on frames downscaled to `max_side`; frame-t coordinates are composed back to frame 0 and the
keyframe mask is sampled once per frame (no repeated resampling, so no drift from rounding).
"""

from __future__ import annotations

import cv2
import numpy as np

from vivid.segmentation.shaping import dilate

from .errors import BadSample

_PLACEMENT_TRIES = 40
_SCALES = (1.0, 0.7, 0.5, 0.35)


def _gray_small(frames: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = frames.shape[1:3]
    scale = min(1.0, max_side / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    out = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA) for f in frames])
    return out, scale


def farneback_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Dense flow (h, w, 2) such that prev[y, x] ~ nxt[y + fy, x + fx] (grey uint8 frames)."""
    return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def raft_available() -> bool:
    """torchvision's RAFT (small) and its weights in the torch hub cache (no download is attempted)."""
    try:
        import os

        import torch
        from torchvision.models.optical_flow import Raft_Small_Weights
    except Exception:
        return False
    url = Raft_Small_Weights.DEFAULT.url
    return os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url)))


def raft_flow_pairs(prevs: np.ndarray, nexts: np.ndarray) -> np.ndarray:
    """RAFT-small flows (N, h, w, 2) for grey frame pairs, same convention as `farneback_flow`."""
    import torch
    import torch.nn.functional as F
    from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

    if not raft_available():
        raise RuntimeError("flow='raft' needs torchvision and its RAFT-small weights in the torch hub cache")
    model = raft_small(weights=Raft_Small_Weights.DEFAULT).eval()
    h, w = prevs.shape[1:3]
    h8, w8 = max(128, (h + 7) // 8 * 8), max(128, (w + 7) // 8 * 8)

    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).float().div(127.5).sub(1.0)[:, None].expand(-1, 3, -1, -1)
        return F.interpolate(t, size=(h8, w8), mode="bilinear", align_corners=False)

    with torch.no_grad():
        flow = model(prep(prevs), prep(nexts))[-1]
    flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    flow[:, 0] *= w / w8
    flow[:, 1] *= h / h8
    return flow.permute(0, 2, 3, 1).numpy()


def backward_maps(frames: np.ndarray, method: str = "farneback", max_side: int = 256) -> tuple[np.ndarray, float]:
    """For every frame t, where each of its (downscaled) pixels was in frame 0: float32 (F, h, w, 2) as (x, y)."""
    gray, scale = _gray_small(frames, max_side)
    n, h, w = gray.shape
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    maps = np.empty((n, h, w, 2), np.float32)
    maps[0] = grid
    if n == 1:
        return maps, scale
    if method == "raft":
        flows = raft_flow_pairs(gray[1:], gray[:-1])
    else:
        flows = [farneback_flow(gray[t], gray[t - 1]) for t in range(1, n)]
    for t in range(1, n):
        where = grid + flows[t - 1]  # pixel of frame t -> its position in frame t-1
        maps[t] = cv2.remap(maps[t - 1], where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return maps, scale


def warp_keyframe_mask(key: np.ndarray, maps: np.ndarray, scale: float, small: bool = False) -> np.ndarray:
    """Carry a frame-0 mask (H, W) through the frames: bool (F, H, W), or at the maps' size when `small`."""
    n, h, w = maps.shape[:3]
    H, W = key.shape
    src = key.astype(np.uint8)
    if small:
        src = cv2.resize(src, (w, h), interpolation=cv2.INTER_NEAREST)
        out = np.empty((n, h, w), bool)
    else:
        out = np.empty((n, H, W), bool)
    for t in range(n):
        m = maps[t]
        if not small:
            m = cv2.resize(m, (W, H), interpolation=cv2.INTER_LINEAR)
            m = (m + 0.5) / scale - 0.5  # small-frame coordinates -> full-frame coordinates
        out[t] = cv2.remap(src, m[..., 0], m[..., 1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0).view(bool)
    return out


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate (F, H, W) by (dy, dx), filling with False."""
    out = np.zeros_like(mask)
    h, w = mask.shape[1:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, yd, xd] = mask[:, ys, xs]
    return out


def _rescale(mask: np.ndarray, s: float) -> np.ndarray:
    if s == 1.0:
        return mask
    h, w = mask.shape[1:]
    out = np.zeros_like(mask)
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    for i, f in enumerate(mask.view(np.uint8)):
        out[i, :sh, :sw] = cv2.resize(f, (sw, sh), interpolation=cv2.INTER_NEAREST).view(bool)
    return out


def _placements(mask_union: np.ndarray, rng: np.random.Generator, tries: int):
    """Random translations (dy, dx) that keep the union's bounding box inside the frame."""
    rows = np.flatnonzero(mask_union.any(axis=1))
    cols = np.flatnonzero(mask_union.any(axis=0))
    h, w = mask_union.shape
    for _ in range(tries):
        top = int(rng.integers(0, h - (rows[-1] - rows[0]))) if h > rows[-1] - rows[0] else 0
        left = int(rng.integers(0, w - (cols[-1] - cols[0]))) if w > cols[-1] - cols[0] else 0
        yield top - rows[0], left - cols[0]


def synthesize_deletion_mask(
    video: np.ndarray,
    known: np.ndarray,
    donor: np.ndarray,
    rng: np.random.Generator,
    mode: str = "copy",
    flow: str = "farneback",
    flow_max_side: int = 256,
    margin: int = 2,
) -> np.ndarray:
    """The deletion mask (F, H, W) for `video` (F, H, W, 3): `donor` (F, H, W) pasted where it overlaps no
    `known` entity (F, H, W) in any frame (kept `margin` pixels away), moved by "copy" or "flow"."""
    if not donor.any():
        raise BadSample("empty_mask", "donor mask for deletion synthesis is empty")
    forbidden = dilate(known, margin) if known.any() else known
    if mode == "flow" and len(video) > 1:
        maps, scale = backward_maps(video, flow, flow_max_side)
        small_forbidden = np.stack(
            [cv2.resize(f.view(np.uint8), maps.shape[2:0:-1], interpolation=cv2.INTER_NEAREST) for f in forbidden]
        ).view(bool)
        areas = donor.reshape(len(donor), -1).sum(1)
        key_frame = donor[int(areas.argmax())][None]
        for s in _SCALES:
            key = _rescale(key_frame, s)
            for dy, dx in _placements(key[0], rng, _PLACEMENT_TRIES):
                cand = _shift(key, dy, dx)[0]
                if (cand & forbidden[0]).any():
                    continue
                if (warp_keyframe_mask(cand, maps, scale, small=True) & small_forbidden).any():
                    continue
                out = warp_keyframe_mask(cand, maps, scale) & ~known
                if out[0].any():
                    return out
    else:
        for s in _SCALES:
            seq = _rescale(donor, s)
            union = seq.any(axis=0)
            for dy, dx in _placements(union, rng, _PLACEMENT_TRIES):
                cand = _shift(seq, dy, dx)
                if not (cand & forbidden).any() and cand.any():
                    return cand
    raise BadSample("no_background", "no placement of the donor mask avoids the sample's entities")
