"""Wan2.1-VACE at the command line (issue 36): `vivid init-tiny --family vace`, `vivid edit` with it (size, frame
count and fps kept), and the one-line refusals of `vivid edit --weights` and `vivid train` with a VACE model."""

from __future__ import annotations

import json

import cv2
import numpy as np

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
