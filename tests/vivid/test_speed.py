"""Every speed and memory option applies to the tiny VIVIDPipeline and it still edits; exact options keep
the output, caches change it only a little."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vivid.speed import SpeedOptions, apply_speed_options, best_attention_backend

STEPS = 6


@pytest.fixture
def make_pipe(tiny_model_dir):
    from vivid.pipeline import VIVIDPipeline

    def make():
        pipe = VIVIDPipeline.from_pretrained(tiny_model_dir)
        pipe.transformer.add_adapter(pipe.spec.lora_config())
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, param in pipe.transformer.named_parameters():
                if "lora_" in name:  # a seeded, trained-looking LoRA (B != 0), so that merging is not a no-op
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return make


def edit(pipe, **kwargs) -> torch.Tensor:
    rng = np.random.RandomState(0)
    video = rng.randint(0, 255, (9, 64, 96, 3), dtype=np.uint8)
    mask = np.zeros((9, 64, 96), bool)
    mask[:, 16:48, 24:72] = True
    out = pipe(video=video, mask=mask, prompt="a red ball", task="add", num_inference_steps=STEPS,
               generator=torch.Generator().manual_seed(0), output_type="latent", **kwargs).frames
    assert torch.isfinite(out).all()
    return out.float()


@pytest.fixture(scope="module")
def baseline_latents():
    return {}


@pytest.fixture
def baseline(make_pipe, baseline_latents):
    if "latents" not in baseline_latents:
        baseline_latents["latents"] = edit(make_pipe())
    return baseline_latents["latents"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(
    "options",
    [
        dict(attention_backend="auto"),
        dict(attention_backend="native"),
        dict(attention_backend="_native_math"),
        dict(merge_lora=True),
        dict(merge_lora=True, fuse_qkv=True, attention_backend="auto"),
        dict(memory="group_offload"),
        dict(compile=True, compile_backend="eager", attention_backend="native"),
    ],
    ids=["auto", "native", "math", "merge", "merge-fuse", "group-offload", "compile-eager"],
)
def test_exact_options_keep_the_output(make_pipe, baseline, options):
    pipe = make_pipe()
    resolved = apply_speed_options(pipe, **options)
    if options.get("attention_backend") == "auto":
        assert resolved.attention_backend == "native"  # CPU
    assert rel(edit(pipe), baseline) < 1e-4


@pytest.mark.parametrize("cache", ["fbc", "pab", "fastercache", "taylorseer"])
def test_caches_change_the_output_only_a_little(make_pipe, baseline, cache):
    pipe = make_pipe()
    # a loose FBC threshold: the random tiny model's first block changes a lot between steps
    apply_speed_options(pipe, SpeedOptions(cache=cache, cache_threshold=0.5, cache_interval=2))
    out = edit(pipe)
    assert 0 < rel(out, baseline) < 0.1  # the cache skipped something, and the result stayed close


def test_vae_tiling_and_slicing_run(make_pipe, baseline):
    pipe = make_pipe()
    apply_speed_options(pipe, vae_tiling=True, vae_tile=(32, 48), vae_tile_overlap=0.5, vae_slicing=True)
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    out = edit(pipe)
    assert out.shape == baseline.shape


def test_guidance_is_one_batched_transformer_call_per_step(make_pipe):
    pipe = make_pipe()
    batches = []
    pipe.transformer.register_forward_hook(lambda m, args, kwargs, out: batches.append(kwargs["hidden_states"].shape[0]),
                                           with_kwargs=True)
    edit(pipe, guidance_scale=6.0)
    assert batches == [2] * STEPS
    batches.clear()
    edit(pipe, guidance_scale=1.0)
    assert batches == [1] * STEPS


def test_bad_options_are_refused(make_pipe):
    pipe = make_pipe()
    with pytest.raises(ValueError, match="merged"):
        apply_speed_options(pipe, fuse_qkv=True)
    with pytest.raises(ValueError, match="cache must be one of"):
        apply_speed_options(make_pipe(), cache="deepcache")
    with pytest.raises(ValueError, match="memory mode"):
        apply_speed_options(make_pipe(), memory="disk")
    with pytest.raises(ValueError, match="GPU"):
        apply_speed_options(make_pipe(), memory="model_offload", device="cpu")
    with pytest.raises(ValueError, match="unknown attention backend"):
        apply_speed_options(make_pipe(), attention_backend="magic")


def test_best_attention_backend_on_cpu():
    assert best_attention_backend("cpu") == "native"


@pytest.mark.slow
def test_inductor_compile_keeps_the_output(make_pipe, baseline):
    pipe = make_pipe()
    apply_speed_options(pipe, compile=True, attention_backend="native")
    assert rel(edit(pipe), baseline) < 1e-3
