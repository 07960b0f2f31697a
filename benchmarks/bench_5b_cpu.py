"""The full-size CogVideoX-5B path on a CPU: the real shapes, random weights, no GPU, no downloads.

    python benchmarks/bench_5b_cpu.py                      # 9x64x96, 2 denoising steps, guidance on
    python benchmarks/bench_5b_cpu.py --json --out bench_5b_cpu.json

Builds the CogVideoX-5B transformer and 3D VAE with random weights directly in bfloat16 (built on the meta
device, materialised once: no float32 copy on the host). T5-XXL is not loaded (it would not fit beside the
transformer in 24 GB): the pipeline receives `prompt_embeds` of T5-XXL's shape (226 x 4096) instead. Then:

1. VIVID's transformer (widened patch embedding + rank-32 LoRA); its trainable and total parameters must equal
   the published CogVideoX-5B count plus the analytic LoRA and patch-embedding counts;
2. one `VIVIDPipeline` call (guidance on, so the transformer runs at batch 2);
3. one LoRA training step with gradient checkpointing through the trainer's own step (`train.step.TrainStep`:
   VAE encoding and the model specification's loss, caption embeddings precomputed), backward and an AdamW step
   on the trainable weights;
4. the VIVID weights saved (file sizes and keys checked) and loaded back onto the model (equality checked).

Printed: the checks, the seconds of each phase and the process's peak RSS after each (the whole process: weights
included), against the bfloat16 size of the weights. Any failed check exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import build_components

from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, COGVIDEOX_5B_TRANSFORMER_PARAMETERS
from vivid.process_memory import peak_rss_bytes

GB = 2**30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=9, help="frames, 4k+1")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--steps", type=int, default=2, help="denoising steps of the pipeline call")
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--skip-training", action="store_true", help="only the pipeline call")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    return p.parse_args(argv)


def expected_counts(rank: int) -> dict[str, int]:
    """Trainable and total parameters of VIVID's 5B transformer, from the architecture alone."""
    cfg = COGVIDEOX_5B_TRANSFORMER
    hidden = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    patch = cfg["patch_size"] ** 2
    lora = cfg["num_layers"] * 4 * rank * 2 * hidden  # to_q, to_k, to_v, to_out.0: A (r x d) + B (d x r)
    new_patch = hidden * 20 * patch  # 20 new input channels (16 masked-video latents + 4 mask)
    patch_embed = hidden * 36 * patch + hidden  # the widened conv, weight + bias, trained in full
    return {
        "total": COGVIDEOX_5B_TRANSFORMER_PARAMETERS + new_patch + lora,
        "trainable": patch_embed + lora,
        "lora": lora,
        "patch_embed": patch_embed,
    }


class Checks:
    def __init__(self) -> None:
        self.results: dict[str, bool] = {}

    def __call__(self, name: str, ok: bool, detail: str = "") -> None:
        self.results[name] = bool(ok)
        print(f"  [{'ok' if ok else 'FAILED'}] {name}{': ' + detail if detail else ''}", file=sys.stderr, flush=True)


