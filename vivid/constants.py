"""Numbers and strings fixed by the VIVID recipe whatever the base: tasks, the deletion caption, file names, app
limits (see shared reference, sections 1, 2 and 5)."""

TASKS = ("add", "modify", "delete")

# All deletion samples are trained with this one caption; at inference "delete" uses it unless told otherwise.
DELETE_CAPTION = "remove objects and generate areas that blend with the background"

# A base's numbers (latent channels, VAE compression, clip length, LoRA recipe, hub id) are its specification's:
# vivid/model/spec.py and its subclasses, read through `vivid.model.registry.spec_for`.


def clip_frames_at_most(num_frames: int, temporal: int) -> int:
    """The largest clip length of the form temporal * k + 1 (4k+1 for a VAE compressing 4x in time, as CogVideoX's
    and Wan's causal VAEs do) that is at most `num_frames` (>= 1)."""
    return temporal * ((num_frames - 1) // temporal) + 1


DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # TA and TC, as VIVID-10M-Eval computes them

# File names of the VIVID weights folder (written by save_vivid_weights, read by load_vivid_weights).
LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # diffusers' LoRA file name and key layout
PATCH_EMBED_WEIGHTS_NAME = "patch_embed.safetensors"
BASE_WEIGHTS_NAME = "transformer.safetensors"  # only where the base was trained too (`base_trained`, tiny models)
VIVID_CONFIG_NAME = "vivid_config.json"

# `vivid app` defaults (here so that the CLI can show them without importing Gradio).
APP_MAX_UPLOAD_MB = 1024  # largest upload accepted
APP_KEEP_HOURS = 24.0  # a browser session's files are removed this long after its last change
