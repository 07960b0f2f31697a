"""Wan2.1-VACE at the command line (issue 36): `vivid init-tiny --family vace`, `vivid edit` with it (size, frame
count and fps kept), and the one-line refusals of `vivid edit --weights` and `vivid train` with a VACE model."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vivid.cli import main as vivid_main
from vivid.io.video import video_info, write_video
from vivid.model.registry import spec_for
from vivid.model.vace_spec import VACESpec

from tests.conftest import REPO_ROOT

REFUSAL = "Wan2.1-VACE is an inference-only base"


def test_init_tiny_vace_writes_a_seeded_folder_the_registry_reads_as_vace(tmp_path, tiny_vace_model_dir, capsys):
    out = tmp_path / "tiny-vace"
    assert vivid_main(["init-tiny", str(out), "--family", "vace"]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "WanVACEPipeline" and index["transformer"][1] == "WanVACETransformer3DModel"
    assert type(spec_for(out)) is VACESpec
    for name in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (out / name).read_bytes() == (tiny_vace_model_dir / name).read_bytes()
    assert vivid_main(["init-tiny", str(tmp_path / "b"), "--family", "vace", "--pretrained", "vae"]) == 2
    assert "random only" in capsys.readouterr().err


def _clip_and_mask(tmp_path):
    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "in.mp4", rng.integers(0, 256, (9, 32, 64, 3), dtype=np.uint8), 10.0,
                        lossless=True)
    m = np.zeros((32, 64), np.uint8)
    m[8:24, 16:40] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), m)
    return video, tmp_path / "mask.png"


def test_vivid_edit_with_vace_keeps_frames_size_and_fps_and_refuses_weights(tiny_vace_model_dir, tmp_path, capsys,
                                                                            caplog):
    video, mask = _clip_and_mask(tmp_path)
    args = ["edit", "--model", str(tiny_vace_model_dir), "--video", str(video), "--mask", str(mask), "--task",
            "delete", "--steps", "1"]
    assert vivid_main([*args, "--out", str(tmp_path / "out.mp4")]) == 0
    n, fps, h, w = video_info(tmp_path / "out.mp4")
    assert (n, h, w) == (9, 32, 64) and abs(fps - 10.0) < 1e-3
    assert "untrained" not in caplog.text  # VACE's weights are published weights, not an untrained VIVID
    capsys.readouterr()
    assert vivid_main([*args, "--out", str(tmp_path / "w.mp4"), "--weights", str(tmp_path / "weights")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and REFUSAL in err[0] and not (tmp_path / "w.mp4").exists()


def test_vivid_train_with_vace_refuses_before_touching_the_run_folder(tiny_vace_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert vivid_main(["train", "--config", str(REPO_ROOT / "configs" / "tiny.yaml"), f"model.pretrained={tiny_vace_model_dir}",
                       f"data.train_manifests=[{tmp_path}/train-*.jsonl]", f"checkpoint.output_dir={run}",
                       "logging.wandb=disabled"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and REFUSAL in err[0] and not run.exists()


def test_vivid_edit_reference_image_with_vace_and_its_refusals(tiny_vace_model_dir, tiny_wan_model_dir, tmp_path,
                                                               capsys, monkeypatch):
    """`--reference-image` (repeatable) with VACE keeps frames, size and fps; a missing or unreadable file is named
    in one line; a base without reference images (Wan2.1) refuses the flag in one line before any model loads."""
    video, mask = _clip_and_mask(tmp_path)
    cv2.imwrite(str(tmp_path / "ref.png"), np.full((48, 20, 3), 200, np.uint8))
    (tmp_path / "text.png").write_text("not an image")
    args = ["edit", "--video", str(video), "--mask", str(mask), "--task", "add", "--prompt", "a red ball", "--steps",
            "1"]
    vace = [*args, "--model", str(tiny_vace_model_dir)]
    assert vivid_main([*vace, "--out", str(tmp_path / "out.mp4"), "--reference-image", str(tmp_path / "ref.png"),
                       "--reference-image", str(tmp_path / "ref.png")]) == 0
    n, fps, h, w = video_info(tmp_path / "out.mp4")
    assert (n, h, w) == (9, 32, 64) and abs(fps - 10.0) < 1e-3
    capsys.readouterr()
    for bad, message in (("missing.png", "missing.png does not exist"),
                         ("text.png", "text.png could not be decoded as an image")):
        assert vivid_main([*vace, "--out", str(tmp_path / "bad.mp4"), "--reference-image",
                           str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--reference-image" in err[0] and message in err[0], err
    from vivid.pipeline import VIVIDPipeline

    monkeypatch.setattr(VIVIDPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    assert vivid_main([*args, "--model", str(tiny_wan_model_dir), "--out", str(tmp_path / "wan.mp4"),
                       "--reference-image", str(tmp_path / "ref.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reference-image" in err[0] and "Wan2.1 takes no reference images" in err[0], err
    assert not (tmp_path / "bad.mp4").exists() and not (tmp_path / "wan.mp4").exists()
