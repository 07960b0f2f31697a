"""Captions stage: three local captions per entity, short to long, from a VLM shown the entity's crop.

The captioner is any image-text-to-text model with a chat template (Qwen2.5-VL, Qwen3-VL) loaded with
`AutoModelForImageTextToText`. The message is assembled as their processors do it (chat template with one image
placeholder, the placeholder repeated once per merged image patch), from the tokenizer and the image processor
alone, which need no torchvision. Deletion records get the fixed `vivid.constants.DELETE_CAPTION` at training
time and no captions here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from vivid.segmentation.loading import load, load_model

from .config import BuildConfig
from .models import model_path

IMAGE_PAD = "<|image_pad|>"


def entity_crop(frame: np.ndarray, mask: np.ndarray, margin: float, min_side: int = 16) -> np.ndarray:
    """The mask's bounding box on `frame`, grown by `margin` of its size on each side (at least `min_side`
    pixels a side where the frame allows)."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return frame
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy = max(int((bottom - top) * margin), (min_side - (bottom - top) + 1) // 2, 0)
    dx = max(int((right - left) * margin), (min_side - (right - left) + 1) // 2, 0)
    return frame[max(0, top - dy) : min(h, bottom + dy), max(0, left - dx) : min(w, right + dx)]


def clean_caption(text: str, max_chars: int) -> str:
    """One caption from a model's answer: its first line, printable characters only, no quotes or final
    full stop, whitespace collapsed, at most `max_chars` characters."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = "".join(ch for ch in line if ch.isprintable() and ch != "\ufffd")
    line = re.sub(r"\s+", " ", line).strip().strip("\"'`").rstrip(".").strip()
    return line[:max_chars].strip()


def parse_object_list(text: str, limit: int) -> list[str]:
    """Nouns from a comma / line separated answer, de-duplicated, at most `limit`."""
    items = [clean_caption(part, 40).lower() for part in re.split(r"[,;\n]", text)]
    out = [i for i in dict.fromkeys(items) if i and len(i.split()) <= 4]
    return out[:limit]


class Captioner:
    def __init__(self, config: BuildConfig, device: torch.device, dtype: torch.dtype, tiny_root: Path):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        name = model_path(config.models, "captioner", tiny_root)
        self.model = load_model("captioner", name, AutoModelForImageTextToText, device, dtype)
        self.tokenizer = load("captioner", name, AutoTokenizer.from_pretrained)
        self.image_processor = load("captioner", name, AutoImageProcessor.from_pretrained)
        self.chat_template = self.tokenizer.chat_template or _processor_chat_template(name)
        if not self.chat_template:
            raise ValueError(f"models.captioner: {name!r} has no chat template")
        self.config = config.captions
        self.device, self.dtype = device, dtype

    @torch.inference_mode()
    def ask(self, image: np.ndarray, question: str, max_new_tokens: int) -> str:
        """The model's greedy answer to `question` about `image` (uint8 (H, W, 3))."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template,
                                                  add_generation_prompt=True, tokenize=False)
        vision = self.image_processor(images=[image], return_tensors="pt")
        merge = int(getattr(self.image_processor, "merge_size", 1) or 1)
        patches = int(vision["image_grid_thw"][0].prod()) // (merge * merge)
        text = text.replace(IMAGE_PAD, IMAGE_PAD * patches, 1)
        inputs = self.tokenizer([text], return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = vision["pixel_values"].to(self.device, self.dtype)
        inputs["image_grid_thw"] = vision["image_grid_thw"].to(self.device)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def captions(self, crop: np.ndarray) -> list[str]:
        """Up to three captions of the entity crop, short to long (empty answers left out)."""
        c = self.config
        out = [clean_caption(self.ask(crop, q, n), c.max_chars) for q, n in zip(c.prompts, c.max_new_tokens)]
        return list(dict.fromkeys(x for x in out if x))

    def objects(self, frame: np.ndarray, limit: int) -> list[str]:
        """Concept prompts for the segmenter: the objects the VLM lists on a frame."""
        return parse_object_list(self.ask(frame, self.config.objects_prompt, 48), limit)


def _processor_chat_template(name: str) -> str | None:
    """A chat template saved beside the processor (chat_template.jinja or the older chat_template.json)."""
    import json

    from transformers.utils import cached_file

    for filename in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(name, filename, _raise_exceptions_for_missing_entries=False)
        if path:
            text = Path(path).read_text(encoding="utf-8")
            return json.loads(text)["chat_template"] if filename.endswith(".json") else text
    return None
