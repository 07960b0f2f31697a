"""Peak memory of `vivid data check` against the number of manifest lines: flat when it streams.

    python benchmarks/bench_manifest_memory.py                  # 100k and 1M lines
    python benchmarks/bench_manifest_memory.py --lines 10000 100000

Writes a manifest of N records: every 100th names a small real clip and mask (checked in full: frames decoded,
mask read), every 10th is invalid JSON, the rest name a missing file (a cheap bad record), so the manifest and
the bad-record report are what grow. Then runs `vivid data check MANIFEST --bad-list FILE` in a fresh process per
size and prints its peak RSS (ru_maxrss of the child), seconds, and the lines of the bad list.
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

REPO = Path(__file__).resolve().parent.parent


def write_manifest(folder: Path, lines: int) -> Path:
    from data_loaders.synthetic import write_synthetic_dataset

    synth = write_synthetic_dataset(folder / "media", videos=1, images=0, size=(32, 48), frames=5, seed=0,
                                    eval_per_task=0)
    record = json.loads(synth.train_manifests[0].read_text().splitlines()[0])
    record.update(media=f"media/{record['media']}", mask=f"media/{record['mask']}", entity_masks=[])
    path = folder / "big.jsonl"
    with open(path, "w") as f:
        for i in range(lines):
            line = {**record, "id": f"r{i:09d}", "captions": [f"caption number {i}"]}
            if i % 10 == 9:
                f.write("not json\n")
                continue
            if i % 100:
                line["media"] = f"missing/{i}.mp4"
            f.write(json.dumps(line) + "\n")
    return path


def peak_rss_of_check(manifest: Path, bad_list: Path) -> tuple[float, float, int]:
    """(peak RSS in MiB, seconds, exit code) of `vivid data check` in a child process."""
    code = ("import resource, sys; from vivid.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "data", "check", str(manifest), "--bad-list", str(bad_list)],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    peak = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_KB"))
    return peak / 1024, seconds, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    rows = []
    if not args.json:
        print(f"{'lines':>10s} {'peak RSS MiB':>13s} {'seconds':>8s} {'bad listed':>10s}")
    for n in args.lines:
        with tempfile.TemporaryDirectory(prefix="vivid-manifest-") as tmp:
            manifest = write_manifest(Path(tmp), n)
            bad_list = Path(tmp) / "bad.txt"
            peak, seconds, rc = peak_rss_of_check(manifest, bad_list)
            listed = sum(1 for _ in open(bad_list)) if bad_list.is_file() else 0
        rows.append(dict(lines=n, peak_rss_mib=round(peak, 1), seconds=round(seconds, 1), bad_listed=listed,
                         exit_code=rc))
        if not args.json:
            print(f"{n:>10d} {peak:>13.1f} {seconds:>8.1f} {listed:>10d}   (exit {rc})")
    if args.json:
        print(json.dumps({"results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
