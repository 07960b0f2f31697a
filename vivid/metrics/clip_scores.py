"""TA and TC with a CLIP model from transformers (hub id or local folder).

- TA, text alignment: 100 x cosine(CLIP image embedding of the edit region's bounding-box crop, CLIP text
  embedding of the caption), averaged over the frames whose mask is not empty.
- TC, temporal consistency: 100 x the mean cosine of consecutive frames' CLIP image embeddings.

Images are preprocessed here (crop padded to a square with the normalisation mean, resized with antialiasing,
normalised with the model's mean/std) so that no torchvision-backed image processor is needed.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from vivid.constants import DEFAULT_CLIP
from vivid.metrics._checks import check_frames, check_mask
from vivid.metrics.boundary import consecutive_tc

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right), exclusive ends, of the True pixels of a (H, W) mask; None if empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _features(output) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; older versions a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def tc_of_features(features: np.ndarray) -> float:
    """TC of per-frame features (F, D): the mean of `consecutive_tc` (100 x cosine of consecutive frames); NaN
    below 2 frames."""
    if len(features) < 2:
        return float("nan")
    return float(consecutive_tc(features).mean())


class CLIPScorer:
    """CLIP image/text embeddings and the TA/TC scores built on them.

    `model` is a hub id, a local folder, or a loaded `CLIPModel` (then give `tokenizer` too).
    """

    def __init__(
        self,
        model=DEFAULT_CLIP,
        tokenizer=None,
        device: str | torch.device = "cpu",
        image_mean: tuple[float, float, float] | None = None,
        image_std: tuple[float, float, float] | None = None,
        batch_size: int = 32,
    ):
        from transformers import AutoTokenizer, CLIPModel

        self.name = str(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "name_or_path", "") or "CLIPModel"
        if isinstance(model, (str, os.PathLike)):
            name = str(model)
            try:
                loaded = CLIPModel.from_pretrained(name)
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(name)
            except OSError as err:
                raise OSError(f"cannot load the CLIP model {name!r} (hub id or local folder): {err}") from err
            if image_mean is None:
                image_mean, image_std = _processor_stats(name)
            model = loaded
        if tokenizer is None:
            raise ValueError("a loaded CLIPModel needs its tokenizer")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.image_size = int(model.config.vision_config.image_size)
        self.max_text_length = int(model.config.text_config.max_position_embeddings)
        self.mean = torch.tensor(image_mean or OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(image_std or OPENAI_CLIP_STD).view(1, 3, 1, 1)

    # ------------------------------------------------------------ embeddings
    def _pixel_values(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) normalised; padded to a square with the mean (0 after normalising)."""
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        h, w = x.shape[-2:]
        scale = self.image_size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        x = (x - self.mean) / self.std
        out = torch.zeros(1, 3, self.image_size, self.image_size)
        top, left = (self.image_size - nh) // 2, (self.image_size - nw) // 2
        out[..., top : top + nh, left : left + nw] = x
        return out[0]

    @torch.no_grad()
    def image_embeddings(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Unit-norm embeddings (N, D) of uint8 RGB images of any sizes."""
        embs = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self._pixel_values(im) for im in images[start : start + self.batch_size]])
            feats = _features(self.model.get_image_features(pixel_values=batch.to(self.device)))
            embs.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(embs)

    @torch.no_grad()
    def text_embedding(self, text: str) -> torch.Tensor:
        tokens = self.tokenizer(
            [text], padding="max_length", truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        feats = _features(
            self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )
        )
        return F.normalize(feats.float(), dim=-1)[0].cpu()

    # ------------------------------------------------------------ scores
    def text_alignment(self, frames: np.ndarray, mask: np.ndarray, caption: str) -> float:
        """TA: mean over frames of 100 x cos(crop of the mask's bounding box, caption)."""
        frames = check_frames(frames)
        mask = check_mask(mask, frames)
        crops = []
        for frame, m in zip(frames, mask):
            box = mask_bbox(m)
            if box is not None:
                top, left, bottom, right = box
                crops.append(frame[top:bottom, left:right])
        if not crops:
            raise ValueError("the mask is empty in every frame: no edit region to score")
        image = self.image_embeddings(crops)
        text = self.text_embedding(caption)
        return float(100.0 * (image @ text).mean())

    def image_features(self, frames: np.ndarray) -> np.ndarray:
        """Unit-norm CLIP embeddings (F, D) float32 of whole frames (F, H, W, 3) uint8: the per-frame features of
        TC and of the boundary metric (`vivid.metrics.boundary.boundary_tc`)."""
        frames = check_frames(frames)
        return self.image_embeddings(list(frames)).numpy()

    def temporal_consistency(self, frames: np.ndarray) -> float:
        """TC: 100 x mean cosine of consecutive frames' embeddings; NaN for a single frame (an image)."""
        frames = check_frames(frames)
        if frames.shape[0] < 2:
            return float("nan")
        return tc_of_features(self.image_features(frames))


def _processor_stats(name: str) -> tuple[tuple, tuple]:
    """The checkpoint's normalisation mean/std from its preprocessor config (OpenAI's if it has none)."""
    import json

    from huggingface_hub import hf_hub_download

    try:
        path = os.path.join(name, "preprocessor_config.json") if os.path.isdir(name) else hf_hub_download(
            name, "preprocessor_config.json"
        )
        with open(path) as f:
            cfg = json.load(f)
        return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
    except (OSError, KeyError, ValueError):
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
