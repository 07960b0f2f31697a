"""Probe: what joint keyframe training does for `--long-mode parallel`. Trains the demo's recipe (its data, the
pretrained tiny base, last-frame KIVE) once per `--joint-keyframe-prob` value, equal in everything else, for a fixed
number of steps with no time limit, so that the runs compare on a busy CPU too:

    python scripts/joint_keyframe_pair.py --out pair --steps 800 --probs 0 0.5 [--seed 1]
    python benchmarks/bench_long_modes.py --model pair/tiny-cogvideox \
        --weights pair/train-joint0.5-s0/checkpoints/checkpoint-800/vivid-weights --clips 10 --steps 15 --guidance 4

The data set is the demo's of seed 0 whatever `--seed` (which seeds training), so the runs of several seeds share
it. A one-off probe behind docs/long_videos.md, nothing imports it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder: data/, tiny-cogvideox/, train-joint<p>-s<seed>/")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--probs", type=float, nargs="+", default=[0.0, 0.5], help="joint_keyframe_prob of each run")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from data_loaders.synthetic import write_synthetic_dataset
    from train.trainer import train
    from vivid.cli.demo import DemoPlan, train_config
    from vivid.model.tiny import write_tiny_model

    torch.set_num_threads(args.threads)
    plan = DemoPlan(train_steps=args.steps, train_minutes=0)
    data, model = args.out / "data", args.out / "tiny-cogvideox"
    if not (data / "train-00000.jsonl").is_file():
        write_synthetic_dataset(data, videos=plan.videos, images=plan.images, eval_per_task=plan.eval_per_task,
                                seed=0)
    if not (model / "model_index.json").is_file():
        write_tiny_model(model, pretrained="base")
    for prob in args.probs:
        config = train_config(DemoPlan(**{**plan.__dict__, "joint_keyframe_prob": prob}), model, data,
                              args.out / f"train-joint{prob:g}-s{args.seed}", args.seed)
        config.validation.every_n_steps = 0
        start = time.perf_counter()
        result = train(config, overwrite=True)
        print(f"joint_keyframe_prob {prob:g}: step {result.step}, loss {result.loss:.4f}, "
              f"{time.perf_counter() - start:.0f} s, weights {result.checkpoint}/vivid-weights", flush=True)


if __name__ == "__main__":
    main()
