"""The VIVID trainer, top to bottom: setup, the training loop, checkpoints, logging, validation.

    from train.config import load_config
    from train.trainer import train
    result = train(load_config("configs/tiny.yaml", ["optim.max_steps=10"]))

Run it with `accelerate launch -m train --config CONFIG` (or `vivid train`, or `./launch.sh`). The loss itself
lives in `train/step.py`; checkpoint files in `train/checkpoint.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs, ProjectConfiguration, set_seed
from diffusers import CogVideoXPipeline
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from data_loaders.loader import build_train_loader
from train import checkpoint as ckpt
from train import step as step_lib
from train.caption_embeddings import CaptionEmbeddings, manifest_prompts, text_encoder_signature
from train.config import TINY, TrainConfig
from vivid.io.atomic import write_json_atomic, write_text_atomic
from vivid.model.frame_conv import use_frame_convs
from vivid.model.transformer import format_parameter_report, make_vivid_transformer, parameter_report
from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

logger = logging.getLogger("vivid.train")

METRICS_NAME = "metrics.jsonl"


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    step: int  # the last optimizer step done
    loss: float | None  # its loss (mean over ranks and accumulation)
    checkpoint: Path | None  # the final checkpoint
    output_dir: Path


# --------------------------------------------------------------------------- setup helpers


def distributed_rank_world(accelerator: Accelerator) -> tuple[int, int]:
    """Rank and world size as torch.distributed sees them.

    Under DeepSpeed on the CPU accelerate's state reports one process (main on every rank) unless it is told the
    backend (the trainer names gloo there), while torch.distributed has the real world size; torch.distributed is
    the truth.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        if (rank, world) != (accelerator.process_index, accelerator.num_processes):
            logger.warning(
                "accelerate reports process %d of %d but torch.distributed rank %d of %d; using torch.distributed",
                accelerator.process_index, accelerator.num_processes, rank, world,
            )
        return rank, world
    return accelerator.process_index, accelerator.num_processes


def all_reduce(value: torch.Tensor, op: str = "sum") -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return value


def resolve_pretrained(config: TrainConfig, rank: int) -> str:
    """The base model path; `tiny` is written once into <output_dir>/tiny-model (rank 0, atomically)."""
    if config.model.pretrained != TINY:
        return config.model.pretrained
    path = config.output_dir / "tiny-model"
    if rank == 0 and not (path / "model_index.json").is_file():
        from vivid.model.tiny import write_tiny_model

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-model.", dir=path.parent))
        write_tiny_model(tmp, seed=config.model.tiny_seed)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    ckpt.barrier()
    return str(path)


def build_optimizer(params: list[torch.nn.Parameter], config: TrainConfig, device: torch.device):
    o = config.optim
    kwargs = dict(lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
    if not o.use_8bit_adam:
        return torch.optim.AdamW(params, **kwargs, fused=o.fused_adam or None)
    if device.type != "cuda":
        raise ValueError("optim.use_8bit_adam needs a CUDA GPU (bitsandbytes); set optim.use_8bit_adam=false")
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise ValueError("optim.use_8bit_adam needs bitsandbytes: pip install bitsandbytes") from err
    return bnb.optim.AdamW8bit(params, **kwargs)


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device, offload: bool):
    """With `offload`, keep `module` on the CPU except inside this block (GPU memory for the transformer)."""
    if offload and device.type != "cpu":
        module.to(device)
        try:
            yield module
        finally:
            module.to("cpu")
    else:
        yield module


def step_generator(config: TrainConfig, step: int, micro: int, rank: int, world: int, device: torch.device):
    """A generator seeded from (seed, step, micro-batch, rank) alone: timesteps, noise and VAE posterior samples
    are a function of the step, so a resumed run draws exactly what an uninterrupted one would."""
    index = (step * config.optim.gradient_accumulation_steps + micro) * world + rank
    return torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + index)


