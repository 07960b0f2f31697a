"""Export trained VIVID weights as a Hub-ready folder, and upload it.

    export_weights("runs/vivid/checkpoints/checkpoint-2000", "vivid-lora")   # weights + config + model card
    push_to_hub("vivid-lora", "me/vivid-cogvideox-5b", private=True)

The folder holds the VIVID weights (`pytorch_lora_weights.safetensors`, `patch_embed.safetensors`), their
`vivid_config.json` (base model, LoRA, mask encoding, channel order), `training_config.json` when the source is a
training checkpoint, and `README.md`, a model card whose YAML header carries the Hub metadata.
`VIVIDPipeline.from_vivid(folder)` loads it onto the base model. The Hub token comes from the environment
(`HF_TOKEN`) or the cached login and is never printed.

The export owns only those files and `vivid_manifest.json` (their sizes and hashes, checked on loading): an existing
`--out` keeps everything else in it (a `.git/`, notes). The new files are written in a temporary sibling folder
first and swapped in so that an interrupted export leaves the previous one, and a killed swap is completed by the
next run (`vivid.io.swap`): a reader never loads a mixed set.
Local absolute paths are not published: the card and `training_config.json` name local files by their base name.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from train.checkpoint import STATE_NAME, WEIGHTS_DIR, latest_checkpoint, read_trainer_state
from vivid.constants import BASE_WEIGHTS_NAME, LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME, VIVID_CONFIG_NAME
from vivid.io.atomic import temporary_dir
from vivid.io.swap import MANIFEST_NAME, finish_interrupted_swaps, swap_in, write_manifest
from vivid.model.registry import spec_by_name
from vivid.model.weights import (
    EXPORT_TEMPORARY_KIND,
    VIVID_WEIGHT_FILES,
    VIVIDWeightsConfig,
    required_weight_files,
)

TRAINING_CONFIG_NAME = "training_config.json"
CARD_NAME = "README.md"
# the files an export writes, and owns; the manifest (their sizes and hashes) is written last
EXPORT_FILES = (*VIVID_WEIGHT_FILES, TRAINING_CONFIG_NAME, CARD_NAME, MANIFEST_NAME)
TAGS = ["vivid", "video-editing", "video-inpainting", "lora", "diffusers"]  # and the base's family
COGVIDEOX_LICENSE = dict(
    license="other",
    license_name="cogvideox-license",
    license_link="https://huggingface.co/THUDM/CogVideoX-5b/blob/main/LICENSE",
)


@dataclass
class ExportSource:
    weights_dir: Path  # the VIVID weights folder
    trainer_state: dict[str, Any] | None  # the checkpoint's trainer_state.json, if any


def find_weights(path: str | os.PathLike) -> ExportSource:
    """A VIVID weights folder, a training checkpoint (its vivid-weights/), or a run folder (its newest checkpoint)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--checkpoint {path}: no such folder")
    if (path / VIVID_CONFIG_NAME).is_file():
        return ExportSource(path, None)
    if (path / WEIGHTS_DIR / VIVID_CONFIG_NAME).is_file():
        state = read_trainer_state(path) if (path / STATE_NAME).is_file() else None
        return ExportSource(path / WEIGHTS_DIR, state)
    latest = latest_checkpoint(path)
    if latest is not None:
        return find_weights(latest)
    raise FileNotFoundError(
        f"--checkpoint {path}: neither a VIVID weights folder ({VIVID_CONFIG_NAME}), a training checkpoint "
        f"({WEIGHTS_DIR}/) nor a run folder with checkpoints/"
    )


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/", "~"))


