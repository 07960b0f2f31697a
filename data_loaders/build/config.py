"""`BuildConfig`: every knob of `vivid data build` (docs/data_build.md), plain types only (loaded from YAML).

    config = load_build_config("configs/data_build/default.yaml", ["filters.max_empty_fraction=0.2"])

Loaded by the project's one YAML -> dataclass loader (`vivid.yaml_config.load_dataclass_config`): unknown keys and
wrong types are a ConfigError naming the key. A model id is a hub id, a local folder, or "tiny" (a seeded random
model of the same class, written under the output folder: `vivid data build --models tiny`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vivid.segmentation.vocabulary import EVERYDAY_OBJECTS
from vivid.yaml_config import ConfigError, load_dataclass_config

TINY = "tiny"  # reserved model id: the built-in tiny random model of that class (vivid.segmentation.tiny)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "data_build"

# Concept prompts for the segmenter when `entities.prompt_source` is "vocabulary": things that move or can be
# added, modified or removed in everyday footage (VIVID-10M's entities are objects, people and animals).
DEFAULT_VOCABULARY = list(EVERYDAY_OBJECTS)


@dataclass
class ModelsConfig:
    segmenter: Literal["sam3", "gdino_sam2"] = "sam3"  # sam3: Sam3VideoModel; gdino_sam2: Grounding DINO boxes + SAM2
    sam3: str = "facebook/sam3"
    grounding_dino: str = "IDEA-Research/grounding-dino-base"
    sam2: str = "facebook/sam2.1-hiera-large"
    captioner: str = "Qwen/Qwen3-VL-2B-Instruct"  # any Qwen2.5-VL / Qwen3-VL (image-text-to-text) model
    device: str = "auto"  # auto: this process's GPU where there is one, else the CPU
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bfloat16 on a GPU, float32 on a CPU
    tiny_seed: int = 0  # seed of the "tiny" models
    threads: int = 0  # torch CPU threads (0: torch's default)


@dataclass
class ShotsConfig:
    frames: int = 49  # frames per clip (4k+1): the trainer's data.frames
    fps: float = 8.0  # frame rate the clips are sampled at and written with: the trainer's data.fps
    max_side: int = 720  # longer side of the written clips (scaled down, never up)
    max_clips_per_shot: int = 4  # a long shot is cut into at most this many clips
    cut_similarity: float = 0.7  # hard cuts (vivid.longvideo.boundaries.detect_hard_cuts): histogram intersection below this ...
    cut_contrast: float = 3.0  # ... standing out this many times from the pairs around it


@dataclass
class EntitiesConfig:
    prompt_source: Literal["vocabulary", "captioner"] = "vocabulary"  # captioner: the VLM lists the clip's objects
    vocabulary: list[str] = field(default_factory=lambda: list(DEFAULT_VOCABULARY))
    max_prompts: int = 8  # prompt_source captioner: at most this many objects from the VLM's list
    max_entities: int = 8  # per clip, the highest-scoring first
    box_threshold: float = 0.35  # gdino_sam2: Grounding DINO's box score threshold
    text_threshold: float = 0.25  # gdino_sam2: Grounding DINO's text score threshold


@dataclass
class FiltersConfig:
    keyframe_area: tuple[float, float] = (0.01, 0.6)  # mask area fraction on the entity's keyframe (largest frame)
    clip_area: tuple[float, float] = (0.005, 0.6)  # mean mask area fraction over the clip
    max_area_change: float = 0.5  # frame-to-frame |a_t - a_t-1| / max(a_t, a_t-1) (tracking failures); 1 = off
    max_empty_fraction: float = 0.1  # mask empty in more than this fraction of the frames
    drop_border_entities: bool = True  # the entity touches the frame border in every frame
    border_margin: int = 2  # pixels from the edge that count as touching
    min_motion: float = 1.0  # near-static clip: mean absolute frame difference (0-255) below this; 0 = off


@dataclass
class CaptionsConfig:
    # one prompt per caption, short to long; the VLM sees the entity's crop on its keyframe
    prompts: list[str] = field(default_factory=lambda: [
        "Name the object in this picture in two or three words, for example: a dog",
        "Describe the object in this picture in a short phrase with its colour or look, for example: a brown dog",
        "Describe the object in this picture and what it is doing in one phrase, for example: a brown dog running "
        "on grass",
    ])
    max_new_tokens: list[int] = field(default_factory=lambda: [8, 16, 32])
    objects_prompt: str = "List the main objects in this picture as a comma-separated list of nouns."
    crop_margin: float = 0.15  # the crop is the mask's box grown by this fraction of its size on each side
    max_chars: int = 200


@dataclass
class ImagesConfig:
    enabled: bool = True  # every kept entity's keyframe becomes an image sample (VIVID trains on images 10:1)


@dataclass
class DeletionConfig:
    per_clip: int = 1  # deletion records per clip: another entity's mask pasted on this clip's background
    margin: int = 2  # pixels kept between the pasted mask and the clip's own entities


@dataclass
class OutputConfig:
    shard_size: int = 10000  # records per manifest shard
    eval_fraction: float = 0.05  # videos held out for the eval split (by video, so no clip leaks)
    eval_min_videos: int = 1  # at least this many held-out videos when there are two or more
    seed: int = 0


@dataclass
class BuildConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    shots: ShotsConfig = field(default_factory=ShotsConfig)
    entities: EntitiesConfig = field(default_factory=EntitiesConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    deletion: DeletionConfig = field(default_factory=DeletionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def _range_ok(r: tuple[float, float]) -> bool:
    return len(r) == 2 and 0 <= r[0] <= r[1] <= 1


def validate_build_config(c: BuildConfig) -> None:
    """Cross-field checks the types cannot express; ConfigError naming the key."""
    checks = [
        (c.shots.frames >= 1 and (c.shots.frames - 1) % 4 == 0, f"shots.frames must be 4k+1, got {c.shots.frames}"),
        (c.shots.fps > 0, "shots.fps must be > 0"),
        (c.shots.max_side >= 16, "shots.max_side must be >= 16"),
        (c.shots.max_clips_per_shot >= 1, "shots.max_clips_per_shot must be >= 1"),
        (c.entities.prompt_source == "captioner" or bool(c.entities.vocabulary),
         "entities.vocabulary must not be empty (or set entities.prompt_source=captioner)"),
        (c.entities.max_entities >= 1, "entities.max_entities must be >= 1"),
        (c.entities.max_prompts >= 1, "entities.max_prompts must be >= 1"),
        (_range_ok(c.filters.keyframe_area), "filters.keyframe_area must be [low, high] within [0, 1]"),
        (_range_ok(c.filters.clip_area), "filters.clip_area must be [low, high] within [0, 1]"),
        (0 <= c.filters.max_area_change <= 1, "filters.max_area_change must be in [0, 1]"),
        (0 <= c.filters.max_empty_fraction <= 1, "filters.max_empty_fraction must be in [0, 1]"),
        (c.filters.border_margin >= 0, "filters.border_margin must be >= 0"),
        (c.filters.min_motion >= 0, "filters.min_motion must be >= 0"),
        (1 <= len(c.captions.prompts) <= 3, "captions.prompts must hold 1 to 3 prompts (short to long)"),
        (len(c.captions.max_new_tokens) == len(c.captions.prompts) and all(n >= 1 for n in c.captions.max_new_tokens),
         "captions.max_new_tokens must give one positive number per prompt"),
        (c.captions.crop_margin >= 0, "captions.crop_margin must be >= 0"),
        (c.deletion.per_clip >= 0, "deletion.per_clip must be >= 0"),
        (c.output.shard_size >= 1, "output.shard_size must be >= 1"),
        (0 <= c.output.eval_fraction < 1, "output.eval_fraction must be in [0, 1)"),
        (c.output.eval_min_videos >= 0, "output.eval_min_videos must be >= 0"),
        (c.models.threads >= 0, "models.threads must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for name in ("sam3", "grounding_dino", "sam2", "captioner"):
        if not getattr(c.models, name).strip():
            raise ConfigError(f"models.{name} must be a hub id, a local folder or {TINY!r}")


def load_build_config(path: str | Path | None, overrides: list[str] | None = None) -> BuildConfig:
    """A BuildConfig from YAML (defaults when `path` is None) and dotted `section.key=value` overrides."""
    return load_dataclass_config(BuildConfig, path, overrides, validate_build_config)


def preset_path(name: str) -> Path:
    """configs/data_build/<name>.yaml of this checkout."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"data build preset {path} not found (it ships with the vivid repository)")
    return path
