"""Memory of the joint keyframe pass against the number of keyframes, with and without AAS.

Measured: one denoising forward of K one-frame keyframes through the tiny model of a base under the joint keyframe
attention (vivid.model.keyframe_attention), each (K, mode) in its own process: peak RSS above the loaded model, and
the most key/value tokens held at once by one attention call (counted by the processors). Modes: "full" (extended
attention over every keyframe, all queries at once, the per-query K/V layout of TokenFlow/AdaFlow) and "aas"
(`--budget` tokens per query keyframe, `--query-group` query keyframes per call).

Analytic (--analytic): the peak bytes of one joint denoising forward of CogVideoX-5B / Wan2.1 at 480p and the most
keyframes that fit in `--gib` GiB, with and without AAS (formula in `joint_pass_bytes`).

    python benchmarks/bench_joint_keyframes.py --family cogvideox --keyframes 1 2 4 8 16 32
    python benchmarks/bench_joint_keyframes.py --analytic
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
SIZES_480P = {"cogvideox": ("5b", 480, 720), "wan": ("14b", 480, 832), "wan-1.3b": ("1.3b", 480, 832)}


# ----------------------------------------------------------------------------- measured, tiny model
def measure_one(model_dir: str, keyframes: int, mode: str, budget: int | None, query_group: int, size: int) -> dict:
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
    options = (JointAttentionOptions(keyframes, None, keyframes) if mode == "full"
               else JointAttentionOptions(keyframes, budget, query_group))
    with torch.no_grad(), joint_keyframe_attention(transformer, options) as record:
        spec.predict(transformer, noisy, conditions, prompts, timesteps)
    return dict(keyframes=keyframes, mode=mode, peak_mib=round((peak_rss_bytes() - loaded) / MIB, 1),
                kv_tokens_per_query=sorted(record.kv_lengths), peak_kv_tokens=record.peak_kv_tokens)


def measure(family: str, keyframes: list[int], budget: int | None, query_group: int, size: int) -> list[dict]:
    """Each (K, mode) in a fresh process, so that one peak does not hide the next."""
    from vivid.model.tiny import write_tiny_model
    from vivid.model.tiny_wan import write_tiny_wan_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = write_tiny_model if family == "cogvideox" else write_tiny_wan_model
        model_dir = str(writer(Path(tmp) / "tiny", seed=0))
        for k in keyframes:
            for mode in ("full", "aas"):
                cmd = [sys.executable, __file__, "--one", model_dir, str(k), mode, "--query-group", str(query_group),
                       "--size", str(size)] + (["--budget", str(budget)] if budget is not None else [])
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


# ----------------------------------------------------------------------------- analytic, published sizes
def joint_pass_bytes(family: str, keyframes: int, budget: int | None, query_group: int) -> dict:
    """Peak bytes of one joint denoising forward (bf16, inference) of `keyframes` one-frame edits at 480p:

        weights  = transformer parameters x 2
        layer    = B x L x (3 D + 2 F) x 2    (residual stream, a norm output, the attention/FFN input and the FFN's
                                               inner activation and its GELU: the largest live set in a block)
        kv       = c x (L + M) x D x 2 x 2    (gathered keys and values of one attention call)
    with L = own tokens per keyframe (CogVideoX: 226 text + N video; Wan: N video, text is cross-attention), N the
    video tokens of one latent frame, D the width, F the FFN width, B = 2K on CogVideoX (guidance batched with
    the prompt) and K on Wan (two forwards), M = budget and c = query_group with AAS, M = (K - 1) N and c = K
    without (every query keyframe's keys gathered at once). Fused attention keeps no score matrix."""
    size, height, width = SIZES_480P[family]
    spec, arch = architecture(size, "wan" if family.startswith("wan") else "cogvideox")
    formulas = formulas_for(spec)
    t = arch["transformer"]
    n = formulas.video_tokens(t, 1, height, width)
    width_d = t["num_attention_heads"] * t["attention_head_dim"]
    if spec.name == "cogvideox":
        ffn, own, batch = 4 * width_d, formulas.text_tokens(arch) + n, 2 * keyframes
    else:
        ffn, own, batch = t["ffn_dim"], n, keyframes
    others, c = ((budget, query_group) if budget is not None else ((keyframes - 1) * n, keyframes))
    others = min(others, (keyframes - 1) * n)
    weights = _transformer_parameters(family) * BF16
    layer = batch * own * (3 * width_d + 2 * ffn) * BF16
    kv = min(c, keyframes) * (own + others) * width_d * 2 * BF16
    return dict(tokens_per_frame=n, own_tokens=own, weights=weights, layer=layer, kv=kv, total=weights + layer + kv)


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


def most_keyframes(family: str, budget: int | None, query_group: int, limit_bytes: float) -> int:
    """The most keyframes whose joint pass fits in `limit_bytes` (0 when not even one does)."""
    k = 0
    while joint_pass_bytes(family, k + 1, budget, query_group)["total"] <= limit_bytes and k < 100_000:
        k += 1
    return k


def analytic(gib: float, query_group: int) -> list[dict]:
    rows = []
    for family in SIZES_480P:
        n = joint_pass_bytes(family, 1, None, 1)["tokens_per_frame"]
        for label, budget in (("full", None), ("aas, budget = 1 frame", n)):
            fit = most_keyframes(family, budget, query_group, gib * GIB)
            at = joint_pass_bytes(family, max(fit, 1), budget, query_group)
            rows.append(dict(model=family, mode=label, tokens_per_frame=n, fits_in_gib=gib, most_keyframes=fit,
                             weights_gib=round(at["weights"] / GIB, 1), layer_gib=round(at["layer"] / GIB, 1),
                             kv_gib=round(at["kv"] / GIB, 1)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("cogvideox", "wan"), default="cogvideox")
    parser.add_argument("--keyframes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--budget", type=int, default=None, help="AAS tokens per query keyframe (default: one frame's)")
    parser.add_argument("--query-group", type=int, default=4)
    parser.add_argument("--size", type=int, default=128, help="keyframe pixels (square) for the tiny model")
    parser.add_argument("--analytic", action="store_true", help="CogVideoX-5B and Wan2.1 at 480p instead")
    parser.add_argument("--gib", type=float, default=80 * 1e9 / GIB, help="memory to fit (default 80 GB)")
    parser.add_argument("--one", nargs=3, metavar=("MODEL_DIR", "K", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.analytic:
        analytic(args.gib, args.query_group)
        return
    if args.one:
        model_dir, k, mode = args.one
        torch.set_num_threads(1)
        print(json.dumps(measure_one(model_dir, int(k), mode, args.budget, args.query_group, args.size)))
        return
    measure(args.family, args.keyframes, args.budget, args.query_group, args.size)


if __name__ == "__main__":
    main()