# --------------------------------------------------------------------------- logging helpers


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (strict JSON has no NaN / Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class MetricsWriter:
    """metrics.jsonl (rank 0): one strict-JSON object per optimizer step (non-finite numbers as null).

    A resumed run first drops the steps after its checkpoint, so the file always reads as one uninterrupted run;
    a line torn by a crash mid-write (or any other line that is not a JSON object with a step) is dropped then.
    """

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            kept = []
            for number, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    step = json.loads(line)["step"] if line.strip() else None
                except (ValueError, KeyError, TypeError):
                    logger.warning("%s line %d is not a metrics record (torn by a crash?); dropped", path, number)
                    continue
                if isinstance(step, int) and step <= resume_step:
                    kept.append(line)
            write_text_atomic(path, "".join(line + "\n" for line in kept), fsync=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def deepspeed_requested() -> bool:
    """Whether `accelerate launch` was given a DeepSpeed config (it sets ACCELERATE_USE_DEEPSPEED=true)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def deepspeed_on_cpu() -> bool:
    """A DeepSpeed launch on a machine without a GPU: DeepSpeed then runs on its CPU accelerator (DS_ACCELERATOR=cpu
    or its auto-detection), over gloo."""
    return deepspeed_requested() and not torch.cuda.is_available()


@contextlib.contextmanager
def without_zero3_partitioning(accelerator: Accelerator):
    """Load models whole inside this block, also under ZeRO-3.

    accelerate registers its DeepSpeed config with transformers (`HfDeepSpeedConfig`) whatever `zero3_init_flag`
    says, and under ZeRO-3 transformers' `from_pretrained` then builds T5 inside `deepspeed.zero.Init`: its weights
    are partitioned across the ranks (size 0 here), and T5, which runs outside the engine, fails ("'weight' must
    be 2-D"; the "ZeRO-3 breaks T5" that VideoX-Fun reports). Only the transformer goes into the engine, which
    partitions it itself in `accelerator.prepare`.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None) if ckpt.is_deepspeed(accelerator) else None
    if plugin is None or plugin.zero_stage != 3:
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()  # as accelerate had it


def warn_if_deepspeed_without_gpu(accelerator: Accelerator) -> bool:
    """Warn (and return True) when accelerate was launched with a DeepSpeed config, there is no GPU, and DeepSpeed
    did not take over all the same (it normally does, on its CPU accelerator: see `deepspeed_on_cpu`)."""
    requested = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if requested and not torch.cuda.is_available() and accelerator.distributed_type != DistributedType.DEEPSPEED:
        logger.warning(
            "the accelerate config asks for DeepSpeed, but there is no GPU: DeepSpeed (ZeRO stage, offload, its "
            "clipping and accumulation) is ignored and training runs as %s on the CPU",
            accelerator.distributed_type.value,
        )
        return True
    return False


def deepspeed_step_skipped(engine: Any, optimizer: Any) -> bool:
    """Whether DeepSpeed skipped the optimizer step it just ran (gradient overflow / non-finite gradient norm).

    Reads accelerate's `DeepSpeedOptimizerWrapper.step_was_skipped` (the ZeRO optimizer's overflow flag) and the
    engine's `was_step_applied()`.
    """
    if bool(getattr(optimizer, "step_was_skipped", False)):
        return True
    was_applied = getattr(engine, "was_step_applied", None)
    return callable(was_applied) and not was_applied()


def start_wandb(config: TrainConfig, run_id: str | None):
    if config.logging.wandb == "disabled":
        return None
    try:
        import wandb
    except ImportError as err:
        raise ValueError("logging.wandb needs wandb (pip install wandb), or set logging.wandb=disabled") from err
    return wandb.init(
        project=config.logging.project,
        name=config.logging.run_name,
        mode=config.logging.wandb,
        dir=str(config.output_dir),
        config=config.to_dict(),
        id=run_id,
        resume="allow",
    )


# --------------------------------------------------------------------------- validation


def check_caption_store(store: CaptionEmbeddings, pretrained: str, dtype: torch.dtype, max_length: int,
                        dim: int) -> None:
    """The store must come from this model's T5 architecture, in the run's dtype, at the transformer's size."""
    from transformers import AutoConfig

    t5_config = AutoConfig.from_pretrained(pretrained, subfolder="text_encoder")
    store.check_fits(signature=text_encoder_signature(t5_config), dtype=dtype, max_length=max_length, dim=dim)
    logger.info("caption embeddings: %d captions from %s (%s); T5 is not loaded", len(store), store.folder,
                store.meta.model)


def check_captions_stored(store: CaptionEmbeddings, records: list, config: TrainConfig) -> None:
    """DataError (one line) if any prompt the run can use is missing from the store: this rank's training
    captions, the deletion caption, "" (caption dropout, validation's negative prompt), and with validation on,
    the eval manifests' captions."""
    from data_loaders.errors import DataError
    from vivid.constants import DELETE_CAPTION

    prompts = ["", DELETE_CAPTION] + [c for r in records for c in r.captions]
    if config.validation.every_n_steps and config.data.eval_manifests:
        prompts += manifest_prompts(config.data.eval_manifests)[0]
    missing = store.missing(prompts)
    if missing:
        raise DataError(
            f"caption_embeddings {store.folder} lacks {len(missing)} of the run's {len(set(prompts))} captions "
            f"(first: {missing[0]!r}): run `vivid data embed-captions` on the train and eval manifests into it"
        )


@torch.no_grad()
def validate(components: dict, transformer: torch.nn.Module, config: TrainConfig, step: int, device, wandb_run,
             store: CaptionEmbeddings | None = None):
    """Edit held-out eval samples with the current weights; videos to <output_dir>/validation/step-N/ and wandb.
    With `store`, the prompts' embeddings come from it (no T5 is loaded then)."""
    from data_loaders.loader import build_eval_samples
    from vivid.pipeline import VIVIDPipeline

    if not config.data.eval_manifests:
        raise ValueError("validation.every_n_steps > 0 needs data.eval_manifests (held-out samples to edit)")
    samples = build_eval_samples(config.data.eval_manifests, config.data, limit=config.validation.num_samples,
                                 strict=False)
    if not samples:
        logger.warning("validation at step %d: no eval sample could be decoded from %s", step, config.data.eval_manifests)
        return
    pipe = VIVIDPipeline(
        tokenizer=components["tokenizer"],
        text_encoder=components["text_encoder"],
        vae=components["vae"],
        transformer=step_lib.unwrap(transformer),
        scheduler=components["scheduler"],
    )
    pipe.set_progress_bar_config(disable=True)
    out_dir = config.output_dir / "validation" / f"step-{step}"
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = pipe.transformer.training
    pipe.transformer.eval()
    logged = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(on_device(pipe.vae, device, config.offload_encoders))
        if pipe.text_encoder is not None:
            stack.enter_context(on_device(pipe.text_encoder, device, config.offload_encoders))
        for i, sample in enumerate(samples):
            logged.update(_validate_one(pipe, sample, i, config, device, out_dir, store))
    if was_training:
        pipe.transformer.train()
    if wandb_run is not None:
        import wandb

        wandb_run.log({k: wandb.Video(str(p), format="mp4") for k, p in logged.items()}, step=step)
    logger.info("validation at step %d: %d videos in %s", step, len(logged), out_dir)


def _validate_one(pipe, sample, i: int, config: TrainConfig, device, out_dir: Path,
                  store: CaptionEmbeddings | None = None) -> dict[str, Path]:
    from vivid.io.video import write_video

    generator = torch.Generator(device=device).manual_seed(config.validation.seed + i)
    height, width = sample.video.shape[1:3]  # decoded at its training size (bucket): edit at that size
    embeds = {}
    if store is not None:
        embeds = dict(prompt_embeds=store.get([sample.caption], device), negative_prompt_embeds=store.get([""], device))
    frames = pipe(
        video=sample.video, mask=sample.mask, prompt=sample.caption, task=sample.task,
        num_inference_steps=config.validation.steps, guidance_scale=config.validation.guidance,
        generator=generator, output_type="uint8", height=height, width=width, **embeds,
    ).frames[0]
    path = out_dir / f"{i:02d}-{sample.task}-{sample.id}.mp4"
    write_video(path, frames, fps=sample.fps)
    return {f"validation/{i:02d}": path}


# --------------------------------------------------------------------------- train


def train(config: TrainConfig, resume: str | None = None, overwrite: bool = False) -> TrainResult:
    """Train VIVID as `config` says; `resume` = "latest" or a checkpoint folder.

    A fresh run (no `resume`) into an output folder that holds an earlier run (checkpoints or metrics) raises
    `PreviousRunError` before any model work, unless `overwrite`, which moves the earlier run's files into
    `<output_dir>/previous-<n>/` (renames only; nothing is deleted).
    """
    output_dir = config.output_dir
    o = config.optim
    if resume and overwrite:
        raise ValueError("--resume continues the run in the output folder and --overwrite moves it aside: pass one")
    if not resume and not overwrite:  # every rank checks, before the process group (so before any rank moves)
        ckpt.refuse_previous_run(output_dir)
    store = CaptionEmbeddings(config.caption_embeddings) if config.caption_embeddings else None
    accelerator = Accelerator(
        # without a GPU, cpu=True is what makes accelerate see a torchrun launch as MULTI_CPU (gloo) instead of
        # one process per rank with an unused process group; but cpu=True also turns DeepSpeed off, so a DeepSpeed
        # launch keeps cpu=False and DeepSpeed runs on its CPU accelerator (gloo) instead
        cpu=not torch.cuda.is_available() and not deepspeed_requested(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=o.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(output_dir)),
        # DeepSpeed on the CPU: name gloo, or accelerate finds no backend for the CPU and reports one process
        # while DeepSpeed's process group has them all
        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")] if deepspeed_on_cpu() else None,
    )
    rank, world = distributed_rank_world(accelerator)
    is_main = rank == 0
    device = accelerator.device
    set_seed(config.seed + rank)
    if is_main:
        if overwrite:
            ckpt.move_previous_run_aside(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / "config.json", config.to_dict(), fsync=True)
    ckpt.barrier()  # no rank reads the run folder before the previous run is out of the way
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    if is_main:
        warn_if_deepspeed_without_gpu(accelerator)
    use_deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED

    # ---- models: VAE and T5 frozen (no grad), the transformer made VIVID (LoRA + widened patch embedding)
    weight_dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.mixed_precision]
    pretrained = resolve_pretrained(config, rank)
    # with precomputed caption embeddings T5 (and its tokenizer) is never loaded
    without_t5 = {"text_encoder": None, "tokenizer": None} if store is not None else {}
    with without_zero3_partitioning(accelerator):  # T5 and the VAE run outside the DeepSpeed engine: whole
        base = CogVideoXPipeline.from_pretrained(pretrained, dtype=weight_dtype, **without_t5)
    components = dict(
        tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
        transformer=base.transformer, scheduler=base.scheduler,
    )
    vae, text_encoder, tokenizer, scheduler = base.vae, base.text_encoder, base.tokenizer, base.scheduler
    vae.requires_grad_(False).eval()
    use_frame_convs(vae)  # on a CPU (offload_encoders, or no GPU): torch's conv3d is slow at batch size 1
    if text_encoder is not None:
        text_encoder.requires_grad_(False).eval()
    if config.model.vae_slicing:
        vae.enable_slicing()
    if config.model.vae_tiling:
        vae.enable_tiling()
    encoder_device = torch.device("cpu") if config.offload_encoders else device
    vae.to(encoder_device)
    if text_encoder is not None:
        text_encoder.to(encoder_device)
    transformer = make_vivid_transformer(
        base.transformer, config.model.lora_rank, config.model.lora_alpha, config.model.lora_targets
    )
    if config.model.train_base:
        transformer.requires_grad_(True)
    transformer.to(device)
    for p in transformer.parameters():  # trainable weights in fp32, frozen ones in the compute dtype
        if p.requires_grad:
            p.data = p.data.float()
    if config.model.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    if is_main:
        logger.info("transformer: %s", format_parameter_report(parameter_report(transformer)))
    max_text_len = int(transformer.config.max_text_seq_length)
    if store is not None:
        check_caption_store(store, pretrained, weight_dtype, max_text_len, int(transformer.config.text_embed_dim))
    weights_config = VIVIDWeightsConfig(
        base_model=config.model.pretrained if config.model.pretrained != TINY else pretrained,
        lora_rank=config.model.lora_rank,
        lora_alpha=config.model.lora_alpha,
        lora_targets=list(config.model.lora_targets),
        base_trained=config.model.train_base,
        buckets=[list(b) for b in config.data.buckets],
    )

    # ---- optimizer, LR schedule (stepped once per optimizer step; not prepared, see accelerate's
    # AcceleratedScheduler, which would step it once per process), data
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, config, device)
    lr_scheduler = get_scheduler(
        o.lr_scheduler, optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=o.max_steps
    )
    if use_deepspeed:
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = config.data.video_batch_size
        if accelerator.gradient_accumulation_steps != o.gradient_accumulation_steps:
            raise ValueError(
                f"DeepSpeed accumulates {accelerator.gradient_accumulation_steps} micro-batches but the config says "
                f"optim.gradient_accumulation_steps={o.gradient_accumulation_steps}: launch with launch.sh, or pass "
                "--gradient_accumulation_steps to accelerate launch"
            )
        ds_config["gradient_clipping"] = o.max_grad_norm
        if o.gradient_accumulation_steps > 1 and is_main:
            logger.warning(
                "DeepSpeed with optim.gradient_accumulation_steps=%d: a non-finite micro-batch loss cannot be skipped "
                "(DeepSpeed accumulates inside its engine) and stops training with NonFiniteLossError",
                o.gradient_accumulation_steps,
            )
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    # checkpoints hold the trainable weights, optimizer, scheduler and RNG states as safetensors + JSON
    # (train/checkpoint.py), not accelerate's pickles
    training_objects = dict(model=transformer, optimizer=optimizer, scheduler=lr_scheduler)
    loader = build_train_loader(config.data, rank=rank, world_size=world)
    if store is not None:
        check_captions_stored(store, loader.records, config)

    def local_bad_samples() -> int:  # bad samples this rank's loader skipped (this process)
        return sum(loader.bad_sample_counts().values())

    # ---- resume
    start_step, state, bad_offset = 0, {}, 0
    if resume:
        path = ckpt.resolve_resume(resume, output_dir)
        state, loader_state = ckpt.load_checkpoint(accelerator, path, rank, world, **training_objects)
        loader.load_state_dict(loader_state)
        start_step = int(state["step"])
        rank_state = ckpt.read_rank_state(path, rank)
        if "skipped_samples" in rank_state:  # the count so far; this loader restarts from its load-time rejections
            bad_offset = int(rank_state["skipped_samples"]) - local_bad_samples()
        if is_main:
            logger.info("resumed from %s at step %d", path, start_step)
            # checkpoints past the resumed one belong to the abandoned branch: `--resume latest` must not pick them
            ckpt.abandon_checkpoints_after(output_dir, start_step)
        ckpt.barrier()
    metrics = MetricsWriter(output_dir / METRICS_NAME, is_main, start_step if resume else None)
    wandb_run = start_wandb(config, state.get("wandb_run_id")) if is_main else None
    ids_file = None
    if config.logging.log_sample_ids:
        ids_path = output_dir / f"sample_ids_rank{rank}.jsonl"
        if not resume:
            ids_path.unlink(missing_ok=True)
        ids_file = open(ids_path, "a")
    use_text_cache = config.cache_text_embeddings and store is None
    text_cache = step_lib.TextEmbeddingCache(config.text_cache_max_items) if use_text_cache else None
    latent_cache = step_lib.VAELatentCache(config.vae_cache_max_items) if config.cache_vae_latents else None
    zero3 = use_deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3

    def save_weights(folder: Path) -> None:
        model = step_lib.unwrap(transformer)
        if zero3:  # parameters are partitioned: gather the trainable ones on every rank, write on rank 0
            import deepspeed

            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                if is_main:
                    save_vivid_weights(model, folder, weights_config)
        elif is_main:
            save_vivid_weights(model, folder, weights_config)

    def save(step: int, last_loss: float | None, skipped_samples: int) -> Path:
        trainer_state = dict(
            last_loss=last_loss, skipped_steps=skipped_steps, skipped_samples=skipped_samples,
            wandb_run_id=wandb_run.id if wandb_run is not None else state.get("wandb_run_id"),
            config=config.to_dict(),
        )
        return ckpt.save_checkpoint(
            accelerator, output_dir, step, rank, world, trainer_state, loader.state_dict(), save_weights,
            keep_last=config.checkpoint.keep_last, rank_state={"skipped_samples": bad_offset + local_bad_samples()},
            **training_objects,
        )

    # ---- the loop: one iteration = one optimizer step over gradient_accumulation_steps micro-batches
    data = iter(loader)
    step, last_loss, last_checkpoint = start_step, state.get("last_loss"), None
    skipped_steps = int(state.get("skipped_steps", 0))
    bad_in_row = 0
    bar = tqdm(total=o.max_steps, initial=start_step, desc="train", disable=not is_main, dynamic_ncols=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    while step < o.max_steps:
        t0 = time.perf_counter()
        losses, samples, finite = [], 0, True
        for micro in range(o.gradient_accumulation_steps):
            batch = next(data)
            samples += len(batch["id"])
            if ids_file is not None:
                ids_file.write(json.dumps(
                    {"step": step + 1, "micro": micro, "ids": list(batch["id"]), "tasks": list(batch["task"])}
                ) + "\n")
                ids_file.flush()
            generator = step_generator(config, step, micro, rank, world, device)
            with accelerator.accumulate(transformer):
                with on_device(vae, device, config.offload_encoders):
                    latents, conditions = step_lib.encode_batch(vae, batch, generator, latent_cache)
                if store is not None:  # precomputed: no T5
                    embeds = store.get(batch["prompt"], device)
                else:  # T5 goes to the GPU only when some caption is not in the cache
                    needs_t5 = text_cache is None or bool(text_cache.missing(batch["prompt"]))
                    with on_device(text_encoder, device, config.offload_encoders and needs_t5):
                        embeds = step_lib.encode_prompts(
                            tokenizer, text_encoder, batch["prompt"], max_text_len, device, text_cache
                        )
                with accelerator.autocast():
                    loss = step_lib.compute_loss(
                        transformer, scheduler, latents, conditions, embeds, generator, config.mask_loss_weight
                    )
                # decided before backward, on every rank alike (or the gradient all-reduce of the others would hang)
                ok = all_reduce(torch.isfinite(loss.detach()).logical_not().float().reshape(1), "max").item() == 0
                if not ok and use_deepspeed and o.gradient_accumulation_steps > 1:
                    bar.close()
                    raise NonFiniteLossError(
                        f"step {step + 1}, micro-batch {micro}: non-finite loss under DeepSpeed with "
                        f"optim.gradient_accumulation_steps={o.gradient_accumulation_steps}. DeepSpeed accumulates "
                        "inside its engine and steps at its own boundary, so one micro-batch cannot be skipped "
                        "without shifting that boundary; stopped. Last good checkpoint: "
                        f"{ckpt.latest_checkpoint(output_dir) or 'none'}. Lower optim.lr or check the data; with "
                        "optim.gradient_accumulation_steps=1 non-finite steps are skipped instead."
                    )
                if ok and finite:
                    # under DeepSpeed this also clips and steps (or skips on overflow) at the boundary
                    accelerator.backward(loss)
                finite = finite and ok
                losses.append(loss.detach().float())
        lr = lr_scheduler.get_last_lr()[0]  # the learning rate this step uses (read before the scheduler steps)
        # accumulation boundary: clip, then step unless something was non-finite
        grad_norm: float | None = None
        if finite:
            raw_norm = accelerator.clip_grad_norm_(params, o.max_grad_norm)
            if raw_norm is None and hasattr(transformer, "get_global_grad_norm"):  # DeepSpeed clips itself
                raw_norm = transformer.get_global_grad_norm()
            grad_norm = float(raw_norm) if raw_norm is not None else None
            if use_deepspeed:  # the engine has already stepped (or skipped on overflow) inside accelerator.backward
                finite = not deepspeed_step_skipped(transformer, optimizer)
                if finite and grad_norm is not None and not math.isfinite(grad_norm):
                    finite = False  # applied anyway: DeepSpeed checks for overflow only with bf16 / fp16
                    logger.error("step %d: DeepSpeed applied a step with gradient norm %s (no overflow check with "
                                 "mixed_precision=no); the weights may now be non-finite", step + 1, grad_norm)
            else:
                finite = grad_norm is not None and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
            lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        mean_loss = float(all_reduce(torch.stack(losses).mean().reshape(1).to(device)).item() / world)
        counts = all_reduce(torch.tensor([samples, bad_offset + local_bad_samples()], dtype=torch.int64, device=device))
        global_samples, skipped_samples = int(counts[0]), int(counts[1])
        elapsed = time.perf_counter() - t0
        if finite:
            bad_in_row, last_loss = 0, mean_loss
        else:
            bad_in_row += 1
            skipped_steps += 1
            logger.warning("step %d: non-finite loss or gradient (%s); step skipped (%d in a row)",
                           step, mean_loss, bad_in_row)
        record = dict(
            step=step, loss=mean_loss if math.isfinite(mean_loss) else None, lr=lr,
            grad_norm=grad_norm if grad_norm is not None and math.isfinite(grad_norm) else None,
            samples_per_s=global_samples / elapsed, step_time_s=elapsed,
            samples=global_samples, kind=batch.get("kind"), skipped=not finite, skipped_steps=skipped_steps,
            skipped_samples=skipped_samples,
        )
        if torch.cuda.is_available():
            record["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        metrics.write(record)
        bar.update(1)
        if step % config.logging.log_every == 0 or step == o.max_steps:
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", sps=f"{record['samples_per_s']:.2f}")
            if wandb_run is not None:
                wandb_run.log({f"train/{k}": v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
        if bad_in_row >= config.max_bad_steps:
            bar.close()
            kept = ckpt.latest_checkpoint(output_dir)
            raise NonFiniteLossError(
                f"{bad_in_row} non-finite losses in a row (max_bad_steps={config.max_bad_steps}) at step {step}; "
                f"stopped. Last good checkpoint: {kept or 'none'}. Lower optim.lr or check the data."
            )

        # the time limit, decided alike on every rank (rank clocks differ; all must save and stop together)
        out_of_time = bool(o.max_minutes) and all_reduce(
            torch.tensor([float(time.perf_counter() - started >= o.max_minutes * 60)], device=device), "max"
        ).item() > 0
        every = config.checkpoint.every_n_steps
        if finite and ((every and step % every == 0) or step == o.max_steps or out_of_time):
            last_checkpoint = save(step, last_loss, skipped_samples)
        if config.validation.every_n_steps and step % config.validation.every_n_steps == 0:
            if is_main or zero3:  # under ZeRO-3 every rank takes part in the forward passes
                validate(components, transformer, config, step, device, wandb_run if is_main else None, store)
            ckpt.barrier()
        if out_of_time and step < o.max_steps:
            if is_main:
                logger.warning("optim.max_minutes=%g reached: stopped at step %d of %d (resume with a larger limit "
                               "to go on)", o.max_minutes, step, o.max_steps)
            break

    bar.close()
    if latent_cache is not None and is_main:
        seen = latent_cache.hits + latent_cache.misses
        logger.info("VAE latent cache: %d of %d inputs were lookups (%.0f%%), %d cached",
                    latent_cache.hits, seen, 100 * latent_cache.hits / max(seen, 1), len(latent_cache))
    if ids_file is not None:
        ids_file.close()
    if wandb_run is not None:
        wandb_run.finish()
    if last_checkpoint is None:
        last_checkpoint = ckpt.latest_checkpoint(output_dir)
    accelerator.end_training()
    return TrainResult(step=step, loss=last_loss, checkpoint=last_checkpoint, output_dir=output_dir)