def redact_paths(value: Any) -> Any:
    """`value` (JSON-like) with every local absolute path (`/...`, `~/...`) replaced by its base name, so that
    what is published names no folder of this machine; relative paths and hub ids are kept."""
    if isinstance(value, dict):
        return {k: redact_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_paths(v) for v in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return Path(value.rstrip("/\\")).name or value
    return value


def _base_name(base: str) -> str:
    """The base model as a card may show it: a hub id as is, a local folder by its base name."""
    return base if _is_hub_id(base) else redact_paths(base)


def _recipe_lines(state: dict[str, Any] | None, config: VIVIDWeightsConfig) -> list[str]:
    lines = [
        f"- LoRA rank {config.lora_rank}, alpha {config.lora_alpha}, on `{'`, `'.join(config.lora_targets)}` of every "
        "transformer block; the patch embedding widened to "
        f"{config.in_channels} input channels ({config.channel_order}) and trained in full; everything else frozen.",
        f"- Mask encoding: `{config.mask_encoding}` (4 frames per latent frame as 4 channels, 8x max-pooled).",
        f"- Objective: {spec_by_name(config.family).objective}",
    ]
    if config.buckets:
        lines.append("- Trained at the aspect-ratio buckets " + ", ".join(f"{h}x{w}" for h, w in config.buckets)
                     + " (HxW); `VIVIDPipeline` edits at the one nearest the source's aspect by default.")
    if not state or "config" not in state:
        return lines
    c = state["config"]
    d, o = c.get("data", {}), c.get("optim", {})
    world = state.get("world_size", 1)
    lines += [
        f"- Trained {state.get('step')} optimizer steps on {world} process(es), mixed precision "
        f"`{c.get('mixed_precision')}`, final training loss {state.get('last_loss')}.",
        f"- Data: {d.get('frames')} frames at {d.get('height')}x{d.get('width')}, {d.get('fps')} fps; video batch "
        f"{d.get('video_batch_size')}, image batch {d.get('image_batch_size')} per process, image:video batches "
        f"{d.get('image_video_ratio')}:1, deletion fraction {d.get('delete_ratio')}, KIVE probability "
        f"{d.get('kive_prob')}, caption dropout {d.get('caption_dropout')}.",
        f"- AdamW{' (8-bit)' if o.get('use_8bit_adam') else ''}: lr {o.get('lr')}, betas {o.get('betas')}, weight "
        f"decay {o.get('weight_decay')}, {o.get('warmup_steps')} warm-up steps, `{o.get('lr_scheduler')}` schedule, "
        f"gradient clipping {o.get('max_grad_norm')}, accumulation {o.get('gradient_accumulation_steps')}.",
    ]
    return lines


def model_card(config: VIVIDWeightsConfig, state: dict[str, Any] | None, repo_id: str | None = None,
               license: str | None = None) -> str:
    """The README.md of an exported folder: Hub metadata (YAML header), the recipe, and a usage snippet."""
    from huggingface_hub import ModelCardData

    base = _base_name(config.base_model)
    tags = [*TAGS[:3], config.family, *TAGS[3:]]
    meta: dict[str, Any] = dict(library_name="diffusers", tags=tags, pipeline_tag="video-to-video")
    if _is_hub_id(base):
        meta["base_model"] = base
    if license:
        meta["license"] = license
    elif base.startswith("THUDM/CogVideoX"):
        meta.update(COGVIDEOX_LICENSE)
    else:
        meta["license"] = "apache-2.0"
    header = ModelCardData(**meta).to_yaml()
    name = repo_id or "path/to/this/folder"
    base_line = f"[{base}](https://huggingface.co/{base})" if _is_hub_id(base) else f"`{base}` (a local model)"
    recipe = "\n".join(_recipe_lines(state, config))
    if config.base_trained:
        holds = ("This repository holds the trained transformer: the LoRA, the widened patch embedding and the base "
                 "transformer's own weights,\ntrained too (a tiny model trained from scratch); the VAE and the text "
                 "encoder are loaded from the base model.")
        base_file = f"\n- `{BASE_WEIGHTS_NAME}`: the base transformer's trained weights (every weight but the LoRA)"
    else:
        holds = ("This repository holds only the trained part, a LoRA and the widened patch embedding; the base "
                 "model is loaded\nfrom its own repository.")
        base_file = ""
    return f"""---
{header}
---

# VIVID weights for video local editing

Add, modify or delete an entity inside a mask of a video or an image: VIVID (arXiv 2411.15260) on {base_line}.
{holds}

## Training recipe

{recipe}

## Usage

```python
import torch
from vivid.pipeline import VIVIDPipeline

pipe = VIVIDPipeline.from_vivid("{name}", base_model="{base}", torch_dtype=torch.bfloat16).to("cuda")
frames = pipe(video="input.mp4", mask="mask.mp4", prompt="a red car", task="modify").frames[0]
```

or from the command line:

```bash
vivid edit --model {base} --weights {name} --video input.mp4 --mask mask.mp4 --task modify \\
    --prompt "a red car" --out edited.mp4
```

## Files

- `{LORA_WEIGHTS_NAME}`: the LoRA in diffusers' layout (`transformer.<module>.lora_A/B.weight`)
- `{PATCH_EMBED_WEIGHTS_NAME}`: `patch_embed.proj.weight` / `.bias`, {config.in_channels} input channels
- `{VIVID_CONFIG_NAME}`: base model, LoRA rank/alpha/targets, mask encoding and channel order{base_file}
"""


def _check_destination(out_dir: Path, checkpoint: Path, source: ExportSource) -> None:
    """Refuse an `--out` inside (or equal to) the source, or one holding files an export would replace but that no
    earlier export wrote."""
    out = out_dir.resolve()
    for src in dict.fromkeys((checkpoint.resolve(), source.weights_dir.resolve())):
        if out == src or src in out.parents:
            raise ValueError(f"--out {out_dir} is inside the source {checkpoint}: choose a folder outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file; choose a folder")
    if out_dir.is_dir() and not (out_dir / VIVID_CONFIG_NAME).is_file():
        clash = [name for name in EXPORT_FILES if (out_dir / name).exists()]
        if clash:
            raise FileExistsError(f"--out {out_dir} holds {clash[0]} but is not an earlier export; choose another "
                                  "folder (an export replaces only its own files)")


def export_weights(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    base_model: str | None = None,
    repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """Write the export folder. `base_model` overrides the base recorded at training time (e.g. the hub id of a
    local copy). With `repo_id` (an export for the Hub) a local base model is recorded by its base name only.

    The files and their manifest are written into a new temporary folder beside `out_dir` (`temporary_dir`), then
    moved in (`vivid.io.swap.swap_in`): only the export's own files (`EXPORT_FILES`) are replaced, everything else
    in `out_dir` stays. An error or Ctrl-C leaves `out_dir` as it was; a kill during the swap is completed by the
    next export or weight loading (`finish_interrupted_swaps`)."""
    source = find_weights(checkpoint)
    config = VIVIDWeightsConfig.load(source.weights_dir)
    if base_model:
        config.base_model = base_model
    if repo_id:
        config.base_model = _base_name(config.base_model)
    files = required_weight_files(source.weights_dir, config)
    out_dir = Path(out_dir)
    finish_interrupted_swaps(out_dir, EXPORT_TEMPORARY_KIND)  # a killed export's: completed, or its leftovers removed
    _check_destination(out_dir, Path(checkpoint), source)
    with temporary_dir(out_dir, EXPORT_TEMPORARY_KIND) as tmp:
        for name in files:
            shutil.copy2(source.weights_dir / name, tmp / name)
        (tmp / VIVID_CONFIG_NAME).write_text(json.dumps(asdict(config), indent=2) + "\n")
        if source.trainer_state and "config" in source.trainer_state:
            training = redact_paths(source.trainer_state["config"])
            (tmp / TRAINING_CONFIG_NAME).write_text(json.dumps(training, indent=2) + "\n")
        (tmp / CARD_NAME).write_text(model_card(config, source.trainer_state, repo_id, license))
        written = [p.name for p in tmp.iterdir() if p.name in EXPORT_FILES]
        write_manifest(tmp, written)
        swap_in(tmp, out_dir, owned=EXPORT_FILES, last=(VIVID_CONFIG_NAME,))
    return out_dir


def token_source() -> str:
    """Where the Hub token would come from, without revealing it."""
    from huggingface_hub import get_token

    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return "the HF_TOKEN environment variable"
    return "the cached `hf auth login`" if get_token() else "none (set HF_TOKEN or run `hf auth login`)"


def upload_plan(folder: str | os.PathLike) -> list[tuple[str, int]]:
    """(name, bytes) of the export's own files in `folder`: what a push uploads (nothing else in the folder)."""
    folder = Path(folder)
    return [(name, (folder / name).stat().st_size) for name in sorted(EXPORT_FILES) if (folder / name).is_file()]


def _one_line(err: BaseException, token: str | None) -> str:
    """An error of the Hub client as one line, the token (should a message hold it) masked."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0] if lines else 'no details'}"
    return text.replace(token, "***") if token else text


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False, dry_run: bool = False) -> str:
    """Create (if needed) the model repository and upload the export's files; returns a one-paragraph report.

    With `dry_run` nothing is contacted: the report lists what would be uploaded and where the token would
    come from. The token itself never appears in the report or the logs. `private` with an existing public
    repository is refused before anything is uploaded (the Hub would keep it public). A network or Hub error is
    a ValueError of one line.
    """
    if repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
        raise ValueError(f"--push-to-hub {repo_id!r}: expected a repository id of the form owner/name")
    plan = upload_plan(folder)
    lines = [f"{'would upload' if dry_run else 'uploading'} to https://huggingface.co/{repo_id} "
             f"({'private' if private else 'public'}), token from {token_source()}:"]
    lines += [f"  {name}  ({size:,} bytes)" for name, size in plan]
    base = VIVIDWeightsConfig.load(folder).base_model
    if not _is_hub_id(base):
        lines.append(f"note: the base model is the local folder {base!r}; users will need it too (record a hub id "
                     "with --base-model OWNER/NAME)")
    if dry_run:
        return "\n".join(lines)
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HTTPError

    token = get_token()
    if not token:
        raise ValueError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        is_private = getattr(api.repo_info(repo_id, repo_type="model"), "private", None)
        if private and is_private is False:
            raise ValueError(f"--private: https://huggingface.co/{repo_id} already exists and is public; nothing was "
                             "uploaded. Make it private in its settings on the Hub, or push without --private")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          allow_patterns=[name for name, _ in plan], commit_message="Upload VIVID weights")
    except (HTTPError, OSError) as err:  # network down, no permission, hub error: one line, no traceback
        raise ValueError(f"--push-to-hub {repo_id}: {_one_line(err, token)}") from None
    visibility = "private" if is_private else "public" if is_private is False else "visibility unknown"
    lines.append(f"uploaded: {url} ({visibility})")
    return "\n".join(lines)
