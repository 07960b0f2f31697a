"""Golden outputs of a vivid tree, to show that a refactoring changed no number.

    python scripts/golden_outputs.py --out golden.safetensors [--work DIR]   # with PYTHONPATH at the tree to test
    python scripts/golden_outputs.py --compare before.safetensors after.safetensors

For both bases on their tiny seeded models (`vivid init-tiny`), it records: the frames of pipeline edits
(`VIVIDPipeline`, output_type "np", a fixed seed, 3 steps, with and without guidance); the losses of 4 training
steps (`python -m train` on configs/tiny.yaml and a synthetic data set from `vivid data synth`); and the losses of
the same run stopped at step 2 and resumed (`--resume latest`) to step 4. Only the public interfaces (the CLI
commands, `VIVIDPipeline`, the train entry point) are used, so the same script runs against an older tree: put that
tree first on PYTHONPATH. `--compare` says "bit-equal" or names the first tensor that differs and where.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FAMILIES = ("cogvideox", "wan")
EDIT_STEPS = 3
TRAIN_STEPS = 4
RESUME_AT = 2


def _tree() -> Path:
    """The root of the vivid tree under test (the one `import vivid` finds)."""
    import vivid

    return Path(vivid.__file__).resolve().parents[1]


def _run(*args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(_tree()), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, *args], cwd=_tree(), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _edits(model: Path, family: str) -> dict:
    import numpy as np
    import torch

    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(str(model))
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.RandomState(0)
    video = rng.randint(0, 255, (9, 64, 96, 3), dtype=np.uint8)
    mask = np.zeros((9, 64, 96), bool)
    mask[:, 16:48, 24:72] = True
    out = {}
    for guidance in (1.0, 5.0):
        frames = pipe(video=video, mask=mask, prompt="a red ball", task="add", num_inference_steps=EDIT_STEPS,
                      guidance_scale=guidance, generator=torch.Generator().manual_seed(0), output_type="np").frames
        out[f"{family}/edit/guidance_{guidance:g}"] = torch.from_numpy(np.ascontiguousarray(frames[0]))
    return out


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def _training(work: Path, model: Path, data: Path, family: str) -> dict:
    import torch

    def train(run: Path, steps: int, *extra: str) -> None:
        _run("-m", "train", "--config", "configs/tiny.yaml", *extra,
             f"data.train_manifests=[{data}/train-*.jsonl]", f"data.eval_manifests=[{data}/eval-*.jsonl]",
             "data.frames=5", "data.height=32", "data.width=64", "data.image_video_ratio=1.0",
             "validation.every_n_steps=0", "logging.wandb=disabled", f"checkpoint.output_dir={run}",
             f"optim.max_steps={steps}", f"checkpoint.every_n_steps={RESUME_AT}", "checkpoint.keep_last=0",
             *([f"model.pretrained={model}"] if family == "wan" else []))

    straight, resumed = work / f"{family}-straight", work / f"{family}-resumed"
    train(straight, TRAIN_STEPS)
    train(resumed, RESUME_AT)
    train(resumed, TRAIN_STEPS, "--resume", "latest")
    return {
        f"{family}/train/losses": torch.tensor(_losses(straight), dtype=torch.float64),
        f"{family}/train/resumed_losses": torch.tensor(_losses(resumed), dtype=torch.float64),
    }


def record(out: Path, work: Path) -> None:
    from safetensors.torch import save_file

    data = work / "synth"
    _run("-m", "vivid.cli", "data", "synth", "--out", str(data), "--videos", "3", "--images", "6", "--eval", "1",
         "--frames", "5")
    tensors = {}
    for family in FAMILIES:
        model = work / f"tiny-{family}"
        _run("-m", "vivid.cli", "init-tiny", str(model), "--family", family, "--seed", "0")
        tensors.update(_edits(model, family))
        tensors.update(_training(work, model, data, family))
    save_file(tensors, str(out), metadata={"tree": str(_tree())})
    print(f"wrote {len(tensors)} tensors to {out}")


def compare(a: Path, b: Path) -> bool:
    """Print "bit-equal" or the first difference; True when bit-equal."""
    import torch
    from safetensors.torch import load_file

    left, right = load_file(str(a)), load_file(str(b))
    if sorted(left) != sorted(right):
        print(f"different tensors: only in {a}: {sorted(set(left) - set(right))}, "
              f"only in {b}: {sorted(set(right) - set(left))}")
        return False
    for name in sorted(left):
        x, y = left[name], right[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            print(f"{name}: {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}")
            return False
        differs = (x != y) & ~(torch.isnan(x) & torch.isnan(y)) if x.is_floating_point() else x != y
        if differs.any():
            where = tuple(int(i) for i in differs.nonzero()[0])
            print(f"{name}: first difference at {where}: {x[where].item()!r} vs {y[where].item()!r} "
                  f"({int(differs.sum())} of {x.numel()} values differ)")
            return False
    print(f"bit-equal: {len(left)} tensors ({', '.join(sorted(left))})")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="the .safetensors file to write")
    p.add_argument("--work", type=Path, help="a folder for the models, data and runs (default: a temporary one)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two golden files")
    args = p.parse_args(argv)
    if args.compare:
        return 0 if compare(*args.compare) else 1
    if args.out is None:
        p.error("give --out FILE or --compare A B")
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=False)
        record(args.out, args.work)
    else:
        with tempfile.TemporaryDirectory() as work:
            record(args.out, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
