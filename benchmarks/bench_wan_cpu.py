"""The full-size Wan2.1-T2V-1.3B path on a CPU: the real shapes, random weights, no GPU, no downloads.

    python benchmarks/bench_wan_cpu.py                      # 9x64x96, 2 denoising steps, guidance 5
    python benchmarks/bench_wan_cpu.py --json --out bench_wan_cpu.json
    python benchmarks/bench_wan_cpu.py --size tiny          # the same checks on the tiny Wan (seconds)

Builds the Wan2.1-1.3B transformer (bfloat16) and the Wan VAE (float32, as Wan keeps it) with random weights
(built on the meta device, materialised once: no float32 copy of the transformer on the host), through the Wan
specification (vivid/model/wan_spec.py). UMT5-XXL is not loaded (5.7e9 parameters): the sampler and the loss get
`prompt_embeds` of its shape (512 x 4096) instead. Then:

1. VIVID's transformer (`WanSpec.make_vivid`: widened patch embedding + rank-32 LoRA on attn1 / attn2); its
   trainable and total parameters must equal the published Wan2.1-1.3B count plus the analytic LoRA and
   patch-embedding counts;
2. one edit's model work through the specification: the masked video's conditions (`encode_conditions`), Wan's
   sampler with classifier-free guidance (`sample`: two transformer forwards per step), the decode;
3. one LoRA training step with gradient checkpointing through the trainer's own step (`train.step.TrainStep`:
   VAE encoding and the specification's flow-matching loss, captions precomputed), backward and an AdamW step on
   the trainable weights;
4. the VIVID weights saved (file sizes and keys checked) and loaded back onto the model (equality checked);
5. the Wan2.1-14B transformer built on the meta device: its parameter count against the published one.

Printed: the checks, the seconds of each phase and the process's peak RSS after each (the whole process: weights
included), against the size of the weights. Any failed check exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_5b_cpu import GB, Checks, phase
from bench_wan_gpu import build, cast_trainable_, edit_batch

from train.step import TrainStep
from vivid.model.spec import SamplingSettings, StepHooks, to_unit_range
from vivid.model.configs import WAN21_1_3B_TRANSFORMER, WAN21_14B_TRANSFORMER
from vivid.process_memory import peak_rss_bytes

# Parameters of the published transformers (Wan-AI/Wan2.1-T2V-1.3B-Diffusers, -14B-Diffusers)
WAN21_1_3B_TRANSFORMER_PARAMETERS = 1_418_996_800
WAN21_14B_TRANSFORMER_PARAMETERS = 14_288_491_584
UMT5_XXL_TEXT_LENGTH = 512


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["1.3b", "tiny"], default="1.3b",
                   help="1.3b: the full-size model (about 3.5 GB of weights); tiny: the tiny Wan family (tests)")
    p.add_argument("--frames", type=int, default=9, help="frames, 4k+1")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--steps", type=int, default=2, help="denoising steps of the sampling call")
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--skip-training", action="store_true", help="only the sampling call")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    return p.parse_args(argv)


def expected_counts(transformer_config: dict, published: int, rank: int, lora_targets: int = 4) -> dict[str, int]:
    """Trainable and total parameters of VIVID's Wan transformer, from the architecture alone: every block's
    self-attention (attn1) and cross-attention (attn2) projections are `dim x dim` (Wan projects the text to the
    model width before the blocks)."""
    cfg = transformer_config
    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    patch = int(np.prod(cfg["patch_size"]))
    lora = cfg["num_layers"] * 2 * lora_targets * rank * 2 * dim  # attn1 + attn2, A (r x d) + B (d x r)
    new_patch = dim * 20 * patch  # 20 new input channels (16 masked-video latents + 4 mask)
    patch_embed = dim * 36 * patch + dim  # the widened conv, weight + bias, trained in full
    return {"total": published + new_patch + lora, "trainable": patch_embed + lora, "lora": lora,
            "patch_embed": patch_embed}


def meta_parameter_count(config: dict) -> int:
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        return sum(p.numel() for p in WanTransformer3DModel(**config).parameters())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from vivid.model.configs import TINY_WAN_TRANSFORMER
    from vivid.model.wan_spec import WanSpec

    LORA_RANK, LORA_ALPHA = WanSpec.lora_rank, WanSpec.lora_alpha
    from vivid.model.weights import (
        LORA_WEIGHTS_NAME,
        PATCH_EMBED_WEIGHTS_NAME,
        VIVIDWeightsConfig,
        load_vivid_weights,
        save_vivid_weights,
        vivid_state_dicts,
    )

    spec = WanSpec()
    bf16 = torch.bfloat16
    frames, height, width = args.frames, args.height, args.width
    full = args.size == "1.3b"
    tcfg = WAN21_1_3B_TRANSFORMER if full else TINY_WAN_TRANSFORMER
    check = Checks()
    report: dict = {
        "benchmark": f"Wan2.1-T2V-{'1.3B full size' if full else 'tiny'} on CPU (random weights, transformer bf16, "
                     "VAE fp32)",
        "shape": f"{frames}x{height}x{width}",
        "denoising_steps": args.steps,
        "guidance_scale": args.guidance,
        "threads": torch.get_num_threads(),
        "phases": {},
    }
    published = WAN21_1_3B_TRANSFORMER_PARAMETERS if full else meta_parameter_count(tcfg)
    expected = expected_counts(tcfg, published, LORA_RANK)

    with phase(report, "build (meta -> bf16, random weights)"):
        comps = build(args.size, torch.device("cpu"))
        transformer, vae, scheduler = comps["transformer"], comps["vae"], comps["scheduler"]
        del comps
        check("stock transformer = published parameter count",
              sum(p.numel() for p in transformer.parameters()) == published, f"{published:,}")
        analytic_lora = spec.lora_parameter_count(transformer)
        spec.make_vivid(transformer)
        cast_trainable_(transformer, bf16)  # inference in bf16; training puts the trainable weights in fp32 below
    counts = spec.parameter_report(transformer)
    weights_gb = sum(p.numel() * p.element_size() for p in transformer.parameters()) / GB
    vae_gb = sum(p.numel() * p.element_size() for p in vae.parameters()) / GB
    report["parameters"] = {"trainable": counts["trainable"], "total": counts["total"], "expected": expected}
    report["weights_gb"] = {"transformer": round(weights_gb, 2), "vae": round(vae_gb, 2)}
    check("total parameters", counts["total"] == expected["total"],
          f"{counts['total']:,} (expected {expected['total']:,})")
    check("trainable parameters = LoRA + widened patch embedding", counts["trainable"] == expected["trainable"],
          f"{counts['trainable']:,} (expected {expected['trainable']:,})")
    check("LoRA count = the specification's (peft's name matching)", analytic_lora == expected["lora"],
          f"{analytic_lora:,}")
    kept = transformer._keep_in_fp32_modules
    frozen_dtypes = {p.dtype for n, p in transformer.named_parameters() if not p.requires_grad
                     and not any(m in n for m in kept)}
    kept_dtypes = {p.dtype for n, p in transformer.named_parameters() if any(m in n for m in kept)}
    check("frozen weights bf16, but for diffusers' float32 modules (as from_pretrained loads them)",
          frozen_dtypes == {bf16} and kept_dtypes == {torch.float32},
          f"{sorted(map(str, frozen_dtypes))}; {', '.join(kept)}: {sorted(map(str, kept_dtypes))}")
    rss_after_build = peak_rss_bytes() / GB
    check("no fp32 copy of the frozen weights (peak RSS after build)", rss_after_build < weights_gb + vae_gb + 3,
          f"{rss_after_build:.1f} GB for {weights_gb + vae_gb:.1f} GB of weights")

    gen = torch.Generator().manual_seed(0)
    text_len = UMT5_XXL_TEXT_LENGTH if full else 16
    prompt_embeds = torch.randn(1, text_len, tcfg["text_dim"], generator=gen).to(bf16)  # UMT5-XXL's output shape
    prompt_embeds[:, 20:] = 0  # a 20-token caption: zeros past its length, as WanPipeline pads
    negative_embeds = torch.zeros_like(prompt_embeds)
    batch = edit_batch(frames, height, width)

    transformer.eval()
    step_times: list[float] = []
    last = [0.0]

    def on_step(i, t, tensors):
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    with phase(report, "sampling call (conditions, sampler, decode)"):
        masked_video = to_unit_range(batch["masked_video"])
        conditions = spec.encode_conditions(vae, masked_video, batch["mask"].float())
        last[0] = time.perf_counter()
        settings = SamplingSettings(num_inference_steps=args.steps, guidance_scale=args.guidance,
                                    generator=torch.Generator().manual_seed(0))
        latents = spec.sample(transformer, scheduler, conditions, prompt_embeds, negative_embeds, settings,
                              StepHooks(on_step=on_step))
        with torch.no_grad():
            decoded = spec.decode_latents(vae, latents)
    report["sampling"] = {"latent_shape": list(latents.shape), "output_shape": list(decoded.shape),
                          "step_seconds": [round(s, 2) for s in step_times]}
    check("latent shape", tuple(latents.shape) == spec.latent_shape(1, frames, height, width),
          str(tuple(latents.shape)))
    check("decoded shape", tuple(decoded.shape) == (1, frames, 3, height, width), str(tuple(decoded.shape)))
    check("output finite", bool(torch.isfinite(decoded).all()))
    check("sampler ran every step", len(step_times) == args.steps, f"{len(step_times)} of {args.steps}")
    del latents, decoded, conditions

    if not args.skip_training:
        cast_trainable_(transformer, torch.float32)  # as the trainer does: trainable in fp32, frozen in bf16
        transformer.train()
        transformer.enable_gradient_checkpointing()
        trainable = [p for p in transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=1e-4)
        weights_gb = sum(p.numel() * p.element_size() for p in transformer.parameters()) / GB
        report["weights_gb"]["transformer_for_training"] = round(weights_gb, 2)
        with phase(report, "training step (gradient checkpointing)"):
            step_gen = torch.Generator().manual_seed(1)
            train_step = TrainStep(spec, vae, scheduler, torch.device("cpu"),
                                   captions=lambda prompts, device: prompt_embeds)
            # under autocast, as the trainer's accelerator.autocast() is under bf16
            loss = train_step.loss(transformer, {**batch, "prompt": ["a red ball"]}, step_gen,
                                   torch.autocast("cpu", dtype=bf16))
            loss.backward()
            grads = [p.grad for p in trainable]
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        report["training"] = {"loss": float(loss.detach()), "grad_norm": float(grad_norm)}
        check("loss finite", bool(torch.isfinite(loss.detach())), f"{float(loss.detach()):.4f}")
        check("every trainable weight got a gradient", all(g is not None for g in grads))
        check("gradient norm finite and non-zero", bool(torch.isfinite(grad_norm)) and float(grad_norm) > 0,
              f"{float(grad_norm):.4g}")
        frozen_grads = [n for n, p in transformer.named_parameters() if not p.requires_grad and p.grad is not None]
        check("no gradient on frozen weights", not frozen_grads, ", ".join(frozen_grads[:3]))
        del optimizer, grads, loss

    with phase(report, "save + reload VIVID weights"), tempfile.TemporaryDirectory() as tmp:
        folder = save_vivid_weights(transformer, Path(tmp) / "vivid-weights",
                                    VIVIDWeightsConfig(base_model="Wan-AI/Wan2.1-T2V-1.3B-Diffusers" if full else
                                                       "tiny-wan", lora_rank=LORA_RANK, lora_alpha=LORA_ALPHA))
        saved_config = json.loads((folder / "vivid_config.json").read_text())
        lora, patch = vivid_state_dicts(transformer)
        lora_bytes = sum(v.numel() * v.element_size() for v in lora.values())
        patch_bytes = sum(v.numel() * v.element_size() for v in patch.values())
        sizes = {name: (folder / name).stat().st_size for name in (LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME)}
        report["saved_weights"] = {"files_bytes": sizes, "lora_keys": len(lora), "patch_embed_keys": sorted(patch),
                                   "family": saved_config.get("family")}
        check("vivid_config.json names the wan family", saved_config.get("family") == "wan",
              str(saved_config.get("family")))
        blocks = tcfg["num_layers"]
        check(f"LoRA keys: A and B of 8 projections (attn1 + attn2) x {blocks} blocks", len(lora) == blocks * 8 * 2,
              str(len(lora)))
        check("LoRA values = the LoRA's parameters", sum(v.numel() for v in lora.values()) == expected["lora"])
        check("patch embedding keys", sorted(patch) == ["patch_embedding.bias", "patch_embedding.weight"],
              str(sorted(patch)))
        # safetensors adds only a JSON header to the raw tensor bytes
        check("file sizes = tensor bytes + header", 0 <= sizes[LORA_WEIGHTS_NAME] - lora_bytes < 1 << 20
              and 0 <= sizes[PATCH_EMBED_WEIGHTS_NAME] - patch_bytes < 1 << 16,
              f"LoRA {sizes[LORA_WEIGHTS_NAME] / 2**20:.1f} MiB, patch embedding "
              f"{sizes[PATCH_EMBED_WEIGHTS_NAME] / 2**20:.2f} MiB")
        saved = {k: v.clone() for k, v in {**lora, **patch}.items()}
        with torch.no_grad():  # scramble, then load back onto the same model (no second copy of the base)
            for p in transformer.parameters():
                if p.requires_grad:
                    p.add_(1.0)
        load_vivid_weights(transformer, folder)
        lora2, patch2 = vivid_state_dicts(transformer)
        reloaded = {**lora2, **patch2}
        check("reload equality", saved.keys() == reloaded.keys()
              and all(torch.equal(saved[k], reloaded[k].to(saved[k].dtype)) for k in saved))

    with phase(report, "Wan2.1-14B on the meta device"):
        count_14b = meta_parameter_count(WAN21_14B_TRANSFORMER)
        with torch.device("meta"):
            from diffusers import WanTransformer3DModel

            vivid_14b = spec.make_vivid(WanTransformer3DModel(**WAN21_14B_TRANSFORMER))
        counts_14b = spec.parameter_report(vivid_14b)
        expected_14b = expected_counts(WAN21_14B_TRANSFORMER, WAN21_14B_TRANSFORMER_PARAMETERS, LORA_RANK)
        del vivid_14b
    report["wan2.1_14b"] = {"stock_parameters": count_14b, "vivid_trainable": counts_14b["trainable"],
                            "vivid_total": counts_14b["total"], "expected": expected_14b}
    check("14B stock parameters = published", count_14b == WAN21_14B_TRANSFORMER_PARAMETERS, f"{count_14b:,}")
    check("14B VIVID trainable / total = analytic", counts_14b["trainable"] == expected_14b["trainable"]
          and counts_14b["total"] == expected_14b["total"],
          f"{counts_14b['trainable']:,} / {counts_14b['total']:,}")

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
        w = report["weights_gb"]
        print(f"  weights: transformer {w['transformer']:.2f} GB (bf16; {w.get('transformer_for_training', 0):.2f} GB "
              f"with the trainable weights in fp32), VAE {w['vae']:.2f} GB (fp32)")
        print(f"  sampler step seconds (2 forwards each under guidance): {report['sampling']['step_seconds']}")
        if "training" in report:
            print(f"  training: loss {report['training']['loss']:.4f}, grad norm {report['training']['grad_norm']:.4g}")
        sizes = report["saved_weights"]["files_bytes"]
        print(f"  saved: {', '.join(f'{k} {v:,} B' for k, v in sizes.items())}")
        print(f"  Wan2.1-14B (meta): stock {count_14b:,}, VIVID trainable {counts_14b['trainable']:,} / total "
              f"{counts_14b['total']:,}")
        for name, ph in report["phases"].items():
            print(f"  {name:<46}{ph['seconds']:>9.1f} s   peak RSS {ph['peak_rss_gb']:>6.2f} GB")
        print(f"  checks: {sum(check.results.values())}/{len(check.results)} passed")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
