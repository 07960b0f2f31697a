"""The weights-free segmenter: OpenCV GrabCut from the box or clicks on the prompt frame, carried through the video
by tracking, with a GrabCut re-fit on every frame.

Each step: the last mask's box is found in the new frame by template matching (the coarse move), then corners found
inside the last mask are followed from there by pyramidal Lucas-Kanade optical flow (kept where the flow back leads
to where they started); a similarity transform fitted to them (RANSAC) moves the last mask; GrabCut then re-fits it
to the new frame's colours within a band around the moved mask (the moved mask's core is sure object, outside the
band sure background). A re-fit whose area jumps far from the moved mask's is not trusted: the moved mask is kept.
Work is done on a crop around the object, so the cost follows the object's size, not the frame's.
"""

from __future__ import annotations

import cv2
import numpy as np

from .prompts import Prompt

FIT_ITERATIONS = 4  # GrabCut iterations on the prompt frame
REFIT_ITERATIONS = 2  # ... on every later frame
MAX_AREA_CHANGE = 2.0  # a re-fit more than this many times larger or smaller than the moved mask is rejected


def _crop(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, margin: int) -> tuple[slice, slice]:
    h, w = shape
    return (slice(max(0, int(rows.min()) - margin), min(h, int(rows.max()) + 1 + margin)),
            slice(max(0, int(cols.min()) - margin), min(w, int(cols.max()) + 1 + margin)))


