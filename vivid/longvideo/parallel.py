"""`--long-mode parallel`: the keyframes of a long edit (one at each end of every clip) edited together first
(`vivid.longvideo.joint_keyframes`), then every clip generated between its two edited keyframes, so that clips no
longer depend on each other and any process can take any clip (`accelerate launch --num_processes N`: clip i on
rank i mod N, rank 0 assembles).

Weights trained without last-frame KIVE (`kive_last_frame_prob` 0 in their vivid_config) cannot be given a clip's
last frame: there the joint keyframes start each chain of clips (a shot, or the clip plan's first clip) and the
clips of a chain follow one another as in `chain` mode; ranks then take chains in turn.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from vivid.io.images import read_image, write_image
from vivid.longvideo.joint_keyframes import JointKeyframeOptions, edit_keyframes_jointly
from vivid.longvideo.plan import Clip, ClipPlan

logger = logging.getLogger(__name__)

JOINT = "joint"  # a clip end whose keyframe comes from the joint pass (`Clip.key`, `Clip.last_key`)


@dataclass(frozen=True)
class Ranks:
    """This process's place among those editing one video: `rank` of `world`; `barrier` waits for all."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def main(self) -> bool:
        return self.rank == 0


def process_ranks() -> Ranks:
    """The ranks of an `accelerate launch` (or torchrun): a gloo process group from the launcher's environment
    (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT), used only to wait for each other, so it is the same on CPUs and
    GPUs; its timeout is long, as ranks wait while rank 0 edits the keyframes and for the slowest rank's clips.
    One process: rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(days=1))
    return Ranks(dist.get_rank(), dist.get_world_size(), dist.barrier)


def last_frame_kive(pipe: Any) -> bool:
    """Whether the pipeline takes a clip's last frame as a keyframe: weights trained with last-frame KIVE (absent
    from their config: not), or an inference-only base that keeps any frame its mask leaves out (VACE)."""
    spec = getattr(pipe, "spec", None)
    if spec is not None and spec.inference_only:
        return True
    config = getattr(pipe, "vivid_config", None)
    return bool(config is not None and getattr(config, "kive_last_frame_prob", 0.0) > 0)


def joint_trained(pipe: Any) -> bool:
    """Whether the pipeline's weights were trained with joint keyframe training, or need none (an inference-only
    base, VACE, used as published; no VIVID weights config: nothing to say)."""
    spec = getattr(pipe, "spec", None)
    config = getattr(pipe, "vivid_config", None)
    if (spec is not None and spec.inference_only) or config is None:
        return True
    return getattr(config, "joint_keyframe_prob", 0.0) > 0


def parallel_plan(plan: ClipPlan, between_keyframes: bool, keyframe_given: bool) -> ClipPlan:
    """`plan` (a chained edit's) for parallel mode: no one-frame anchor clip (the anchor is a joint keyframe), each
    clip's first frame a joint keyframe (the user's keyframe where given), and with `between_keyframes` its last
    frame too, so that no clip reads another's output; else the clips after a chain's first still follow it."""
    clips: list[Clip] = []
    for clip in plan.clips:
        if clip.anchor_only:
            continue
        key = clip.key
        if key == "none" or (key == "given" and not keyframe_given) or (key == "previous" and between_keyframes):
            key = JOINT
        clips.append(replace(clip, index=len(clips), key=key, last_key=JOINT if between_keyframes else "none"))
    out = ClipPlan(plan.num_frames, plan.max_frames, clips, list(plan.cuts), [], plan.anchor)
    out.boundaries = out.seams()
    return out


def joint_frames(plan: ClipPlan) -> list[int]:
    """The source frames edited in the joint pass: every clip end that takes a joint keyframe."""
    frames = {c.order[0] for c in plan.clips if c.key == JOINT}
    return sorted(frames | {c.order[-1] for c in plan.clips if c.last_key == JOINT})


def keyframe_file(work: Path, frame: int) -> Path:
    return work / f"keyframe_{frame:06d}.png"


def keyframe_names(plan: ClipPlan) -> list[str]:
    """The files the joint pass writes in the work folder."""
    return [keyframe_file(Path(), f).name for f in joint_frames(plan)]


def chains(plan: ClipPlan) -> list[list[Clip]]:
    """The clips in runs that must go in order: a clip that starts from the previous clip's last frame follows
    it; every other clip starts a run (in parallel mode with last-frame KIVE, every clip is one run)."""
    runs: list[list[Clip]] = []
    for clip in plan.clips:
        if clip.key == "previous" and runs:
            runs[-1].append(clip)
        else:
            runs.append([clip])
    return runs


def edit_joint_keyframes(pipe: Any, request: Any, plan: ClipPlan, sampling: dict) -> None:
    """Write the joint keyframes of `plan` into the work folder, unless all are there (a resumed edit). They are
    edited in one joint pass (keyframe j of those with a mask sampled with seed + j), so a partly written set is
    edited again whole: the same keyframes (bit for bit with the same `joint_keyframe_group`: groups of another
    size round differently). The user's keyframe, where a clip starts from it, is a member of the pass (the others
    attend to it; it stays as given). A keyframe frame without mask is the source frame."""
    work, frames, kv_budget = request.work, joint_frames(plan), request.options.kv_budget
    if all(keyframe_file(work, f).is_file() for f in frames):
        return
    sources = request.source.frames(frames)
    masks = request.masks.frames(frames)
    edit = [i for i in range(len(frames)) if masks[i].any()]
    options = JointKeyframeOptions(
        task=request.task, kv_budget=kv_budget, keyframe_group=joint_keyframe_group(pipe, request, plan),
        num_inference_steps=sampling["num_inference_steps"],
        guidance_scale=sampling["guidance_scale"], seed=sampling["seed"],
        negative_prompt=sampling["negative_prompt"] or "", height=sampling["height"], width=sampling["width"],
        paste_back_source=sampling["paste_back_source"], paste_back_dilation=sampling["paste_back_dilation"],
        reference_images=request.reference_images)
    if len(edit) > 1 and not joint_trained(pipe):
        logger.warning("these weights were trained without joint keyframe training (joint_keyframe_prob 0): the "
                       "joint pass's attention to the other keyframes is new to them, and its keyframes may agree "
                       "less than keyframes edited one by one (docs/long_videos.md)")
    logger.info("editing %d keyframes jointly (frames %s)%s", len(edit), ", ".join(str(frames[i]) for i in edit),
                f", {kv_budget} key/value tokens per keyframe" if kv_budget else "")
    given = [request.keyframe] if request.keyframe is not None and any(c.key == "given" for c in plan.clips) else []
    edited = edit_keyframes_jointly(pipe, [sources[i] for i in edit], [masks[i] for i in edit],
                                    [request.prompt] * len(edit), options, given=given) if edit else []
    results = [np.asarray(f) for f in sources]
    for i, frame in zip(edit, edited):
        results[i] = frame
    for frame, image in zip(frames, results):
        write_image(keyframe_file(work, frame), image)


def joint_keyframe_group(pipe: Any, request: Any, plan: ClipPlan) -> int:
    """Keyframes per group in the joint pass: the user's `--keyframe-group`, else as many as a clip has latent
    frames, so that a group holds about one clip's tokens and the pass needs no more activation memory than a
    clip's edit (the long edit's peak then does not grow with the number of keyframes), whatever memory is free;
    being fixed by the plan, it also gives the same keyframes on every run."""
    return request.options.keyframe_group or pipe.spec.latent_frames(plan.max_frames)


def clip_keyframes(
    clip: Clip, request: Any, previous_last: Callable[[], np.ndarray], given: Callable[[], np.ndarray]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(first, last) keyframes of a clip: the user's, the previous clip's last edited frame, or the joint pass's."""
    if clip.key == JOINT:
        first = read_image(keyframe_file(request.work, clip.order[0]), "joint keyframe")
    elif clip.key == "given":
        first = given()
    elif clip.key == "previous":
        first = previous_last()
    else:
        first = None
    last = read_image(keyframe_file(request.work, clip.order[-1]), "joint keyframe") if clip.last_key == JOINT else None
    return first, last