def phase(report: dict, name: str):
    """Context manager: wall seconds and the peak RSS so far, recorded under `name`."""

    class _Phase:
        def __enter__(self):
            print(f"-- {name}", file=sys.stderr, flush=True)
            self.t0 = time.perf_counter()

        def __exit__(self, *exc):
            report["phases"][name] = {
                "seconds": round(time.perf_counter() - self.t0, 2),
                "peak_rss_gb": round(peak_rss_bytes() / GB, 2),
            }
            return False

    return _Phase()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from train.step import TrainStep
    from vivid.model.cogvideox_spec import CogVideoXSpec
    from vivid.model.registry import spec_for
    from vivid.model.weights import (
        LORA_WEIGHTS_NAME,
        PATCH_EMBED_WEIGHTS_NAME,
        VIVIDWeightsConfig,
        load_vivid_weights,
        save_vivid_weights,
        vivid_state_dicts,
    )
    from vivid.pipeline import VIVIDPipeline

    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    frames, height, width = args.frames, args.height, args.width
    check = Checks()
    report: dict = {
        "benchmark": "CogVideoX-5B full size on CPU (random weights, bf16)",
        "shape": f"{frames}x{height}x{width}",
        "denoising_steps": args.steps,
        "guidance_scale": args.guidance,
        "threads": torch.get_num_threads(),
        "phases": {},
    }
    LORA_RANK, LORA_ALPHA = CogVideoXSpec.lora_rank, CogVideoXSpec.lora_alpha
    expected = expected_counts(LORA_RANK)

    with phase(report, "build (meta -> bf16, random weights)"):
        comps = build_components("5b", cpu, bf16, text_encoder=False)
        spec = spec_for(comps["transformer"])
        transformer = spec.make_vivid(comps["transformer"])
        vae, scheduler = comps["vae"], comps["scheduler"]
        del comps
        for p in transformer.parameters():  # as the trainer does: trainable weights in fp32, frozen in bf16
            if p.requires_grad:
                p.data = p.data.float()
    counts = spec.parameter_report(transformer)
    weights_gb = sum(p.numel() * p.element_size() for p in transformer.parameters()) / GB
    vae_gb = sum(p.numel() * p.element_size() for p in vae.parameters()) / GB
    report["parameters"] = {"trainable": counts["trainable"], "total": counts["total"], "expected": expected}
    report["weights_gb"] = {"transformer": round(weights_gb, 2), "vae": round(vae_gb, 2)}
    check("total parameters", counts["total"] == expected["total"], f"{counts['total']:,} (expected {expected['total']:,})")
    check("trainable parameters = LoRA + widened patch embedding", counts["trainable"] == expected["trainable"],
          f"{counts['trainable']:,} (expected {expected['trainable']:,})")
    frozen_dtypes = {p.dtype for p in transformer.parameters() if not p.requires_grad}
    check("frozen weights are bf16 only", frozen_dtypes == {bf16}, str(sorted(map(str, frozen_dtypes))))
    rss_after_build = peak_rss_bytes() / GB
    # no fp32 copy of the frozen weights: that alone would add twice the bf16 size
    check("no fp32 copy of the frozen weights (peak RSS after build)", rss_after_build < weights_gb + vae_gb + 3,
          f"{rss_after_build:.1f} GB for {weights_gb + vae_gb:.1f} GB of bf16 weights")

    text_len, text_dim = COGVIDEOX_5B_TRANSFORMER["max_text_seq_length"], COGVIDEOX_5B_TRANSFORMER["text_embed_dim"]
    gen = torch.Generator().manual_seed(0)
    prompt_embeds = torch.randn(1, text_len, text_dim, generator=gen).to(bf16)  # T5-XXL's output shape
    negative_embeds = torch.zeros_like(prompt_embeds)
    rng = np.random.RandomState(0)
    video = rng.randint(0, 256, (frames, height, width, 3), dtype=np.uint8)
    mask = np.zeros((frames, height, width), bool)
    mask[:, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True

    transformer.eval()
    pipe = VIVIDPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    step_times: list[float] = []
    last = [0.0]

    def on_step_end(_pipe, i, t, kwargs):
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now
        return kwargs

    with phase(report, "pipeline call"):
        last[0] = time.perf_counter()
        out = pipe(video=video, mask=mask, task="add", prompt_embeds=prompt_embeds,
                   negative_prompt_embeds=negative_embeds, height=height, width=width,
                   num_inference_steps=args.steps, guidance_scale=args.guidance,
                   generator=torch.Generator().manual_seed(0), output_type="np", callback_on_step_end=on_step_end)
    frames_out = np.asarray(out.frames[0])
    report["pipeline"] = {"output_shape": list(frames_out.shape), "step_seconds": [round(s, 2) for s in step_times]}
    check("pipeline output shape", frames_out.shape == (frames, height, width, 3), str(frames_out.shape))
    check("pipeline output finite", bool(np.isfinite(frames_out.astype(np.float32)).all()))
    check("pipeline ran every step", len(step_times) == args.steps, f"{len(step_times)} of {args.steps}")
    del out, pipe

    if not args.skip_training:
        transformer.train()
        transformer.enable_gradient_checkpointing()
        trainable = [p for p in transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=1e-4)
        masked = video.copy()
        masked[mask] = 0
        batch = {
            "video": torch.from_numpy(video).permute(0, 3, 1, 2)[None].contiguous(),
            "masked_video": torch.from_numpy(masked).permute(0, 3, 1, 2)[None].contiguous(),
            "mask": torch.from_numpy(mask.astype(np.uint8))[None, :, None].contiguous(),
        }
        with phase(report, "training step (gradient checkpointing)"):
            step_gen = torch.Generator().manual_seed(1)
            train_step = TrainStep(spec, vae, scheduler, cpu, captions=lambda prompts, device: prompt_embeds)
            # under autocast, as the trainer's accelerator.autocast() is under bf16
            loss = train_step.loss(transformer, batch | {"prompt": ["a red ball"]}, step_gen,
                                   torch.autocast("cpu", dtype=bf16))
            loss.backward()
            grads = [p.grad for p in trainable]
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        report["training"] = {"loss": float(loss), "grad_norm": float(grad_norm)}
        check("loss finite", bool(torch.isfinite(loss)), f"{float(loss):.4f}")
        check("every trainable weight got a gradient", all(g is not None for g in grads))
        check("gradient norm finite and non-zero", bool(torch.isfinite(grad_norm)) and float(grad_norm) > 0,
              f"{float(grad_norm):.4g}")
        frozen_grads = [n for n, p in transformer.named_parameters() if not p.requires_grad and p.grad is not None]
        check("no gradient on frozen weights", not frozen_grads, ", ".join(frozen_grads[:3]))
        del optimizer, grads, loss

    with phase(report, "save + reload VIVID weights"), tempfile.TemporaryDirectory() as tmp:
        folder = save_vivid_weights(transformer, Path(tmp) / "vivid-weights",
                                    VIVIDWeightsConfig(lora_rank=LORA_RANK, lora_alpha=LORA_ALPHA))
        lora, patch = vivid_state_dicts(transformer)
        lora_bytes = sum(v.numel() * v.element_size() for v in lora.values())
        patch_bytes = sum(v.numel() * v.element_size() for v in patch.values())
        sizes = {name: (folder / name).stat().st_size for name in (LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME)}
        report["saved_weights"] = {"files_bytes": sizes, "lora_keys": len(lora), "patch_embed_keys": sorted(patch)}
        blocks = COGVIDEOX_5B_TRANSFORMER["num_layers"]
        check("LoRA keys: A and B of 4 projections x 42 blocks", len(lora) == blocks * 4 * 2, str(len(lora)))
        check("LoRA values = the LoRA's parameters", sum(v.numel() for v in lora.values()) == expected["lora"])
        check("patch embedding keys", sorted(patch) == ["patch_embed.proj.bias", "patch_embed.proj.weight"],
              str(sorted(patch)))
        # safetensors adds only a JSON header to the raw tensor bytes
        check("file sizes = tensor bytes + header", 0 <= sizes[LORA_WEIGHTS_NAME] - lora_bytes < 1 << 20
              and 0 <= sizes[PATCH_EMBED_WEIGHTS_NAME] - patch_bytes < 1 << 16,
              f"LoRA {sizes[LORA_WEIGHTS_NAME] / 2**20:.1f} MiB, patch embedding "
              f"{sizes[PATCH_EMBED_WEIGHTS_NAME] / 2**20:.2f} MiB")
        saved = {k: v.clone() for k, v in {**lora, **patch}.items()}
        with torch.no_grad():  # scramble, then load back onto the same model (a second 5B would not fit)
            for n, p in transformer.named_parameters():
                if p.requires_grad:
                    p.add_(1.0)
        load_vivid_weights(transformer, folder)
        lora2, patch2 = vivid_state_dicts(transformer)
        reloaded = {**lora2, **patch2}
        check("reload equality", saved.keys() == reloaded.keys()
              and all(torch.equal(saved[k], reloaded[k].to(saved[k].dtype)) for k in saved))

    report["peak_rss_gb"] = round(peak_rss_bytes() / GB, 2)
    report["checks"] = check.results
    report["ok"] = all(check.results.values())
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(f"== {report['benchmark']}: {report['shape']}, {args.steps} steps, guidance {args.guidance}, "
              f"{report['threads']} threads")
        print(f"  parameters: trainable {counts['trainable']:,} / total {counts['total']:,}")
        print(f"  weights (bf16): transformer {weights_gb:.2f} GB, VAE {vae_gb:.2f} GB")
        for name, ph in report["phases"].items():
            print(f"  {name:<42}{ph['seconds']:>9.1f} s   peak RSS {ph['peak_rss_gb']:>6.2f} GB")
        print(f"  checks: {sum(check.results.values())}/{len(check.results)} passed")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
