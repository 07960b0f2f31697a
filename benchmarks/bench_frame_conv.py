"""The CogVideoX VAE on a CPU with torch's conv3d vs vivid's frame-wise conv3d (vivid.model.frame_conv).

    python benchmarks/bench_frame_conv.py                  # the tiny VAE, 9x64x96, 1 thread
    python benchmarks/bench_frame_conv.py --threads 2 --frames 17 --height 128 --width 192

Prints the median milliseconds of VAE encode (one clip, one image, two clips) and decode (one clip) both ways, and
the largest difference between their outputs. A batch of one is what an edit runs; at batch one torch's CPU conv3d
is several times slower per frame than at two.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import TINY_VAE, median  # common also puts the checkout on sys.path
from diffusers import AutoencoderKLCogVideoX

from vivid.model.frame_conv import use_frame_convs


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = AutoencoderKLCogVideoX(**TINY_VAE).eval()
    fast = AutoencoderKLCogVideoX(**TINY_VAE).eval()
    fast.load_state_dict(ref.state_dict())
    use_frame_convs(fast)
    shape = (args.frames, args.height, args.width)
    inputs = {
        f"encode 1 clip {shape}": torch.rand(1, 3, *shape) * 2 - 1,
        "encode 1 image": torch.rand(1, 3, 1, *shape[1:]) * 2 - 1,
        f"encode 2 clips {shape}": torch.rand(2, 3, *shape) * 2 - 1,
    }
    results = []
    with torch.no_grad():
        rows = [(name, lambda vae, x=x: vae.encode(x).latent_dist.mean) for name, x in inputs.items()]
        latents = ref.encode(inputs[f"encode 1 clip {shape}"]).latent_dist.mean
        rows.append((f"decode 1 clip {shape}", lambda vae: vae.decode(latents).sample))
        for name, fn in rows:
            a, ya = timed(lambda: fn(ref), args.repeats)
            b, yb = timed(lambda: fn(fast), args.repeats)
            results.append(dict(name=name, conv3d_ms=a, frame_wise_ms=b, speedup=a / b,
                                max_diff=(ya - yb).abs().max().item()))
    if args.json:
        print(json.dumps(dict(threads=args.threads, repeats=args.repeats, results=results), indent=1))
        return
    print(f"tiny CogVideoX VAE, CPU, {args.threads} thread(s), median of {args.repeats} (ms)")
    print(f"{'':40s} {'conv3d':>9s} {'frame-wise':>11s} {'speed-up':>9s} {'max diff':>9s}")
    for r in results:
        print(f"{r['name']:40s} {r['conv3d_ms']:9.1f} {r['frame_wise_ms']:11.1f} {r['speedup']:8.2f}x "
              f"{r['max_diff']:9.1e}")


if __name__ == "__main__":
    main()
