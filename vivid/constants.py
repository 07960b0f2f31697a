"""Numbers and strings fixed by the VIVID recipe (see shared reference, sections 1, 2 and 5)."""

TASKS = ("add", "modify", "delete")

# All deletion samples are trained with this one caption; at inference "delete" uses it unless told otherwise.
DELETE_CAPTION = "remove objects and generate areas that blend with the background"

LATENT_CHANNELS = 16  # CogVideoX VAE latent channels (noise and masked-video latents each)
MASK_CHANNELS = 4  # the binary mask packed like the VAE packs time: 4 frames -> 4 channels
VIVID_IN_CHANNELS = 2 * LATENT_CHANNELS + MASK_CHANNELS  # noise | masked-video latents | mask = 36

VAE_SPATIAL = 8
VAE_TEMPORAL = 4
MAX_CLIP_FRAMES = 49  # CogVideoX-5B's training length: 4 * 12 + 1


def clip_frames_at_most(num_frames: int, temporal: int = VAE_TEMPORAL) -> int:
    """The largest clip length of the form temporal * k + 1 (4k+1: what CogVideoX's and Wan's causal VAEs take)
    that is at most `num_frames` (>= 1)."""
    return temporal * ((num_frames - 1) // temporal) + 1

LORA_RANK = 32
LORA_ALPHA = 32
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")

BASE_MODEL_ID = "THUDM/CogVideoX-5b"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # TA and TC, as VIVID-10M-Eval computes them

# File names of the VIVID weights folder (written by save_vivid_weights, read by load_vivid_weights).
LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # diffusers' LoRA file name and key layout
PATCH_EMBED_WEIGHTS_NAME = "patch_embed.safetensors"
BASE_WEIGHTS_NAME = "transformer.safetensors"  # only where the base was trained too (`base_trained`, tiny models)
VIVID_CONFIG_NAME = "vivid_config.json"

# `vivid app` defaults (here so that the CLI can show them without importing Gradio).
APP_MAX_UPLOAD_MB = 1024  # largest upload accepted
APP_KEEP_HOURS = 24.0  # a browser session's files are removed this long after its last change
