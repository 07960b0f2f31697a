"""One base at full size on a CPU: the real shapes, random weights, no GPU, no downloads.

    python benchmarks/bench_full_size_cpu.py --family cogvideox    # CogVideoX-5B, 9x64x96, 2 steps, guidance 6
    python benchmarks/bench_full_size_cpu.py --family wan          # Wan2.1-T2V-1.3B, the same, guidance 5
    python benchmarks/bench_full_size_cpu.py --family wan --json --out bench_wan.json
    python benchmarks/bench_full_size_cpu.py --family wan --size tiny  # the same checks on the tiny family (seconds)

Builds the base's transformer in bfloat16 (but for the modules diffusers keeps in float32) and its VAE (CogVideoX:
bfloat16; Wan: float32, as Wan keeps it) with random weights, built on the meta device and materialised once: no
float32 copy on the host. The text encoder (T5-XXL, UMT5-XXL) is not loaded (it would not fit beside the 5B
transformer in 24 GB): the pipeline and the loss get `prompt_embeds` of its output shape instead. Then:

1. VIVID's transformer (`spec.make_vivid`: widened patch embedding + rank-32 LoRA): the stock transformer's
   parameters must equal the published count, VIVID's trainable and total ones that plus the analytic LoRA and
   patch-embedding counts;
2. one `VIVIDPipeline` call (guidance on: CogVideoX runs the transformer at batch 2, Wan two forwards per step);
3. one LoRA training step with gradient checkpointing through the trainer's own step (`train.step.TrainStep`: VAE
   encoding and the specification's loss, captions precomputed), backward and an AdamW step on the trainable
   weights (float32; the frozen ones stay bfloat16), under bf16 autocast as the trainer runs;
4. the VIVID weights saved (file sizes and keys checked) and loaded back onto the model (equality checked);
5. the base's other published transformers (Wan2.1-14B) built on the meta device, their parameters counted.

Printed: the checks, the seconds of each phase and the process's peak RSS after each (the whole process: weights
included), against the size of the weights. Any failed check exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench_inference import edit_inputs
from bench_wan_gpu import build as build_wan
from bench_wan_gpu import cast_trainable_, edit_batch
from common import build_components
from process_memory import peak_rss_bytes

from vivid.model.configs import (
    COGVIDEOX_5B_TRANSFORMER_PARAMETERS,
    WAN21_1_3B_TRANSFORMER_PARAMETERS,
    WAN21_14B_TRANSFORMER_PARAMETERS,
)

GB = 2**30


def _build_cogvideox(architecture: str) -> dict:
    comps = build_components(architecture, torch.device("cpu"), torch.bfloat16, text_encoder=False)
    return {name: comps[name] for name in ("transformer", "vae", "scheduler")}


def _build_wan(architecture: str) -> dict:
    return build_wan(architecture, torch.device("cpu"))


@dataclass(frozen=True)
class Base:
    """What the benchmark needs of one base beyond its model specification (`spec.architectures`, its LoRA, its
    patch embedding, its guidance)."""

    build: Callable[[str], dict]  # architecture -> stock transformer (bf16), VAE, scheduler, random, on the CPU
    published_parameters: dict[str, int]  # of the stock transformers, by architecture
    attentions_per_block: int  # the attention layers of a block that carry the LoRA
    text_shape: Callable[[dict], tuple[int, int]]  # architecture -> (tokens, width) of the text encoder's output
    zero_padded_captions: bool  # the stock pipeline zeroes the caption embeddings past the caption's length


BASES = {
    "cogvideox": Base(
        _build_cogvideox, {"5b": COGVIDEOX_5B_TRANSFORMER_PARAMETERS}, 1,
        lambda arch: (arch["transformer"]["max_text_seq_length"], arch["transformer"]["text_embed_dim"]), False,
    ),
    "wan": Base(  # self-attention (attn1) and cross-attention (attn2)
        _build_wan, {"1.3b": WAN21_1_3B_TRANSFORMER_PARAMETERS, "14b": WAN21_14B_TRANSFORMER_PARAMETERS}, 2,
        lambda arch: (arch["text_tokens"], arch["transformer"]["text_dim"]), True,
    ),
}
CAPTION_TOKENS = 20  # the length of the stand-in caption where the base zero-pads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=sorted(BASES), default="cogvideox", help="the base")
    p.add_argument("--size", choices=["full", "tiny"], default="full",
                   help="full: the base's default architecture (CogVideoX-5B, Wan2.1-1.3B); tiny: its tiny family")
    p.add_argument("--frames", type=int, default=9, help="frames, 4k+1")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--steps", type=int, default=2, help="denoising steps of the pipeline call")
    p.add_argument("--guidance", type=float, default=None, help="default: the base's (CogVideoX 6, Wan 5)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--skip-training", action="store_true", help="only the pipeline call")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    return p.parse_args(argv)


def stock_transformer(spec, config: dict) -> torch.nn.Module:
    """The stock transformer of `config` on the meta device (no memory)."""
    import diffusers

    with torch.device("meta"):
        return getattr(diffusers, spec.transformer_class_names[0])(**config)


def expected_counts(spec, base: Base, config: dict, published: int, rank: int) -> dict[str, int]:
    """Trainable and total parameters of VIVID's transformer, from the architecture alone: each targeted
    projection of each attention layer is `dim x dim` (Wan projects the text to the model width before the
    blocks), A (r x d) + B (d x r)."""
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    patch = config["patch_size"] ** 2 if isinstance(config["patch_size"], int) else int(np.prod(config["patch_size"]))
    lora = config["num_layers"] * base.attentions_per_block * len(spec.lora_targets) * rank * 2 * dim
    new_patch = dim * (spec.in_channels - spec.latent_channels) * patch  # masked-video latents + packed mask
    patch_embed = dim * spec.in_channels * patch + dim  # the widened conv, weight + bias, trained in full
    return {"total": published + new_patch + lora, "trainable": patch_embed + lora, "lora": lora,
            "patch_embed": patch_embed}


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


def gigabytes(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / GB


def published_count(spec, base: Base, architecture: str) -> int:
    """The stock transformer's published parameter count; the tiny family's counted on the meta device."""
    if architecture == "tiny":
        return sum(p.numel() for p in stock_transformer(spec, spec.architectures["tiny"]["transformer"]).parameters())
    return base.published_parameters[architecture]


def build_vivid(spec, base: Base, architecture: str, report: dict, check: Checks):
    """Phase 1: the stock transformer, VAE and scheduler, the transformer made VIVID; its parameters checked."""
    config = spec.architectures[architecture]["transformer"]
    published = published_count(spec, base, architecture)
    expected = expected_counts(spec, base, config, published, spec.lora_rank)
    with phase(report, "build (meta -> bf16, random weights)"):
        comps = base.build(architecture)
        transformer, vae, scheduler = comps["transformer"], comps["vae"], comps["scheduler"]
        del comps
        stock = sum(p.numel() for p in transformer.parameters())
        analytic_lora = spec.lora_parameter_count(transformer)
        spec.make_vivid(transformer)
        cast_trainable_(transformer, torch.bfloat16)  # inference in bf16; the training step puts them in fp32
    counts = spec.parameter_report(transformer)
    weights_gb, vae_gb = gigabytes(transformer), gigabytes(vae)
    report["parameters"] = {"stock": stock, "trainable": counts["trainable"], "total": counts["total"],
                            "expected": expected}
    report["weights_gb"] = {"transformer": round(weights_gb, 2), "vae": round(vae_gb, 2)}
    check("stock transformer = published parameter count", stock == published, f"{stock:,} (published {published:,})")
    check("total parameters", counts["total"] == expected["total"],
          f"{counts['total']:,} (expected {expected['total']:,})")
    check("trainable parameters = LoRA + widened patch embedding", counts["trainable"] == expected["trainable"],
          f"{counts['trainable']:,} (expected {expected['trainable']:,})")
    check("LoRA count = the specification's (peft's name matching)", analytic_lora == expected["lora"],
          f"{analytic_lora:,}")
    kept = getattr(transformer, "_keep_in_fp32_modules", None) or ()
    frozen_dtypes = {p.dtype for n, p in transformer.named_parameters()
                     if not p.requires_grad and not any(m in n for m in kept)}
    kept_dtypes = {p.dtype for n, p in transformer.named_parameters() if any(m in n for m in kept)}
    check("frozen weights bf16, but for diffusers' float32 modules (as from_pretrained loads them)",
          frozen_dtypes == {torch.bfloat16} and kept_dtypes <= {torch.float32},
          f"{sorted(map(str, frozen_dtypes))}; {', '.join(kept) or 'none kept'}: {sorted(map(str, kept_dtypes))}")
    rss_after_build = peak_rss_bytes() / GB  # an fp32 copy of the frozen weights alone would add twice their size
    check("no fp32 copy of the frozen weights (peak RSS after build)", rss_after_build < weights_gb + vae_gb + 3,
          f"{rss_after_build:.1f} GB for {weights_gb + vae_gb:.1f} GB of weights")
    return transformer, vae, scheduler, expected


def pipeline_call(transformer, vae, scheduler, prompt_embeds, args, report: dict, check: Checks) -> None:
    """Phase 2: one `VIVIDPipeline` call with guidance on precomputed caption embeddings."""
    from vivid.pipeline import VIVIDPipeline

    frames, height, width = args.frames, args.height, args.width
    video, mask = edit_inputs(frames, height, width)
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
                   negative_prompt_embeds=torch.zeros_like(prompt_embeds), height=height, width=width,
                   num_inference_steps=args.steps, guidance_scale=args.guidance,
                   generator=torch.Generator().manual_seed(0), output_type="np", callback_on_step_end=on_step_end)
    frames_out = np.asarray(out.frames[0])
    report["pipeline"] = {"output_shape": list(frames_out.shape), "step_seconds": [round(s, 2) for s in step_times]}
    check("pipeline output shape", frames_out.shape == (frames, height, width, 3), str(frames_out.shape))
    check("pipeline output finite", bool(np.isfinite(frames_out.astype(np.float32)).all()))
    check("pipeline ran every step", len(step_times) == args.steps, f"{len(step_times)} of {args.steps}")


def training_step(spec, transformer, vae, scheduler, prompt_embeds, args, report: dict, check: Checks) -> None:
    """Phase 3: one LoRA step with gradient checkpointing through the trainer's `TrainStep`."""
    from train.step import TrainStep

    cast_trainable_(transformer, torch.float32)  # as the trainer does: trainable in fp32, frozen in bf16
    transformer.train()
    transformer.enable_gradient_checkpointing()
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=1e-4)
    report["weights_gb"]["transformer_for_training"] = round(gigabytes(transformer), 2)
    batch = edit_batch(args.frames, args.height, args.width)
    with phase(report, "training step (gradient checkpointing)"):
        train_step = TrainStep(spec, vae, scheduler, torch.device("cpu"),
                               captions=lambda prompts, device: prompt_embeds)
        # under autocast, as the trainer's accelerator.autocast() is under bf16
        loss = train_step.loss(transformer, {**batch, "prompt": ["a red ball"]}, torch.Generator().manual_seed(1),
                               torch.autocast("cpu", dtype=torch.bfloat16))
        loss.backward()
        grads = [p.grad for p in trainable]
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss = loss.detach()
    report["training"] = {"loss": float(loss), "grad_norm": float(grad_norm)}
    check("loss finite", bool(torch.isfinite(loss)), f"{float(loss):.4f}")
    check("every trainable weight got a gradient", all(g is not None for g in grads))
    check("gradient norm finite and non-zero", bool(torch.isfinite(grad_norm)) and float(grad_norm) > 0,
          f"{float(grad_norm):.4g}")
    frozen_grads = [n for n, p in transformer.named_parameters() if not p.requires_grad and p.grad is not None]
    check("no gradient on frozen weights", not frozen_grads, ", ".join(frozen_grads[:3]))


