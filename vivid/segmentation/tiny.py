"""Seeded tiny random models of the segmentation `transformers` classes, written as ordinary model folders.

`vivid mask --model tiny`, `vivid data build --models tiny` (and the tests) load these by path through the same
`from_pretrained` code as the real hub models: Sam3VideoModel, GroundingDinoForObjectDetection and
Sam2VideoModel, with byte-level tokenizers and the preprocessing configs of the real processors (the build's
tiny captioner is `data_loaders.build.tiny_captioner`). Their weights are random, so their masks are noise: they
prove plumbing (shapes, files, manifests, resume, sharding), not quality. Sizes are the smallest the classes
accept (the SAM trackers need a hidden size that is a multiple of their 64-channel memory, and larger than it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

SAM3_SIZE = 56  # input side of the tiny SAM 3 (patch 14: a 4 x 4 token grid)
SAM2_SIZE = 64  # input side of the tiny SAM 2 (Hiera stride 4 then 2, 2, 2)
HIDDEN = 128  # tracker width: twice the 64-channel mask memory that the SAM 2/3 trackers hard-code
NAMES = ("sam3", "grounding_dino", "sam2", "captioner")


def _byte_alphabet() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _clip_tokenizer():
    """CLIP's tokenizer class with a byte-level vocabulary and no merges: any text encodes, byte by byte."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _byte_alphabet():
        vocab[ch] = len(vocab)
    for ch in _byte_alphabet():
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _video_preprocessing(folder: Path, size: int, mean: list[float], std: list[float], image_class: str) -> None:
    """The preprocessing configs the real SAM processors save: square resize, rescale, normalise."""
    common = {"size": {"height": size, "width": size}, "image_mean": mean, "image_std": std, "resample": 2,
              "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
              "do_convert_rgb": True}
    _write_json(folder / "video_preprocessor_config.json", {"video_processor_type": "Sam2VideoVideoProcessor", **common})
    _write_json(folder / "preprocessor_config.json", {"image_processor_type": image_class, **common})


