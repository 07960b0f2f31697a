"""Wan2.1 beside CogVideoX at the command line and in the configs: `vivid init-tiny --family wan`, the Wan
training configs (loaded by train.config, family inferred from model.pretrained), launch.sh's ZeRO-3 offload
config."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from train.config import TrainConfig, load_dataclass_config, validate
from vivid.cli import main as vivid_main
from vivid.model.registry import FAMILIES, spec_for
from vivid.model.wan_spec import WAN21_14B_MODEL_ID, WAN21_1_3B_MODEL_ID, WanSpec

from tests.conftest import REPO_ROOT as ROOT
WAN_CONFIGS = {"vivid-wan2.1-1.3b.yaml": WAN21_1_3B_MODEL_ID, "vivid-wan2.1-14b.yaml": WAN21_14B_MODEL_ID}


def test_init_tiny_wan_writes_a_folder_the_registry_reads_as_wan(tmp_path, tiny_wan_model_dir):
    out = tmp_path / "tiny-wan"
    assert vivid_main(["init-tiny", str(out), "--family", "wan"]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["transformer"][1] == "WanTransformer3DModel"
    assert type(spec_for(out)) is WanSpec and type(spec_for(str(out / "transformer"))) is WanSpec
    # seeded: the same bytes as the test suite's tiny Wan (seed 0)
    for name in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (out / name).read_bytes() == (tiny_wan_model_dir / name).read_bytes()


def test_init_tiny_default_family_is_cogvideox_and_families_match_the_registry(tmp_path):
    from vivid.cli.init_tiny import FAMILIES as CLI_FAMILIES

    assert CLI_FAMILIES == FAMILIES
    out = tmp_path / "tiny"
    assert vivid_main(["init-tiny", str(out)]) == 0
    assert spec_for(out).name == "cogvideox"


def test_init_tiny_refuses_a_folder_with_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert vivid_main(["init-tiny", str(out), "--family", "wan"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written, nothing removed
    with pytest.raises(SystemExit):
        vivid_main(["init-tiny", str(tmp_path / "x"), "--family", "sd"])


@pytest.mark.parametrize("name", sorted(WAN_CONFIGS))
def test_wan_configs_load_and_name_a_wan_base(name):
    config = load_dataclass_config(TrainConfig, ROOT / "configs" / name, validator=validate)
    assert config.model.pretrained == WAN_CONFIGS[name]
    # the family comes from the base id (the hub's model_index.json names WanTransformer3DModel); offline here,
    # so check the id is one the Wan specification publishes
    assert config.model.pretrained in {a["model_id"] for a in WanSpec.architectures.values()}
    assert (config.data.frames, config.data.fps) == (WanSpec.native_frames, WanSpec.native_fps)
    assert (config.data.height, config.data.width) == (480, 832)
    assert config.model.lora_rank == WanSpec.lora_rank and config.model.gradient_checkpointing
    assert config.validation.guidance == WanSpec.default_guidance_scale and config.mixed_precision == "bf16"


def test_launch_accepts_the_zero3_offload_config(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"\necho "GPU 1: NVIDIA H100"\n')
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    out = subprocess.run(["bash", str(ROOT / "launch.sh"), "--config", str(ROOT / "configs" / "vivid-wan2.1-14b.yaml"),
                          "--zero", "zero3_offload", "--dry-run"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert str(ROOT / "configs" / "accelerate" / "zero3_offload.yaml") in out.stderr
    assert "2 GPU(s)" in out.stderr
