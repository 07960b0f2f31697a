"""Memory of the joint keyframe pass against the number of keyframes, with and without AAS.

Measured: one denoising forward of K one-frame keyframes through the tiny model of a base under the joint keyframe
attention (vivid.model.keyframe_attention), each (K, mode) in its own process: peak RSS above the loaded model, and
the most key/value tokens held at once by one attention call and the most batch rows one block ran at once (counted
by the processors). Modes: "full" (extended attention over every keyframe, all keyframes in one batch, the per-query
K/V layout of TokenFlow/AdaFlow), "aas" (`--budget` tokens per query keyframe, one batch), and both again in groups
of `--keyframe-group` keyframes ("full-groups", "aas-groups": each block run a group at a time, every group's
queries attending to all keyframes' keys/values).

Analytic (--analytic): the peak bytes of one joint denoising forward of CogVideoX-5B / Wan2.1 at 480p and the most
keyframes that fit in `--gib` GiB, with and without AAS (formula in `joint_pass_bytes`).

    python benchmarks/bench_joint_keyframes.py --family cogvideox --keyframes 8 16 32 64 --size 256
    python benchmarks/bench_joint_keyframes.py --analytic
    python benchmarks/bench_joint_keyframes.py --full-size 5b --family cogvideox --keyframes 16 --height 480 --width 720

Full size (--full-size, the GPU suite's row): the VIVID transformer of CogVideoX-5B or Wan2.1 with random weights in
bf16, one joint forward of K keyframes per mode after a warm-up: its time and peak CUDA memory.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from process_memory import peak_rss_bytes  # noqa: E402
from vivid.flops.counter import architecture, formulas_for  # noqa: E402

BF16 = 2
MIB = 2**20
GIB = 2**30
MODES = ("full", "aas", "full-groups", "aas-groups")
SIZES_480P = {"cogvideox": ("5b", 480, 720), "wan": ("14b", 480, 832), "wan-1.3b": ("1.3b", 480, 832)}


# ----------------------------------------------------------------------------- measured, tiny model
def measure_one(model_dir: str, keyframes: int, mode: str, budget: int | None, group: int, size: int) -> dict:
    """Peak RSS (MiB) of one joint forward of `keyframes` one-frame latents at size x size, above the loaded model."""
    from vivid.model.keyframe_attention import JointAttentionOptions, joint_keyframe_attention
    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(model_dir)
    spec, transformer = pipe.spec, pipe.transformer
    g = torch.Generator().manual_seed(0)
    shape = spec.latent_shape(keyframes, 1, size, size)
    noisy = torch.randn(shape, generator=g)
    conditions = torch.randn((*shape[:2], spec.condition_channels, *shape[3:]), generator=g)
    prompts = torch.randn(keyframes, 8, spec.text_embedding_dim(transformer), generator=g)
    timesteps = torch.full((keyframes,), 500, dtype=torch.long)
    if budget is None:  # one latent frame's video tokens
        _, ph, pw = spec.patch_size(transformer)
        budget = (shape[3] // ph) * (shape[4] // pw)
    loaded = peak_rss_bytes()
    options = JointAttentionOptions(keyframes, None if mode.startswith("full") else budget,
                                    group if mode.endswith("groups") else keyframes)
    with torch.no_grad(), joint_keyframe_attention(transformer, options) as record:
        spec.predict(transformer, noisy, conditions, prompts, timesteps)
    return dict(keyframes=keyframes, mode=mode, peak_mib=round((peak_rss_bytes() - loaded) / MIB, 1),
                kv_tokens_per_query=sorted(record.kv_lengths), peak_kv_tokens=record.peak_kv_tokens,
                peak_rows=record.peak_rows)


def measure(family: str, keyframes: list[int], budget: int | None, group: int, size: int, modes: list[str]
            ) -> list[dict]:
    """Each (K, mode) in a fresh process, so that one peak does not hide the next."""
    from vivid.model.tiny import write_tiny_model
    from vivid.model.tiny_wan import write_tiny_wan_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = write_tiny_model if family == "cogvideox" else write_tiny_wan_model
        model_dir = str(writer(Path(tmp) / "tiny", seed=0))
        for k in keyframes:
            for mode in modes:
                cmd = [sys.executable, __file__, "--one", model_dir, str(k), mode, "--keyframe-group", str(group),
                       "--size", str(size)] + (["--budget", str(budget)] if budget is not None else [])
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


# ----------------------------------------------------------------------------- analytic, published sizes
def joint_pass_bytes(family: str, keyframes: int, budget: int | None, group: int) -> dict:
    """Peak bytes of one joint denoising forward (bf16, inference) of `keyframes` one-frame edits at 480p, its blocks
    run `group` keyframes at a time (the sizes of `vivid.model.keyframe_groups.BlockSizes`, as the pass sizes its
    groups):

        weights  = transformer parameters x 2
        active   = G x [r L (3 D + 2 F) + 2 (L + M) D] x 2   (one group's largest live set in a block: residual,
                   a norm output, the FFN's inner activation and its GELU per row; the gathered keys and values of
                   its query keyframes in one attention call)
        resident = B x (4 L + N) x D x 2, only when G < K        (every row's block input and output, keys and
                   values, and matching features)
    with L = own tokens per keyframe (CogVideoX: 226 text + N video; Wan: N video, text is cross-attention), N the
    video tokens of one latent frame, D the width, F the FFN width, B = r K rows (r = 2 on CogVideoX: guidance
    batched with the prompt; 1 on Wan: two forwards), M = budget with AAS, (K - 1) N without. Fused attention keeps
    no score matrix."""
    from vivid.model.keyframe_groups import BlockSizes

    size, height, width = SIZES_480P[family]
    spec, arch = architecture(size, "wan" if family.startswith("wan") else "cogvideox")
    formulas = formulas_for(spec)
    t = arch["transformer"]
    n = formulas.video_tokens(t, 1, height, width)
    width_d = t["num_attention_heads"] * t["attention_head_dim"]
    if spec.name == "cogvideox":
        ffn, own, rows = 4 * width_d, formulas.text_tokens(arch) + n, 2
    else:
        ffn, own, rows = t["ffn_dim"], n, 1
    others = (keyframes - 1) * n if budget is None else min(budget, (keyframes - 1) * n)
    sizes = BlockSizes(keyframes=keyframes, rows=rows * keyframes, own=own, video=n, width=width_d, ffn=ffn,
                       heads=t["num_attention_heads"], others=others, element=BF16, scores=False)
    g = min(group, keyframes)
    weights = _transformer_parameters(family) * BF16
    active = sizes.group_bytes(g)
    resident = sizes.resident() if g < keyframes else 0
    return dict(tokens_per_frame=n, own_tokens=own, weights=weights, active=active, resident=resident,
                total=weights + active + resident)


@functools.cache
def _transformer_parameters(family: str) -> int:
    """Parameters of the stock transformer, counted on the meta device (no memory, no download)."""
    from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel

    size = SIZES_480P[family][0]
    spec, arch = architecture(size, "wan" if family.startswith("wan") else "cogvideox")
    cls = CogVideoXTransformer3DModel if spec.name == "cogvideox" else WanTransformer3DModel
    with torch.device("meta"):
        model = cls(**arch["transformer"])
    return sum(p.numel() for p in model.parameters())


def most_keyframes(family: str, budget: int | None, group: int | None, limit_bytes: float) -> int:
    """The most keyframes whose joint pass fits in `limit_bytes` (0 when not even one does); `group` None: all
    keyframes in one batch."""
    k = 0
    while joint_pass_bytes(family, k + 1, budget, group or k + 1)["total"] <= limit_bytes and k < 100_000:
        k += 1
    return k


def analytic(gib: float, group: int) -> list[dict]:
    rows = []
    for family in SIZES_480P:
        n = joint_pass_bytes(family, 1, None, 1)["tokens_per_frame"]
        for label, budget, g in (("full, one batch", None, None), ("aas, one batch", n, None),
                                 (f"full, groups of {group}", None, group), (f"aas, groups of {group}", n, group)):
            fit = most_keyframes(family, budget, g, gib * GIB)
            at = joint_pass_bytes(family, max(fit, 1), budget, g or max(fit, 1))
            rows.append(dict(model=family, mode=label, tokens_per_frame=n, fits_in_gib=round(gib, 1),
                             most_keyframes=fit, weights_gib=round(at["weights"] / GIB, 1),
                             active_gib=round(at["active"] / GIB, 1), resident_gib=round(at["resident"] / GIB, 1)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


# ----------------------------------------------------------------------------- full size, random weights (GPU)
def _vivid_transformer(family: str, size: str, device: torch.device):
    """The VIVID transformer of `family` at `size` (tiny, 5b for CogVideoX; tiny, 1.3b, 14b for Wan), random
    weights materialised on `device` in bf16, widened patch embedding and rank-32 LoRA, as the GPU benchmarks
    build them."""
    from bench_wan_gpu import build, cast_trainable_
    from common import new_transformer

    from vivid.model.registry import spec_by_name

    spec = spec_by_name(family)
    if family == "cogvideox":
        transformer = new_transformer(size, device, torch.bfloat16, seed=0)
    else:
        transformer = build(size, device)["transformer"]
    spec.make_vivid(transformer).eval()
    cast_trainable_(transformer, torch.bfloat16)
    return spec, transformer


def full_size(args: argparse.Namespace) -> dict:
    """Time and peak memory of one joint denoising forward (one guidance half) of `--keyframes` one-frame keyframes
    at `--height` x `--width` per mode, after a warm-up forward of the same mode."""
    from common import clock_name, peak_memory, sync, timer

    from vivid.model.keyframe_attention import JointAttentionOptions, joint_keyframe_attention
    from vivid.model.transformer import compute_dtype

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec, transformer = _vivid_transformer(args.family, args.full_size, device)
    k = args.keyframes[0]
    dtype, g = compute_dtype(transformer), torch.Generator().manual_seed(0)
    shape = spec.latent_shape(k, 1, args.height, args.width)
    noisy = torch.randn(shape, generator=g).to(device, dtype)
    conditions = torch.randn((*shape[:2], spec.condition_channels, *shape[3:]), generator=g).to(device, dtype)
    text = transformer.config.get("max_text_seq_length", 512)  # CogVideoX's 226; Wan's UMT5 512
    prompts = torch.randn(k, text, spec.text_embedding_dim(transformer), generator=g).to(device, dtype)
    timesteps = torch.full((k,), 500, dtype=torch.long, device=device)
    _, ph, pw = spec.patch_size(transformer)
    budget = args.budget or (shape[3] // ph) * (shape[4] // pw)
    clock, rows = timer(device), []
    for mode in args.modes:
        options = JointAttentionOptions(k, None if mode.startswith("full") else budget,
                                        args.keyframe_group if mode.endswith("groups") else k)
        row: dict = {"name": mode, "keyframes": k, "kv_budget": options.kv_budget,
                     "keyframe_group": options.keyframe_group}
        with torch.no_grad(), joint_keyframe_attention(transformer, options) as record:
            spec.predict(transformer, noisy, conditions, prompts, timesteps)  # warm-up
            sync(device)
            with peak_memory(device, row):
                t0 = clock()
                spec.predict(transformer, noisy, conditions, prompts, timesteps)
                sync(device)
                row["forward_s"] = clock() - t0
        row.update(peak_kv_tokens=record.peak_kv_tokens, peak_rows=record.peak_rows)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {"benchmark": "joint keyframe pass", "family": args.family, "size": args.full_size,
            "shape": f"{k}x{args.height}x{args.width}", "clock": clock_name(device),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device), "results": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("cogvideox", "wan"), default="cogvideox")
    parser.add_argument("--keyframes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--budget", type=int, default=None, help="AAS tokens per query keyframe (default: one frame's)")
    parser.add_argument("--keyframe-group", type=int, default=4, help="keyframes per group (the *-groups modes)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--size", type=int, default=128, help="keyframe pixels (square) for the tiny model")
    parser.add_argument("--analytic", action="store_true", help="CogVideoX-5B and Wan2.1 at 480p instead")
    parser.add_argument("--gib", type=float, default=80 * 1e9 / GIB, help="memory to fit (default 80 GB)")
    parser.add_argument("--full-size", choices=("tiny", "5b", "1.3b", "14b"), default=None,
                        help="time and peak memory of one joint forward of the VIVID transformer at this size "
                             "(random weights) for --keyframes[0] keyframes, instead of the tiny-model table")
    parser.add_argument("--device", default=None, help="--full-size: default cuda when present")
    parser.add_argument("--height", type=int, default=480, help="--full-size: keyframe height")
    parser.add_argument("--width", type=int, default=720, help="--full-size: keyframe width")
    parser.add_argument("--json", action="store_true", help="--full-size: print one JSON object")
    parser.add_argument("--one", nargs=3, metavar=("MODEL_DIR", "K", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.analytic:
        analytic(args.gib, args.keyframe_group)
        return
    if args.full_size:
        out = full_size(args)
        print(json.dumps(out) if args.json else json.dumps(out, indent=2))
        return
    if args.one:
        model_dir, k, mode = args.one
        torch.set_num_threads(1)
        print(json.dumps(measure_one(model_dir, int(k), mode, args.budget, args.keyframe_group, args.size)))
        return
    measure(args.family, args.keyframes, args.budget, args.keyframe_group, args.size, args.modes)


if __name__ == "__main__":
    main()
