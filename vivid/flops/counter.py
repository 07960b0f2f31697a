"""Analytic FLOPs of a VIVID edit (and of a training step), per component, from the architecture configs.

Convention: one multiply-add = 2 FLOPs, and only matrix products and convolutions are counted (what
`torch.utils.flop_counter.FlopCounterMode` counts); norms, activations, softmax, rotary embeddings and
interpolation are left out (well under 1% of the total). Attention is QK^T and AV over video + text tokens.

Components of one edit: T5 (once per prompt; twice with classifier-free guidance), VAE encode of the
masked video (VIVID's condition), the transformer (`steps` forwards, batch 2 with guidance), VAE decode.

Each base counts its own modules with its formulas (a `BaseFlops`, vivid/flops/formulas.py: video and text tokens,
a transformer forward, the VAE, the text encoder), found by its specification's `name` in `FORMULAS`, for the
architectures the specification publishes (`spec.architectures`: CogVideoX "5b" and "tiny", Wan "1.3b", "14b" and
"tiny"); this module only sums an edit. CogVideoX's formulas are in vivid/flops/cogvideox.py (the VAE's following
diffusers' frame batching), Wan2.1's in vivid/flops/wan.py (its causal VAE counted on the meta device under
FlopCounterMode). A new base adds its `BaseFlops` to `FORMULAS` and is counted here unchanged.

The published KIVE costs (17.1 PFLOPs per video edit, 1.5 per keyframe edit) are reproduced, to the rounding,
by counting the transformer's linear layers only, at 2 FLOPs per multiply-add, with guidance (batch 2) and 50
steps: a module-hook counter (thop/fvcore style) that does not see `F.scaled_dot_product_attention`. See
`kive_comparison` and docs/performance.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vivid.flops.cogvideox import CogVideoXFlops
from vivid.flops.formulas import BaseFlops
from vivid.flops.wan import WanFlops
from vivid.model.registry import spec_by_name
from vivid.model.spec import ModelSpecification

# each base's formulas, by its specification's `name`
FORMULAS: dict[str, type[BaseFlops]] = {"cogvideox": CogVideoXFlops, "wan": WanFlops}

# Published on the VIVID project page (KIVE section), in PFLOPs.
PUBLISHED_PFLOPS = {
    "video_edit": 17.1,  # one 49x480x720 edit
    "keyframe_edit": 1.5,  # one 1-frame 480x720 edit
    "naive_two_rounds": 34.2,  # two rounds of video editing
    "kive_two_rounds": 20.1,  # two keyframe edits + one propagation
}

PETA = 1e15


def architecture(size: str, family: str = "cogvideox") -> tuple[ModelSpecification, dict]:
    """The specification of `family` and its published (or tiny) architecture `size`: {"transformer", "vae",
    "text_encoder"} configs (the classes' constructor arguments)."""
    spec = spec_by_name(family)
    if size not in spec.architectures:
        raise ValueError(f"model size must be one of {sorted(spec.architectures)} for {family}, got {size!r}")
    return spec, spec.architectures[size]


def formulas_for(spec: ModelSpecification) -> BaseFlops:
    """The FLOPs formulas of `spec`'s base."""
    if spec.name not in FORMULAS:
        raise ValueError(f"no FLOPs formulas for base {spec.name!r} (known: {', '.join(sorted(FORMULAS))})")
    return FORMULAS[spec.name](spec)


def model_name(family: str, size: str) -> str:
    return "tiny" if size == "tiny" else f"{spec_by_name(family).display_name}-{size.upper()}"


# ----------------------------------------------------------------------------- an edit
@dataclass
class EditFlops:
    """FLOPs of one edit, per component; `total` sums them."""

    model: str
    frames: int
    height: int
    width: int
    steps: int
    guidance: bool
    video_tokens: int
    text_tokens: int
    components: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.components.values())

    @property
    def transformer_total(self) -> float:
        return sum(v for k, v in self.components.items() if k.startswith("transformer_"))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["total"] = self.total
        out["transformer_total"] = self.transformer_total
        return out