def save_and_reload(spec, base: Base, transformer, architecture: str, expected: dict, report: dict,
                    check: Checks) -> None:
    """Phase 4: the VIVID weights saved, checked, scrambled on the model and loaded back."""
    from vivid.model.weights import (
        LORA_WEIGHTS_NAME,
        PATCH_EMBED_WEIGHTS_NAME,
        VIVIDWeightsConfig,
        load_vivid_weights,
        save_vivid_weights,
        vivid_state_dicts,
    )

    with phase(report, "save + reload VIVID weights"), tempfile.TemporaryDirectory() as tmp:
        hub_id = spec.architectures[architecture]["model_id"] or f"tiny-{spec.name}"
        folder = save_vivid_weights(transformer, Path(tmp) / "vivid-weights", VIVIDWeightsConfig(
            base_model=hub_id, lora_rank=spec.lora_rank, lora_alpha=spec.lora_alpha))
        family = json.loads((folder / "vivid_config.json").read_text()).get("family")
        lora, patch = vivid_state_dicts(transformer)
        lora_bytes = sum(v.numel() * v.element_size() for v in lora.values())
        patch_bytes = sum(v.numel() * v.element_size() for v in patch.values())
        sizes = {name: (folder / name).stat().st_size for name in (LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME)}
        report["saved_weights"] = {"files_bytes": sizes, "lora_keys": len(lora), "patch_embed_keys": sorted(patch),
                                   "family": family}
        check(f"vivid_config.json names the {spec.name} family", family == spec.name, str(family))
        blocks = spec.architectures[architecture]["transformer"]["num_layers"]
        projections = base.attentions_per_block * len(spec.lora_targets)
        check(f"LoRA keys: A and B of {projections} projections x {blocks} blocks",
              len(lora) == blocks * projections * 2, str(len(lora)))
        check("LoRA values = the LoRA's parameters", sum(v.numel() for v in lora.values()) == expected["lora"])
        keys = [f"{spec.patch_embedding_name}.bias", f"{spec.patch_embedding_name}.weight"]
        check("patch embedding keys", sorted(patch) == keys, str(sorted(patch)))
        # safetensors adds only a JSON header to the raw tensor bytes
        check("file sizes = tensor bytes + header", 0 <= sizes[LORA_WEIGHTS_NAME] - lora_bytes < 1 << 20
              and 0 <= sizes[PATCH_EMBED_WEIGHTS_NAME] - patch_bytes < 1 << 16,
              f"LoRA {sizes[LORA_WEIGHTS_NAME] / 2**20:.1f} MiB, patch embedding "
              f"{sizes[PATCH_EMBED_WEIGHTS_NAME] / 2**20:.2f} MiB")
        saved = {k: v.clone() for k, v in {**lora, **patch}.items()}
        with torch.no_grad():  # scramble, then load back onto the same model (a second copy of the base would not fit)
            for p in transformer.parameters():
                if p.requires_grad:
                    p.add_(1.0)
        load_vivid_weights(transformer, folder)
        lora2, patch2 = vivid_state_dicts(transformer)
        reloaded = {**lora2, **patch2}
        check("reload equality", saved.keys() == reloaded.keys()
              and all(torch.equal(saved[k], reloaded[k].to(saved[k].dtype)) for k in saved))


