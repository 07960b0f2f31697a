"""Training paths that only a GPU takes, run for real (benchmarks/gpu_suite.sh runs both checks).

    python benchmarks/check_training_gpu_paths.py --check fp16-overflow [--steps 20]       # on a GPU
    python benchmarks/check_training_gpu_paths.py --check embed-captions --family wan      # cogvideox | wan
    python benchmarks/check_training_gpu_paths.py --check fp16-overflow --device cpu --steps 3   # CI (dry run)

fp16-overflow: `vivid train` on the tiny CogVideoX in fp16 (accelerate's GradScaler) on a synthetic set, with
one gradient made infinite (the step after the first); the run must go on to its last step with that one step
skipped and the scaler's scale halved there. On the CPU accelerate has no fp16 scaler: a CPU
`torch.amp.GradScaler` is attached to the trainer's accelerator instead (the same code path in train/optim.py).

embed-captions: `vivid data embed-captions --device cuda` with the tiny base's text encoder; every caption must be
stored, as CPU tensors equal (to fp32 rounding) to the encoder's output on that device.

Prints one JSON object ({"results": [...]}, one row per check) with --json; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
OVERFLOW_STEP = 1  # the 0-based step whose gradient is made infinite


def synthetic_set(root: Path) -> Path:
    from vivid.cli import main

    data = root / "data"
    if main(["data", "synth", "--out", str(data), "--videos", "3", "--images", "6", "--eval", "1",
             "--frames", "5"]) != 0:
        raise RuntimeError("vivid data synth failed")
    return data


def fp16_overflow(root: Path, device: str, steps: int) -> dict:
    """`steps` fp16 training steps with one forced overflow: (steps done, skipped, scales around the overflow)."""
    import train.run as run
    import train.trainer as trainer
    from train.config import load_config

    data, out = synthetic_set(root), root / "run"
    overrides = [
        f"data.train_manifests=[{data}/train-*.jsonl]", f"data.eval_manifests=[{data}/eval-*.jsonl]",
        "data.frames=5", "data.height=32", "data.width=64", "data.num_workers=0", "validation.every_n_steps=0",
        f"checkpoint.output_dir={out}", "checkpoint.every_n_steps=0", f"optim.max_steps={steps}",
        "logging.wandb=disabled", f"mixed_precision={'fp16' if device == 'cuda' else 'no'}",
    ]
    config = load_config(REPO / "configs" / "tiny.yaml", overrides)
    scales: list[float] = []
    make_accelerator, optimizer_step = run.make_accelerator, trainer.optimizer_step

    def with_cpu_scaler(cfg):  # the CPU stand-in for accelerate's fp16 GradScaler on a GPU
        accelerator = make_accelerator(cfg)
        if accelerator.scaler is None:
            accelerator.native_amp = True
            accelerator.state._mixed_precision = "fp16"
            accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        return accelerator

    def forcing_overflow(accelerator, model, optimizer, scheduler, params, max_norm, finite, step):
        if step == OVERFLOW_STEP:
            next(p for p in params if p.grad is not None).grad.view(-1)[0] = float("inf")
        result = optimizer_step(accelerator, model, optimizer, scheduler, params, max_norm, finite, step)
        scales.append(float(accelerator.scaler.get_scale()))
        return result

    run.make_accelerator, trainer.optimizer_step = with_cpu_scaler, forcing_overflow
    try:
        result = trainer.train(config)
    finally:
        run.make_accelerator, trainer.optimizer_step = make_accelerator, optimizer_step
        if device != "cuda":
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    skipped = [r["step"] for r in records if r["skipped"]]
    ok = (result.step == steps and skipped == [OVERFLOW_STEP + 1]
          and scales[OVERFLOW_STEP] == scales[OVERFLOW_STEP - 1] / 2 and all(math.isfinite(r["loss"]) for r in records))
    return dict(name="fp16_overflow", ok=ok, steps=result.step, skipped_steps=skipped, scales=scales,
                losses=[r["loss"] for r in records])


def embed_captions(root: Path, device: str, family: str) -> dict:
    """`vivid data embed-captions --device DEVICE` with the tiny `family`'s text encoder, checked against it."""
    from train.caption_embeddings import CaptionEmbeddings, manifest_prompts
    from vivid.cli import main
    from vivid.model.registry import spec_for

    if family == "wan":
        from vivid.model.tiny_wan import write_tiny_wan_model as write_model
    else:
        from vivid.model.tiny import write_tiny_model as write_model
    data, model, store_dir = synthetic_set(root), write_model(root / f"tiny-{family}", seed=0), root / "emb"
    manifests = [str(p) for p in sorted(data.glob("*.jsonl"))]
    rc = main(["data", "embed-captions", *manifests, "--model", str(model), "--out", str(store_dir),
               "--dtype", "fp32", "--device", device])
    prompts, _ = manifest_prompts(manifests)
    store = CaptionEmbeddings(store_dir)
    spec = spec_for(model)
    text = spec.load_text_components(model, torch.float32)
    encoder = text["text_encoder"].to(device).eval()
    stored = store.get(prompts)
    direct = spec.encode_prompts(text["tokenizer"], encoder, prompts, store.meta.max_length, device=device).cpu()
    err = float((stored - direct).abs().max())
    ok = rc == 0 and not store.missing(prompts) and stored.device.type == "cpu" and err <= 1e-5
    return dict(name=f"embed_captions_{family}", ok=ok, device=device, captions=len(prompts), max_abs_diff=err)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", choices=["fp16-overflow", "embed-captions"], required=True)
    p.add_argument("--family", choices=["cogvideox", "wan"], default="cogvideox", help="embed-captions' base")
    p.add_argument("--device", default=None, help="default: cuda if there is a GPU, else cpu")
    p.add_argument("--steps", type=int, default=20, help="fp16-overflow: training steps (>= 3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="vivid-gpu-paths-") as tmp:
        if args.check == "fp16-overflow":
            row = fp16_overflow(Path(tmp), device, max(args.steps, 3))
        else:
            row = embed_captions(Path(tmp), device, args.family)
    print(json.dumps({"results": [row]}) if args.json else row)
    return 0 if row["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