def edit_flops(
    size: str = "5b",
    frames: int = 49,
    height: int = 480,
    width: int = 720,
    steps: int = 50,
    guidance: bool = True,
    vivid: bool = True,
    family: str = "cogvideox",
) -> EditFlops:
    """FLOPs of one edit at a working size. `frames` is padded to 4k+1 as the pipeline does.

    `vivid=False` counts the stock base's text-to-video at the same shape (16 input channels, no LoRA, no VAE
    encode of a condition). `family` "wan" counts Wan2.1 (sizes "1.3b", "14b", "tiny"), whose guidance runs the
    conditional and unconditional forwards apart (the same FLOPs as CogVideoX's batch of 2).
    """
    spec, arch = architecture(size, family)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    frames = spec.padded_frame_count(frames) if frames >= 1 else frames
    tr, vae, text_encoder = arch["transformer"], arch["vae"], arch["text_encoder"]
    cfg_batch = 2 if guidance else 1
    in_channels, lora_rank = (spec.in_channels, spec.lora_rank) if vivid else (spec.latent_channels, 0)
    formulas = formulas_for(spec)
    n_text = formulas.text_tokens(arch)
    n_video = formulas.video_tokens(tr, frames, height, width)
    fwd = formulas.transformer_forward(tr, frames, height, width, n_text, cfg_batch, in_channels, lora_rank)
    encode, decode = formulas.vae(vae, frames, height, width)
    comps = {
        "t5": formulas.text_encoder(text_encoder, n_text, batch=cfg_batch),
        "vae_encode": encode if vivid else 0.0,
        "transformer_linear": steps * fwd["linear"],
        "transformer_attention": steps * fwd["attention"],
        "transformer_lora": steps * fwd["lora"],
        "vae_decode": decode,
    }
    return EditFlops(model_name(family, size), frames, height, width, steps, guidance, n_video, n_text, comps)


def long_edit_flops(
    size: str, frames: int, height: int, width: int, steps: int, guidance: bool, family: str = "cogvideox",
    long_mode: str = "chain", kv_budget: int | None = None, clip_frames: int | None = None,
) -> dict:
    """FLOPs of a long edit in fixed windows of `clip_frames` (default the base's clip) sharing their end frames:
    `chain` is its clips; `parallel` adds the joint keyframe pass, one keyframe at each end of every clip: K
    one-frame edits, plus each keyframe's queries (its own tokens) attending to `kv_budget` other keyframes'
    tokens (None: all (K - 1) x one frame's video tokens), 4 L M D FLOPs per layer, step and guidance batch."""
    spec, arch = architecture(size, family)
    clip = clip_frames or spec.clip_frames(arch["transformer"])
    clips = max(1, -(-(frames - 1) // (clip - 1)))
    per_clip = edit_flops(size, clip, height, width, steps, guidance, family=family)
    out = {"long_mode": long_mode, "clips": clips, "clip_frames": clip, "clips_flops": clips * per_clip.total,
           "joint_keyframes": 0, "joint_pass_flops": 0.0}
    if long_mode == "parallel" and clips > 1:
        keyframes = clips + 1
        one = edit_flops(size, 1, height, width, steps, guidance, family=family)
        tr = arch["transformer"]
        d = tr["num_attention_heads"] * tr["attention_head_dim"]
        own = one.video_tokens + (one.text_tokens if spec.name == "cogvideox" else 0)  # Wan: video self-attention
        extra = kv_budget if kv_budget is not None else (keyframes - 1) * one.video_tokens
        cross = 4 * own * extra * d * tr["num_layers"] * steps * (2 if guidance else 1) * keyframes
        out.update(joint_keyframes=keyframes, joint_pass_flops=float(keyframes * one.total + cross))
    out["total"] = out["clips_flops"] + out["joint_pass_flops"]
    return out


def kive_comparison(size: str = "5b", steps: int = 50) -> dict:
    """Our counts of a 49x480x720 video edit and a 1-frame keyframe edit under several conventions, beside
    the published numbers. The convention that reproduces them: transformer linear layers only, FLOPs = 2 MACs,
    with guidance (which is what a module-hook counter reports for CogVideoX's pipeline)."""
    video = edit_flops(size, 49, 480, 720, steps, guidance=True)
    key = edit_flops(size, 1, 480, 720, steps, guidance=True)
    video_ng = edit_flops(size, 49, 480, 720, steps, guidance=False)
    key_ng = edit_flops(size, 1, 480, 720, steps, guidance=False)

    def conventions(e: EditFlops, e_ng: EditFlops) -> dict[str, float]:
        c = e.components
        return {
            "all components, guidance (this project's count)": e.total / PETA,
            "transformer only, guidance": e.transformer_total / PETA,
            "transformer linear layers only, guidance": (c["transformer_linear"] + c["transformer_lora"]) / PETA,
            "transformer linear only + VAE, guidance": (
                c["transformer_linear"] + c["transformer_lora"] + c["vae_encode"] + c["vae_decode"]
            ) / PETA,
            "all components, no guidance": e_ng.total / PETA,
            "all components, guidance, in MACs": e.total / 2 / PETA,
        }

    v, k = conventions(video, video_ng), conventions(key, key_ng)
    rows = {name: {"video_edit": v[name], "keyframe_edit": k[name],
                   "naive_two_rounds": 2 * v[name], "kive_two_rounds": 2 * k[name] + v[name]} for name in v}
    return {"published": dict(PUBLISHED_PFLOPS), "ours_pflops": rows, "video": video.to_dict(), "keyframe": key.to_dict()}
