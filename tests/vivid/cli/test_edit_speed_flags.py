"""`vivid edit`'s speed and memory flags (`vivid.speed` through the CLI's own loading code), on both bases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vivid.cli import main

FLAGS = [
    ["--memory", "group"],
    ["--vae-slicing"],
    ["--attention-backend", "native"],
    ["--fuse-lora"],
    ["--fuse-qkv-projections"],
    ["--compile-repeated-blocks"],
    ["--cache", "first_block_cache"],
    ["--cache", "pyramid_attention_broadcast"],
    ["--cache", "faster_cache"],
    ["--cache", "taylorseer_cache"],
]


@pytest.fixture(scope="module")
def image_and_mask(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    cv2.imwrite(str(folder / "in.png"), np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    cv2.imwrite(str(folder / "mask.png"), mask)
    return folder / "in.png", folder / "mask.png"


@pytest.mark.parametrize("family", ["cogvideox", "wan"], indirect=True)
def test_every_speed_and_memory_flag_edits(family_model_dir, image_and_mask, tmp_path, monkeypatch):
    import vivid.cli.edit as edit_cli
    import vivid.speed as speed

    compiled = []
    real_compile = speed.compile_blocks

    def eager_compile(transformer, mode=None, backend="inductor", fullgraph=False):
        compiled.append(type(transformer).__name__)  # the wiring, without code generation on a shared CPU
        real_compile(transformer, mode, "eager", fullgraph)

    monkeypatch.setattr(speed, "compile_blocks", eager_compile)
    applied = []
    real_apply = edit_cli.apply_speed_options if hasattr(edit_cli, "apply_speed_options") else speed.apply_speed_options

    def spy(pipe, options=None, **overrides):
        applied.append(options)
        return real_apply(pipe, options, **overrides)

    monkeypatch.setattr(speed, "apply_speed_options", spy)
    image, mask = image_and_mask
    wan = family_model_dir.name == "tiny-wan"
    for i, flags in enumerate(FLAGS):
        out = tmp_path / f"o{i}.png"
        code = main(["edit", "--model", str(family_model_dir), "--video", str(image), "--mask", str(mask), "--out",
                     str(out), "--task", "delete", "--steps", "2", "--guidance", "6", *flags])
        if wan and flags[-1] == "faster_cache":  # FasterCache batches guidance; Wan runs it as two calls
            assert code == 2 and not out.exists()
            continue
        assert code == 0 and out.is_file(), flags
    assert [o.memory for o in applied][:1] == ["group_offload"]
    assert [o.cache for o in applied[-4:]] == ["fbc", "pab", "fastercache", "taylorseer"]
    assert applied[4].fuse_qkv and applied[4].merge_lora and applied[2].attention_backend == "native"
    assert compiled and applied[5].compile


@pytest.mark.parametrize("memory", ["model", "sequential"])
def test_offloads_need_a_gpu(tiny_model_dir, image_and_mask, tmp_path, memory, capsys):
    image, mask = image_and_mask
    assert main(["edit", "--model", str(tiny_model_dir), "--video", str(image), "--mask", str(mask), "--out",
                 str(tmp_path / "o.png"), "--task", "delete", "--device", "cpu", "--memory", memory]) == 2
    assert f"--memory {memory} needs a GPU" in capsys.readouterr().err


def test_the_frame_wise_vae_convolutions_only_on_the_cpu(tiny_pipe):
    import copy

    from vivid.model.frame_conv import FrameConv3d, FrameSafeConv3d
    from vivid.speed import match_frame_convs

    vae = copy.deepcopy(tiny_pipe.vae)
    frame_wise = (FrameConv3d, FrameSafeConv3d)
    match_frame_convs(vae, "cpu")
    assert any(isinstance(m, frame_wise) for m in vae.modules())
    match_frame_convs(vae, "cuda:0")  # a GPU: torch's conv3d, not inert CPU subclasses
    assert not any(isinstance(m, frame_wise) for m in vae.modules())