def write_tiny_sam3(folder: Path, seed: int = 0) -> None:
    from transformers import Sam3VideoConfig, Sam3VideoModel

    torch.manual_seed(seed)
    s, g = SAM3_SIZE, SAM3_SIZE // 14
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=s, patch_size=14, window_size=2, global_attn_indexes=[1],
               pretrain_image_size=s)
    vision = dict(model_type="sam3_vision_model", backbone_config=vit, fpn_hidden_size=HIDDEN,
                  backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]])
    tokenizer = _clip_tokenizer()
    small = dict(hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=64)
    detector = dict(
        vision_config=vision,
        text_config=dict(model_type="clip_text_model", vocab_size=len(tokenizer), hidden_size=HIDDEN,
                         intermediate_size=64, projection_dim=32, num_hidden_layers=1, num_attention_heads=2,
                         max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        geometry_encoder_config=dict(num_layers=1, **small),
        detr_encoder_config=dict(num_layers=1, **small),
        detr_decoder_config=dict(num_layers=1, num_queries=4, **small),
        mask_decoder_config=dict(hidden_size=HIDDEN, num_attention_heads=2),
    )
    tracker = dict(
        model_type="sam3_tracker_video", vision_config=vision, image_size=s, num_maskmem=2,
        prompt_encoder_config=dict(hidden_size=HIDDEN, image_size=s, patch_size=14),
        mask_decoder_config=dict(hidden_size=HIDDEN, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=HIDDEN),
        memory_attention_hidden_size=HIDDEN, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[g, g],
        memory_encoder_hidden_size=HIDDEN, memory_encoder_output_channels=64, mask_downsampler_embed_dim=HIDDEN,
        memory_fuser_embed_dim=HIDDEN, memory_fuser_intermediate_dim=64,
    )
    # random scores sit near 0.25: thresholds of 0 let every query through, capped at three tracked objects
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * g,
                             max_num_objects=3, hotstart_delay=0, score_threshold_detection=0.0,
                             new_det_thresh=0.0)
    model = Sam3VideoModel(config)
    object_like_masks(model.detector_model.mask_decoder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _video_preprocessing(folder, s, [0.5] * 3, [0.5] * 3, "Sam3ImageProcessor")
    _write_json(folder / "processor_config.json", {"processor_class": "Sam3VideoProcessor", "target_size": s})


MASK_GAIN, MASK_OFFSET = 100.0, 1.2  # see object_like_masks


@torch.no_grad()
def object_like_masks(decoder: torch.nn.Module) -> None:
    """Make a random SAM 3 detector's masks compact blobs rather than the whole frame.

    Its mask logits are query embedding . pixel embedding: at random init a smooth field within about +-0.02 of 0,
    so a mask is all of the frame or nothing, and a build gets no background to place deletion donors on. The
    query side is amplified (`MASK_GAIN`) and, through a constant channel (instance projection channel 0 = 1, mask
    embedding channel 0 = -`MASK_OFFSET`), shifted down, so only the field's peaks pass: blobs of a few to about
    25% of the frame, as objects give."""
    last = decoder.mask_embedder.layers[-1]
    last.weight.mul_(MASK_GAIN)
    last.bias.mul_(MASK_GAIN)
    last.weight[0] = 0.0
    last.bias[0] = -MASK_OFFSET
    decoder.instance_projection.weight[0] = 0.0
    decoder.instance_projection.bias[0] = 1.0


def write_tiny_sam2(folder: Path, seed: int = 0) -> None:
    from transformers import Sam2VideoConfig, Sam2VideoModel

    torch.manual_seed(seed)
    s = SAM2_SIZE
    hiera = dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                 num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                 global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2], image_size=[s, s])
    config = Sam2VideoConfig(
        vision_config=dict(model_type="sam2_vision_model", backbone_config=hiera, backbone_channel_list=[128, 64, 32, 16],
                           backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
                           fpn_hidden_size=HIDDEN),
        prompt_encoder_config=dict(hidden_size=HIDDEN, image_size=s, patch_size=16),
        mask_decoder_config=dict(hidden_size=HIDDEN, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        memory_attention_hidden_size=HIDDEN, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_encoder_hidden_size=HIDDEN,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=HIDDEN, memory_fuser_embed_dim=HIDDEN,
        memory_fuser_intermediate_dim=64, num_maskmem=2, image_size=s,
    )
    Sam2VideoModel(config).save_pretrained(folder)
    _video_preprocessing(folder, s, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "Sam2ImageProcessor")


def write_tiny_grounding_dino(folder: Path, seed: int = 0) -> None:
    from transformers import BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    from .vocabulary import EVERYDAY_OBJECTS

    torch.manual_seed(seed)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *EVERYDAY_OBJECTS, *letters, *("##" + c for c in letters)]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(words))})
    config = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                             num_heads=[1, 1, 1, 1], window_size=2, out_features=["stage2", "stage3", "stage4"]),
        text_config=dict(model_type="bert", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
        num_queries=8, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=32, encoder_n_points=2, decoder_n_points=2,
        max_text_len=32, disable_custom_kernels=True,
    )
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


WRITERS = {"sam3": write_tiny_sam3, "sam2": write_tiny_sam2, "grounding_dino": write_tiny_grounding_dino}


def tiny_model_dir(name: str, root: str | os.PathLike, seed: int = 0, wait_s: float = 600.0,
                   writer: Callable[[Path, int], None] | None = None) -> Path:
    """`root/<name>-seed<seed>`, written once (into a temporary folder renamed into place, so a killed run never
    leaves a half-written model). `writer(folder, seed)` writes a model not in `WRITERS` (the build's captioner).

    Under torch.distributed only rank 0 writes: transformers' `save_pretrained` skips the weights on the other
    ranks, so a folder they wrote would lack them. The others wait for rank 0's folder to appear.
    """
    writer = writer or WRITERS.get(name)
    if writer is None:
        raise ValueError(f"no tiny model {name!r} (known: {', '.join(WRITERS)})")
    root = Path(root)
    final = root / f"{name}-seed{seed}"
    if _complete(final):
        return final
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        deadline = time.monotonic() + wait_s
        while not _complete(final):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{final}: rank 0 did not write the tiny model within {wait_s:.0f} s")
            time.sleep(0.2)
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        writer(tmp, seed)
        if not _complete(tmp):
            raise RuntimeError(f"{tmp}: the tiny {name} model was written without its weights")
        try:
            os.rename(tmp, final)
        except OSError:  # another run got there first
            if not _complete(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
