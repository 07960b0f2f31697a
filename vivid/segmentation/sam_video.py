"""SAM 2 (clicks, boxes) and SAM 3 (words) as streamed frame trackers for `vivid mask`.

The video is never held whole: frames are given one at a time (transformers' streaming mode, `model(
inference_session=..., frame=..., frame_idx=...)`), and after each frame the session forgets what the model can
no longer read (`forget_far_frames`): the pixels of past frames, and per-frame outputs farther back than the
memory bank (`num_maskmem`) and the object-pointer window (`max_object_pointers_in_encoder`). Conditioning
frames (those with clicks) are kept. So memory stays flat in the video's length.

The calls are what transformers' processors do (`Sam2VideoProcessor.add_inputs_to_inference_session`,
`Sam3VideoProcessor.add_text_prompt`), with the frame preprocessing done by `loading.pixel_values` (no torchvision).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .loading import load, load_model, pixel_values, preprocessing_config
from .prompts import Prompt


def _upsample(low_res: torch.Tensor, height: int, width: int, via: tuple[int, int] | None = None) -> np.ndarray:
    """Mask logits (N, h, w) -> bool (N, H, W), bilinear then > 0: SAM 3's `postprocess_outputs`; with `via`, the
    model's input size, first to it and then to the frame's, as SAM 2's `post_process_masks` does."""
    masks = low_res.float()[:, None]
    if via is not None:
        masks = F.interpolate(masks, size=via, mode="bilinear", align_corners=False)
    masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
    return (masks[:, 0] > 0).cpu().numpy()


def memory_window(config: Any) -> int:
    """Frames behind the current one that the tracker still reads: its mask memory and its object pointers."""
    return max(int(getattr(config, "num_maskmem", 7)), int(getattr(config, "max_object_pointers_in_encoder", 16))) + 1


def forget_far_frames(session: Any, frame_idx: int, window: int, reverse: bool) -> None:
    """Drop the session's per-frame state more than `window` frames behind `frame_idx` (in the direction of travel),
    and every stored frame's pixels but the current one's. Conditioning outputs are kept."""

    def far(i: int) -> bool:
        return (i - frame_idx > window) if reverse else (frame_idx - i > window)

    frames = session.processed_frames or {}
    for i in [i for i in frames if i != frame_idx]:
        del frames[i]
    per_frame = [outputs["non_cond_frame_outputs"] for outputs in session.output_dict_per_obj.values()]
    per_frame += list(session.frames_tracked_per_obj.values())
    per_frame += list(getattr(session, "obj_id_to_tracker_score_frame_wise", {}).values())
    if hasattr(session, "suppressed_obj_ids"):
        per_frame.append(session.suppressed_obj_ids)
    for table in per_frame:
        for i in [i for i in table if far(i)]:
            del table[i]


