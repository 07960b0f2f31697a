"""The end-of-build summary: videos, clips, entities, images, deletion records, drops by reason, skipped inputs,
time per video per stage. Made from the per-video outcome files, so a resumed build reports the whole data set."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .filters import DROP_REASONS

STAGES = ("shots", "segment", "filters", "captions", "images", "deletion")


@dataclass
class BuildSummary:
    out: str
    videos: int = 0  # inputs
    built: int = 0  # videos processed in this run
    reused: int = 0  # videos finished by an earlier run (resume)
    clips: int = 0
    entities: int = 0  # kept, captioned entities (one video record each)
    images: int = 0
    deletion_records: int = 0
    train_records: int = 0
    eval_records: int = 0
    train_manifests: list[str] = field(default_factory=list)
    eval_manifests: list[str] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input file, why)
    seconds_per_video: dict[str, float] = field(default_factory=dict)  # stage -> mean seconds over built videos

    def to_json(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"vivid data build: {self.videos} video(s) ({self.built} built now, {self.reused} from an earlier run, "
            f"{len(self.skipped)} skipped) -> {self.out}",
            f"  clips {self.clips}, entities {self.entities}, images {self.images}, deletion records {self.deletion_records}",
            f"  records: train {self.train_records} in {len(self.train_manifests)} shard(s), eval {self.eval_records} "
            f"in {len(self.eval_manifests)} shard(s)",
        ]
        drops = Counter(self.drops)
        if drops:
            ordered = [r for r in DROP_REASONS if drops.get(r)] + sorted(set(drops) - set(DROP_REASONS))
            out.append("  dropped: " + ", ".join(f"{r} {drops[r]}" for r in ordered))
        for name, why in self.skipped:
            out.append(f"  skipped {name}: {why}")
        if self.seconds_per_video:
            out.append("  seconds per video: " + ", ".join(
                f"{s} {self.seconds_per_video[s]:.2f}" for s in STAGES if s in self.seconds_per_video))
        return out


def summarize(out: Path, outcomes: list[dict], built_now: set[str], deletion: list[dict]) -> BuildSummary:
    """Aggregate the per-video outcomes (video.json) and deletion outcomes (deletion.json)."""
    s = BuildSummary(out=str(out), videos=len(outcomes))
    drops: Counter = Counter()
    times: dict[str, list[float]] = {}
    for o in outcomes:
        if o["id"] in built_now:
            s.built += 1
        else:
            s.reused += 1
        if o["status"] != "done":
            s.skipped.append((o["source"], o.get("error") or "no entity found"))
        s.clips += o.get("clips", 0)
        s.entities += o.get("entities", 0)
        s.images += o.get("images", 0)
        drops.update(o.get("drops", {}))
        if o["id"] in built_now:
            for stage, sec in o.get("timings", {}).items():
                times.setdefault(stage, []).append(sec)
    for d in deletion:
        s.deletion_records += len(d.get("records", []))
        drops.update(d.get("drops", {}))
        if d.get("video") in built_now and "seconds" in d:
            times.setdefault("deletion", []).append(d["seconds"])
    s.drops = dict(drops)
    s.seconds_per_video = {k: sum(v) / len(v) for k, v in times.items() if v}
    return s
