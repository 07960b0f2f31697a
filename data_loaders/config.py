"""`DataConfig`: every knob of the training data pipeline, plain types only (it is loaded from YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vivid.conditioning.buckets import Bucket, check_buckets

AUGMENT_TYPES: tuple[str, ...] = ("original", "expand", "hull", "box", "hull_expand", "box_expand")
FLOW_METHODS: tuple[str, ...] = ("farneback", "raft")
# Longest caption a manifest may hold, in characters: CogVideoX's T5 prompt is 226 tokens (about 1000 characters of
# English), so a longer caption would be cut silently; a caption this long is more likely a misplaced field.
MAX_CAPTION_CHARS = 1000


def _default_augment_weights() -> dict[str, float]:
    return {name: 1.0 for name in AUGMENT_TYPES}


@dataclass
class DataConfig:
    train_manifests: list[str] = field(default_factory=list)  # JSONL shards (globs allowed), see docs/data_format.md
    eval_manifests: list[str] = field(default_factory=list)
    height: int = 480  # multiples of 16
    width: int = 720
    # aspect-ratio buckets [[h, w], ...] (multiples of 16): each sample is cover-cropped to the bucket nearest its
    # source's aspect, each batch holds one bucket; empty = every sample at height x width (vivid/conditioning/buckets.py)
    buckets: list[list[int]] = field(default_factory=list)
    frames: int = 49  # 4k+1
    fps: float = 8.0  # target fps: the frame stride is source fps / fps
    video_batch_size: int = 1
    image_batch_size: int = 1
    image_video_ratio: float = 10.0  # image batches per video batch (0 = videos only)
    delete_ratio: float = 0.25  # fraction of deletion samples: add&modify : delete = 3 : 1
    caption_dropout: float = 0.1  # probability of an empty caption (classifier-free guidance)
    kive_prob: float = 0.5  # video samples: masked frame 0 := real frame 0, mask frame 0 := 0
    # vivid's addition (the paper has first-frame KIVE only, i.e. 0): independently of kive_prob, the masked last
    # frame := the real last frame and its mask := 0, so a clip can be generated between two given keyframes
    kive_last_frame_prob: float = 0.0
    augment_weights: dict[str, float] = field(default_factory=_default_augment_weights)
    dilation_range: tuple[float, float] = (0.01, 0.06)  # expand radius, as a fraction of the shorter side
    mask_area_range: tuple[float, float] = (0.001, 0.9)  # allowed mean mask area fraction after augmentation
    delete_flow_prob: float = 0.5  # deletion masks: warp with background flow (else copy the donor's motion)
    flow: str = "farneback"  # "farneback" (OpenCV) or "raft" (needs torchvision and its weights)
    flow_max_side: int = 256  # optical flow is computed on frames downscaled to this longer side
    num_workers: int = 2
    prefetch_factor: int = 2
    max_bad_fraction: float = 0.05  # stop when more than this fraction of the last `bad_window` samples is bad
    bad_window: int = 200
    max_attempts: int = 50  # bad samples in a row for one batch slot before the loader gives up
    seed: int = 0
    max_caption_chars: int = MAX_CAPTION_CHARS  # longer captions make a record invalid
    allow_absolute_paths: bool = False  # accept media paths outside the manifest's folder (absolute or with "..")

    def __post_init__(self) -> None:
        self.mask_area_range = tuple(self.mask_area_range)  # type: ignore[assignment]
        self.dilation_range = tuple(self.dilation_range)  # type: ignore[assignment]
        self.buckets = [list(b) for b in check_buckets(self.buckets or [], "buckets")]
        self.validate()

    def sizes(self) -> list[Bucket]:
        """The training sizes (height, width): the buckets, or the one size height x width."""
        return [(h, w) for h, w in self.buckets] or [(self.height, self.width)]

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        checks = [
            (self.height > 0 and self.height % 16 == 0, f"height must be a positive multiple of 16, got {self.height}"),
            (self.width > 0 and self.width % 16 == 0, f"width must be a positive multiple of 16, got {self.width}"),
            (self.frames >= 1 and (self.frames - 1) % 4 == 0, f"frames must be 4k+1 (1, 5, ..., 49), got {self.frames}"),
            (self.fps > 0, f"fps must be > 0, got {self.fps}"),
            (self.video_batch_size >= 1, "video_batch_size must be >= 1"),
            (self.image_batch_size >= 1, "image_batch_size must be >= 1"),
            (self.image_video_ratio >= 0, "image_video_ratio must be >= 0"),
            (0 <= self.delete_ratio <= 1, "delete_ratio must be in [0, 1]"),
            (0 <= self.caption_dropout <= 1, "caption_dropout must be in [0, 1]"),
            (0 <= self.kive_prob <= 1, "kive_prob must be in [0, 1]"),
            (0 <= self.kive_last_frame_prob <= 1,
             f"kive_last_frame_prob must be in [0, 1], got {self.kive_last_frame_prob}"),
            (0 <= self.delete_flow_prob <= 1, "delete_flow_prob must be in [0, 1]"),
            (len(self.mask_area_range) == 2 and 0 <= self.mask_area_range[0] < self.mask_area_range[1] <= 1,
             f"mask_area_range must be [low, high] with 0 <= low < high <= 1, got {list(self.mask_area_range)}"),
            (len(self.dilation_range) == 2 and 0 <= self.dilation_range[0] <= self.dilation_range[1] <= 0.5,
             f"dilation_range must be [low, high] with 0 <= low <= high <= 0.5, got {list(self.dilation_range)}"),
            (self.flow in FLOW_METHODS, f"flow must be one of {list(FLOW_METHODS)}, got {self.flow!r}"),
            (self.flow_max_side >= 16, "flow_max_side must be >= 16"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.prefetch_factor >= 1, "prefetch_factor must be >= 1"),
            (0 <= self.max_bad_fraction <= 1, "max_bad_fraction must be in [0, 1]"),
            (self.bad_window >= 1, "bad_window must be >= 1"),
            (self.max_attempts >= 1, "max_attempts must be >= 1"),
            (self.max_caption_chars >= 1, "max_caption_chars must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        unknown = sorted(set(self.augment_weights) - set(AUGMENT_TYPES))
        if unknown:
            raise ValueError(f"augment_weights: unknown type {unknown[0]!r} (known: {', '.join(AUGMENT_TYPES)})")
        if any(w < 0 for w in self.augment_weights.values()) or not any(w > 0 for w in self.augment_weights.values()):
            raise ValueError("augment_weights must be >= 0 with at least one > 0")
