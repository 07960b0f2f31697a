"""Paste-back of one large image: the feathered blend of the generated frame into the source (vivid.conditioning.preprocess).

    python benchmarks/bench_paste_back.py                  # 4000x4000, the default dilation for CogVideoX-5B
    python benchmarks/bench_paste_back.py --size 8000 --threads 1

Prints the median seconds of `paste_weights` and `paste_back` for a square image with a mask of a disc and a bar
(a quarter of the image), at the dilation `vivid edit` uses by default for that size (one latent cell at the
source's scale). The feathering is computed from a distance transform, so its cost grows with the pixels only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout

from vivid.conditioning.preprocess import default_paste_dilation, paste_back, paste_weights, working_size  # noqa: E402

NATIVE_AREA = 480 * 720  # CogVideoX-5B


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=4000, help="image side in pixels")
    p.add_argument("--dilation", type=int, default=None, help="pixels (default: vivid edit's for this size)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: OpenCV's)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    n = args.size
    dilation = args.dilation if args.dilation is not None else default_paste_dilation(
        (n, n), working_size(n, n, NATIVE_AREA))
    mask = np.zeros((1, n, n), np.uint8)
    cv2.circle(mask[0], (n // 2, n // 2), n // 5, 1, -1)
    mask[0, n // 8 : n // 4, n // 10 : 9 * n // 10] = 1
    mask = mask.astype(bool)
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (1, n, n, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (1, n, n, 3), dtype=np.uint8)
    weights_s = _median_seconds(lambda: paste_weights(mask, dilation), args.repeats)
    paste_s = _median_seconds(lambda: paste_back(source, generated, mask, dilation), args.repeats)
    result = {"size": f"{n}x{n}", "dilation": dilation, "mask_fraction": round(float(mask.mean()), 3),
              "opencv_threads": cv2.getNumThreads(), "paste_weights_s": round(weights_s, 3),
              "paste_back_s": round(paste_s, 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['size']} image, dilation {dilation} px, mask {result['mask_fraction']:.0%} of it, "
              f"{result['opencv_threads']} OpenCV threads: paste_weights {weights_s:.2f} s, "
              f"paste_back {paste_s:.2f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