def meta_builds(spec, base: Base, architecture: str, report: dict, check: Checks) -> None:
    """Phase 5: the base's other published transformers on the meta device: stock and VIVID parameter counts."""
    report["meta_builds"] = {}
    for other, published in base.published_parameters.items():
        if other == architecture:
            continue
        model = f"{spec.display_name}-{other.upper()}"
        config = spec.architectures[other]["transformer"]
        with phase(report, f"{model} on the meta device"):
            transformer = stock_transformer(spec, config)
            stock = sum(p.numel() for p in transformer.parameters())
            with torch.device("meta"):
                counts = spec.parameter_report(spec.make_vivid(transformer))
            expected = expected_counts(spec, base, config, published, spec.lora_rank)
        report["meta_builds"][model] = {"stock_parameters": stock, "vivid_trainable": counts["trainable"],
                                        "vivid_total": counts["total"], "expected": expected}
        check(f"{model} stock parameters = published", stock == published, f"{stock:,}")
        check(f"{model} VIVID trainable / total = analytic", counts["trainable"] == expected["trainable"]
              and counts["total"] == expected["total"], f"{counts['trainable']:,} / {counts['total']:,}")


def print_summary(report: dict, args) -> None:
    print(f"== {report['benchmark']}: {report['shape']}, {args.steps} steps, guidance {args.guidance}, "
          f"{report['threads']} threads")
    counts, w = report["parameters"], report["weights_gb"]
    print(f"  parameters: trainable {counts['trainable']:,} / total {counts['total']:,}")
    print(f"  weights: transformer {w['transformer']:.2f} GB (bf16; {w.get('transformer_for_training', 0):.2f} GB "
          f"with the trainable weights in fp32), VAE {w['vae']:.2f} GB")
    print(f"  pipeline step seconds: {report['pipeline']['step_seconds']}")
    if "training" in report:
        print(f"  training: loss {report['training']['loss']:.4f}, grad norm {report['training']['grad_norm']:.4g}")
    for model, row in report["meta_builds"].items():
        print(f"  {model} (meta): stock {row['stock_parameters']:,}, VIVID trainable {row['vivid_trainable']:,} / "
              f"total {row['vivid_total']:,}")
    for name, ph in report["phases"].items():
        print(f"  {name:<46}{ph['seconds']:>9.1f} s   peak RSS {ph['peak_rss_gb']:>6.2f} GB")
    print(f"  checks: {sum(report['checks'].values())}/{len(report['checks'])} passed")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from vivid.model.registry import spec_by_name

    base, spec = BASES[args.family], spec_by_name(args.family)
    architecture = spec.default_architecture if args.size == "full" else "tiny"
    args.guidance = spec.default_guidance_scale if args.guidance is None else args.guidance
    model = f"{spec.display_name}-{architecture.upper()}" if args.size == "full" else f"tiny {spec.display_name}"
    check = Checks()
    report: dict = {
        "benchmark": f"{model} on CPU (random weights, bf16)",
        "family": spec.name,
        "architecture": architecture,
        "shape": f"{args.frames}x{args.height}x{args.width}",
        "denoising_steps": args.steps,
        "guidance_scale": args.guidance,
        "threads": torch.get_num_threads(),
        "phases": {},
    }
    transformer, vae, scheduler, expected = build_vivid(spec, base, architecture, report, check)
    tokens, width = base.text_shape(spec.architectures[architecture])
    prompt_embeds = torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    if base.zero_padded_captions:
        prompt_embeds[:, CAPTION_TOKENS:] = 0
    pipeline_call(transformer, vae, scheduler, prompt_embeds, args, report, check)
    if not args.skip_training:
        training_step(spec, transformer, vae, scheduler, prompt_embeds, args, report, check)
    save_and_reload(spec, base, transformer, architecture, expected, report, check)
    meta_builds(spec, base, architecture, report, check)

    report["peak_rss_gb"] = round(peak_rss_bytes() / GB, 2)
    report["checks"] = check.results
    report["ok"] = all(check.results.values())
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print_summary(report, args)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