def _grabcut(image: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray:
    """GrabCut on `image` from a label map (cv2.GC_*), bool foreground; all-background labels give no mask."""
    if not ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).any() or not (
            (labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD)).any():
        return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    labels = labels.copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(image), labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def _largest_parts(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` touching `seeds` (else its largest part), holes filled."""
    count, comp = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    keep = np.unique(comp[seeds & mask])
    keep = keep[keep > 0]
    if keep.size == 0:
        sizes = np.bincount(comp.ravel())[1:]
        keep = np.array([1 + int(np.argmax(sizes))])
    out = np.isin(comp, keep).astype(np.uint8)
    contours, _ = cv2.findContours(out, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.view(bool)


def segment_prompt_frame(frame: np.ndarray, prompt: Prompt) -> np.ndarray:
    """bool (H, W): GrabCut from the prompt's box (outside it sure background) and clicks (discs of sure object
    or sure background); with clicks only, a square around them is probable object."""
    h, w = frame.shape[:2]
    radius = max(2, round(0.01 * min(h, w)))
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    if prompt.boxes:
        for x0, y0, x1, y1 in prompt.boxes:
            labels[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = cv2.GC_PR_FGD
    else:
        pts = np.array(prompt.points)
        reach = round(0.15 * min(h, w))
        (x0, y0), (x1, y1) = pts.min(0) - reach, pts.max(0) + reach
        labels[max(0, int(y0)) : int(y1) + 1, max(0, int(x0)) : int(x1) + 1] = cv2.GC_PR_FGD
    for x, y in prompt.points:
        cv2.circle(labels, (int(x), int(y)), radius, cv2.GC_FGD, -1)
    for x, y in prompt.negatives:
        cv2.circle(labels, (int(x), int(y)), radius, cv2.GC_BGD, -1)
    rows, cols = np.nonzero(labels != cv2.GC_BGD)
    ys, xs = _crop((h, w), rows, cols, margin=max(8, round(0.1 * min(h, w))))
    out = np.zeros((h, w), bool)
    out[ys, xs] = _grabcut(frame[ys, xs], labels[ys, xs], FIT_ITERATIONS)
    seeds = np.zeros((h, w), bool)
    for x, y in prompt.points:
        seeds[int(y), int(x)] = True
    return _largest_parts(out, seeds if seeds.any() else out)


def template_shift(prev_gray: np.ndarray, gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(dx, dy): where the last mask's bounding box of `prev_gray` best matches `gray` (normalised correlation)
    within a box's size around it: a coarse motion that small-scale texture cannot alias."""
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    h, w = gray.shape
    reach_y, reach_x = y1 - y0, x1 - x0
    sy0, sy1 = max(0, y0 - reach_y), min(h, y1 + reach_y)
    sx0, sx1 = max(0, x0 - reach_x), min(w, x1 + reach_x)
    template = prev_gray[y0:y1, x0:x1]
    if template.std() < 1e-3:
        return np.zeros(2, np.float32)
    score = cv2.matchTemplate(gray[sy0:sy1, sx0:sx1], template, cv2.TM_CCOEFF_NORMED)
    _, _, _, (bx, by) = cv2.minMaxLoc(score)
    return np.array([sx0 + bx - x0, sy0 + by - y0], np.float32)


def move_mask(prev_gray: np.ndarray, gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`mask` carried from `prev_gray` to `gray` by a similarity transform fitted (RANSAC) to the optical flow of
    corners inside it (started from `template_shift`), away from its edge (where the background shows); corners
    whose flow does not lead back to where they started (forward-backward error over a pixel) are dropped.
    Unmoved when too few corners follow."""
    u8 = mask.view(np.uint8)
    size = max(1.0, float(np.sqrt(mask.sum())))
    edge = max(1, round(0.08 * size))
    inner = cv2.erode(u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * edge + 1, 2 * edge + 1)))
    corners = cv2.goodFeaturesToTrack(prev_gray, maxCorners=300, qualityLevel=0.005, minDistance=3,
                                      mask=inner if inner.any() else u8)
    if corners is None or len(corners) < 4:
        return mask
    # LK refines the coarse shift over a small pyramid: a deep one would blur small texture away and wander
    lk = dict(winSize=(15, 15), maxLevel=1, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    guess = corners + template_shift(prev_gray, gray, mask)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, corners, guess, **lk)
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(gray, prev_gray, moved, corners.copy(), **lk)
    good = (status.ravel() == 1) & (status_back.ravel() == 1) & (np.linalg.norm(back - corners, axis=-1).ravel() < 1.0)
    if good.sum() < 4:
        return mask
    matrix, _ = cv2.estimateAffinePartial2D(corners[good], moved[good], method=cv2.RANSAC, ransacReprojThreshold=2.0)
    if matrix is None:
        return mask
    h, w = mask.shape
    return cv2.warpAffine(u8, matrix, (w, h), flags=cv2.INTER_NEAREST).view(bool)


def refit(frame: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """GrabCut around `moved`: its core is sure object, a band around it is open, beyond is sure background."""
    area = int(moved.sum())
    if area == 0:
        return moved
    size = max(1.0, float(np.sqrt(area)))
    band, core = max(3, round(0.15 * size)), max(1, round(0.15 * size))
    u8 = moved.view(np.uint8)
    grown = cv2.dilate(u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))).view(bool)
    inner = cv2.erode(u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * core + 1, 2 * core + 1))).view(bool)
    labels = np.full(moved.shape, cv2.GC_BGD, np.uint8)
    labels[grown] = cv2.GC_PR_BGD
    labels[moved] = cv2.GC_PR_FGD
    labels[inner] = cv2.GC_FGD
    rows, cols = np.nonzero(grown)
    ys, xs = _crop(moved.shape, rows, cols, margin=band)
    out = np.zeros_like(moved)
    out[ys, xs] = _grabcut(frame[ys, xs], labels[ys, xs], REFIT_ITERATIONS)
    out = _largest_parts(out, inner)
    if not 1 / MAX_AREA_CHANGE <= out.sum() / area <= MAX_AREA_CHANGE:
        return moved
    return out


class ClassicTracker:
    """One object from a box or clicks on the prompt frame, tracked both ways without model weights."""

    bidirectional = True

    def __init__(self) -> None:
        self.scores: dict[int, float] = {0: 1.0}
        self._start: tuple[np.ndarray, np.ndarray] | None = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def begin(self, frame: np.ndarray, prompt: Prompt) -> dict[int, np.ndarray]:
        cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's global generator: the same prompt, the same mask
        mask = segment_prompt_frame(frame, prompt)
        self._start = self._last = (cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), mask)
        return {0: mask}

    def step(self, frame: np.ndarray, index: int, reverse: bool) -> dict[int, np.ndarray]:
        prev_gray, prev_mask = self._last
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        mask = refit(frame, move_mask(prev_gray, gray, prev_mask))
        self._last = (gray, mask)
        return {0: mask}

    def rewind(self) -> None:
        self._last = self._start