class Sam2Tracker:
    """Objects from positive/negative clicks and boxes on the prompt frame (one per box), tracked both ways
    (`Sam2VideoModel`)."""

    bidirectional = True

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype):
        """`name`: the model's hub id or folder (facebook/sam2.1-hiera-large)."""
        from transformers import Sam2VideoModel

        self.model = load_model("sam2", name, Sam2VideoModel, device, dtype)
        self.prep = preprocessing_config("sam2", name)
        self.device, self.dtype = device, dtype
        self.window = memory_window(self.model.config)
        self.session = None
        self.scores: dict[int, float] = {0: 1.0}

    def _pixels(self, frame: np.ndarray) -> torch.Tensor:
        return pixel_values(frame[None], self.prep, self.device, self.dtype)[0]

    def _run(self, frame: np.ndarray, index: int, reverse: bool) -> dict[int, np.ndarray]:
        h, w = frame.shape[:2]
        pixels = self._pixels(frame)
        out = self.model(inference_session=self.session, frame=pixels, frame_idx=index, reverse=reverse)
        forget_far_frames(self.session, index, self.window, reverse)
        masks = _upsample(out.pred_masks[:, 0], h, w, via=tuple(pixels.shape[-2:]))
        return dict(zip(out.object_ids, masks))

    @torch.inference_mode()
    def begin(self, frame: np.ndarray, prompt: Prompt) -> dict[int, np.ndarray]:
        """The mask on the prompt frame; clicks as `Sam2VideoProcessor` passes them (labels 1 / 0, box corners 2, 3),
        in the model's input pixels."""
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        h, w = frame.shape[:2]
        self.session = Sam2VideoInferenceSession(
            video_height=h, video_width=w, inference_device=self.device, inference_state_device=self.device,
            video_storage_device=self.device, dtype=self.dtype,
        )
        clicks = [(x, y, 1) for x, y in prompt.points] + [(x, y, 0) for x, y in prompt.negatives]
        boxes = prompt.boxes or [None]  # one object per box (the clicks go with the first), or one of clicks
        side = self._pixels(frame).shape[-2:]
        for obj, box in enumerate(boxes):
            points = ([(box[0], box[1], 2), (box[2], box[3], 3)] if box else []) + (clicks if obj == 0 else [])
            coords = torch.tensor([[p[0] * side[1] / w, p[1] * side[0] / h] for p in points], dtype=torch.float32)
            labels = torch.tensor([p[2] for p in points], dtype=torch.int32)
            self.session.add_point_inputs(self.session.obj_id_to_idx(obj), prompt.frame,
                                          {"point_coords": coords[None, None], "point_labels": labels[None, None]})
        self.session.obj_with_new_inputs = list(range(len(boxes)))
        self.scores = dict.fromkeys(range(len(boxes)), 1.0)
        self.prompt_frame = prompt.frame
        return self._run(frame, prompt.frame, reverse=False)

    @torch.inference_mode()
    def step(self, frame: np.ndarray, index: int, reverse: bool) -> dict[int, np.ndarray]:
        return self._run(frame, index, reverse)

    def rewind(self) -> None:
        """Back to the prompt frame's state (its conditioning output only), to track the other way."""
        for outputs in self.session.output_dict_per_obj.values():
            outputs["non_cond_frame_outputs"].clear()
        for tracked in self.session.frames_tracked_per_obj.values():
            tracked.clear()


class Sam3Tracker:
    """Every instance of some words, detected on every frame and tracked (`Sam3VideoModel`), from frame 0 on."""

    bidirectional = False

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype):
        """`name`: the model's hub id or folder (facebook/sam3)."""
        from transformers import AutoTokenizer, Sam3VideoModel

        self.model = load_model("sam3", name, Sam3VideoModel, device, dtype)
        self.tokenizer = load("sam3", name, AutoTokenizer.from_pretrained)
        self.prep = preprocessing_config("sam3", name)
        self.device, self.dtype = device, dtype
        tracker_config = getattr(self.model.config, "tracker_config", self.model.config)
        self.window = memory_window(tracker_config)
        self.session = None
        self.scores: dict[int, float] = {}

    @torch.inference_mode()
    def begin(self, frame: np.ndarray, prompt: Prompt) -> dict[int, np.ndarray]:
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        h, w = frame.shape[:2]
        self.session = Sam3VideoInferenceSession(
            video_height=h, video_width=w, inference_device=self.device, inference_state_device=self.device,
            video_storage_device=self.device, dtype=self.dtype,
        )
        pid = self.session.add_prompt(prompt.text)  # what Sam3VideoProcessor.add_text_prompt does
        enc = self.tokenizer(prompt.text, return_tensors="pt", padding="max_length", max_length=32).to(self.device)
        self.session.prompt_input_ids[pid] = enc.input_ids
        self.session.prompt_attention_masks[pid] = enc.attention_mask
        return self.step(frame, 0, reverse=False)

    @torch.inference_mode()
    def step(self, frame: np.ndarray, index: int, reverse: bool) -> dict[int, np.ndarray]:
        from transformers.utils import logging as hf_logging

        h, w = frame.shape[:2]
        pixels = pixel_values(frame[None], self.prep, self.device, self.dtype)[0]
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # SAM 3 warns on every frame once max_num_objects is reached
        try:
            out = self.model(inference_session=self.session, frame=pixels, frame_idx=index)
        finally:
            hf_logging.set_verbosity(level)
        forget_far_frames(self.session, index, self.window, reverse=False)
        hidden = set(out.suppressed_obj_ids or ()) | set(out.removed_obj_ids or ())
        ids = [i for i in sorted(out.obj_id_to_mask) if i not in hidden]
        if not ids:
            return {}
        masks = _upsample(torch.cat([out.obj_id_to_mask[i] for i in ids]), h, w)
        for i in ids:
            self.scores[i] = max(self.scores.get(i, 0.0), float(out.obj_id_to_score.get(i, 0.0)))
        return dict(zip(ids, masks))

    def rewind(self) -> None:  # words are found on every frame, from frame 0: nothing to track backward
        raise NotImplementedError
