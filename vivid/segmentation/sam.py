"""Text-prompted video segmentation of a clip held in memory into tracked instance masks (the data build's
entities-and-masks stage).

- `Sam3Segmenter` (default): SAM 3's video model (`Sam3VideoModel`) takes the concept prompts, detects every
  matching instance on every frame and tracks them; each track is an entity.
- `GroundingSam2Segmenter` (VIVID's and VPData's recipe): Grounding DINO finds boxes for the prompts on the clip's
  keyframe, SAM 2 (`Sam2VideoModel`) segments each box and propagates it forward and backward through the clip.

Both return `Entity` masks at the clip's size, one per tracked object, the highest-scoring `max_entities` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .loading import load, load_model, pixel_values, preprocessing_config


@dataclass
class Entity:
    mask: np.ndarray  # bool (F, H, W)
    label: str  # the prompt that found it
    score: float


def _upsample(low_res: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Mask logits (N, h, w) -> bool (N, H, W), bilinear then > 0 (what the SAM processors do)."""
    masks = F.interpolate(low_res.float()[:, None], size=(height, width), mode="bilinear", align_corners=False)
    return (masks[:, 0] > 0).cpu().numpy()


class Sam3Segmenter:
    """Concept prompts in, tracked instance masks out (`Sam3VideoModel.propagate_in_video_iterator`)."""

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype, max_entities: int):
        """`name`: the model's hub id or folder."""
        from transformers import AutoTokenizer, Sam3VideoModel

        self.model = load_model("sam3", name, Sam3VideoModel, device, dtype)
        self.tokenizer = load("sam3", name, AutoTokenizer.from_pretrained)
        self.prep = preprocessing_config("sam3", name)
        self.device, self.dtype = device, dtype
        self.max_entities = max_entities

    def __call__(self, frames: np.ndarray, prompts: list[str], keyframe: int) -> list[Entity]:
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # SAM 3 logs a warning on every frame once max_num_objects is reached
        try:
            return self._segment(frames, prompts)
        finally:
            hf_logging.set_verbosity(level)

    @torch.inference_mode()
    def _segment(self, frames: np.ndarray, prompts: list[str]) -> list[Entity]:
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        n, h, w = frames.shape[:3]
        session = Sam3VideoInferenceSession(
            video=pixel_values(frames, self.prep, self.device, self.dtype), video_height=h, video_width=w,
            inference_device=self.device, inference_state_device=self.device, video_storage_device=self.device,
            dtype=self.dtype,
        )
        for text in prompts:  # what Sam3VideoProcessor.add_text_prompt does
            pid = session.add_prompt(text)
            if pid not in session.prompt_input_ids:
                enc = self.tokenizer(text, return_tensors="pt", padding="max_length", max_length=32).to(self.device)
                session.prompt_input_ids[pid] = enc.input_ids
                session.prompt_attention_masks[pid] = enc.attention_mask
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, float] = {}
        for out in self.model.propagate_in_video_iterator(session, start_frame_idx=0, max_frame_num_to_track=n):
            hidden = set(out.suppressed_obj_ids or ()) | set(session.hotstart_removed_obj_ids)
            ids = [i for i in sorted(out.obj_id_to_mask) if i not in hidden]
            if not ids:
                continue
            frame_masks = _upsample(torch.cat([out.obj_id_to_mask[i] for i in ids]), h, w)
            for i, m in zip(ids, frame_masks):
                masks.setdefault(i, np.zeros((n, h, w), bool))[out.frame_idx] = m
                scores[i] = max(scores.get(i, 0.0), float(out.obj_id_to_score.get(i, 0.0)))
        entities = [
            Entity(masks[i], session.prompts[session.obj_id_to_prompt_id[i]], scores[i])
            for i in masks if i not in session.hotstart_removed_obj_ids and masks[i].any()
        ]
        return sorted(entities, key=lambda e: -e.score)[: self.max_entities]


class GroundingSam2Segmenter:
    """Grounding DINO boxes on the keyframe, SAM 2 propagation through the clip (box prompts)."""

    def __init__(self, gd_name: str, sam_name: str, device: torch.device, dtype: torch.dtype, max_entities: int,
                 box_threshold: float, text_threshold: float):
        """`gd_name`, `sam_name`: Grounding DINO's and SAM 2's hub ids or folders."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor, Sam2VideoModel

        self.detector = load_model("grounding_dino", gd_name, AutoModelForZeroShotObjectDetection, device,
                                   torch.float32)  # its deformable attention runs in float32
        self.detector_processor = load("grounding_dino", gd_name, AutoProcessor.from_pretrained)
        self.sam = load_model("sam2", sam_name, Sam2VideoModel, device, dtype)
        self.prep = preprocessing_config("sam2", sam_name)
        self.device, self.dtype = device, dtype
        self.box_threshold, self.text_threshold = box_threshold, text_threshold
        self.max_entities = max_entities

    @torch.inference_mode()
    def boxes(self, frame: np.ndarray, prompts: list[str]) -> list[tuple[list[float], str, float]]:
        """(xyxy box in pixels, label, score) for the prompts on one frame, best first."""
        text = " ".join(p.strip().lower().rstrip(".") + "." for p in prompts)
        inputs = self.detector_processor(images=frame, text=text, return_tensors="pt").to(self.device)
        outputs = self.detector(**inputs)
        result = self.detector_processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
            target_sizes=[frame.shape[:2]],
        )[0]
        labels = result["text_labels"] if "text_labels" in result else result["labels"]
        found = [(b.tolist(), str(lab), float(s)) for b, lab, s in zip(result["boxes"], labels, result["scores"])]
        return sorted(found, key=lambda x: -x[2])

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, prompts: list[str], keyframe: int) -> list[Entity]:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        n, h, w = frames.shape[:3]
        found = self.boxes(frames[keyframe], prompts)[: self.max_entities]
        if not found:
            return []
        video = pixel_values(frames, self.prep, self.device, self.dtype)
        session = Sam2VideoInferenceSession(
            video=video, video_height=h, video_width=w, inference_device=self.device,
            inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype,
        )
        side_h, side_w = video.shape[-2:]
        for obj_id, (box, _, _) in enumerate(found):  # what Sam2VideoProcessor does with input_boxes
            coords = torch.tensor(box, dtype=torch.float32).reshape(1, 1, 2, 2)
            coords[..., 0] *= side_w / w
            coords[..., 1] *= side_h / h
            labels = torch.tensor([[[2, 3]]], dtype=torch.int32)  # the box's two corners
            session.add_point_inputs(session.obj_id_to_idx(obj_id), keyframe,
                                     {"point_coords": coords.to(self.device), "point_labels": labels.to(self.device)})
        session.obj_with_new_inputs = list(range(len(found)))
        self.sam(inference_session=session, frame_idx=keyframe)
        masks = np.zeros((len(found), n, h, w), bool)
        for reverse in (False, True):
            for out in self.sam.propagate_in_video_iterator(session, start_frame_idx=keyframe, reverse=reverse):
                masks[:, out.frame_idx] = _upsample(out.pred_masks[:, 0], h, w)
        return [Entity(m, label, score) for m, (_, label, score) in zip(masks, found) if m.any()]
