"""The VIVID transformer: widening, LoRA, mask packing, weights round trip, full-size parameter counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel

from vivid.conditioning.mask_tensors import erase, kive_substitute, pack_mask
from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, COGVIDEOX_5B_TRANSFORMER_PARAMETERS, TINY_TRANSFORMER
from vivid.model.cogvideox_spec import CogVideoXSpec, rotary_embeddings
from vivid.model.spec import transformer_input
from vivid.model.transformer import parameter_report
from vivid.model.weights import VIVIDWeightsConfig, load_vivid_weights, save_vivid_weights

SPEC = CogVideoXSpec()


def _tiny_transformer(seed: int = 0) -> CogVideoXTransformer3DModel:
    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(**TINY_TRANSFORMER).eval()


def _inputs(transformer, frames_latent=3, h=64, w=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, frames_latent, 16, h // 8, w // 8, generator=g)
    cond = torch.randn(1, frames_latent, 20, h // 8, w // 8, generator=g)
    text = torch.randn(1, transformer.config.max_text_seq_length, transformer.config.text_embed_dim, generator=g)
    rope = rotary_embeddings(transformer, h, w, frames_latent, torch.device("cpu"))
    return noise, cond, text, rope


def test_vivid_transformer_equals_base_at_initialisation():
    base = _tiny_transformer()
    vivid = SPEC.make_vivid(_tiny_transformer())
    noise, cond, text, rope = _inputs(base)
    t = torch.tensor([500])
    with torch.no_grad():
        expected = base(noise, text, t, image_rotary_emb=rope, return_dict=False)[0]
        got = vivid(transformer_input(noise, cond), text, t, image_rotary_emb=rope, return_dict=False)[0]
    assert vivid.patch_embed.proj.in_channels == SPEC.in_channels
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # and the conditions do matter once the new channels are trained
    with torch.no_grad():
        vivid.patch_embed.proj.weight[:, 16:].normal_()
        changed = vivid(transformer_input(noise, cond), text, t, image_rotary_emb=rope, return_dict=False)[0]
    assert (changed - expected).abs().max() > 1e-3


def test_widening_keeps_pretrained_weights_and_zeroes_new_channels():
    t = _tiny_transformer()
    old = t.patch_embed.proj.weight.detach().clone()
    SPEC.widen(t)
    new = t.patch_embed.proj.weight
    assert new.shape[1] == 36 and t.config.in_channels == 36
    assert torch.equal(new[:, :16], old)
    assert torch.count_nonzero(new[:, 16:]) == 0
    SPEC.widen(t)  # idempotent
    assert t.patch_embed.proj.weight.shape[1] == 36


def test_only_lora_and_patch_embedding_train():
    t = SPEC.make_vivid(_tiny_transformer())
    trainable = {n for n, p in t.named_parameters() if p.requires_grad}
    assert trainable, "nothing trainable"
    assert all("lora_" in n or n.startswith("patch_embed.proj.") for n in trainable)
    assert "patch_embed.proj.weight" in trainable
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if "lora_" in n}
    assert targets == {"to_q", "to_k", "to_v", "0"}  # to_out.0
    lora_b = [p for n, p in t.named_parameters() if "lora_B" in n]
    assert all(torch.count_nonzero(p) == 0 for p in lora_b)
    report = parameter_report(t)
    assert 0 < report["trainable"] < report["total"]


def test_pack_mask_on_hand_built_masks():
    # 9 frames -> 3 latent frames; 16x24 pixels -> 2x3 cells
    mask = torch.zeros(1, 9, 1, 16, 24)
    mask[0, 0, 0, 0, 0] = 1  # frame 0, one pixel of cell (0, 0)
    mask[0, 3, 0, 15, 23] = 1  # frame 3 -> latent frame 1, channel 2 ((3 - 1) % 4), cell (1, 2)
    mask[0, 8, 0, 8:16, 8:16] = 1  # frame 8 -> latent frame 2, channel 3, cell (1, 1)
    packed = pack_mask(mask, 4, 8)
    assert packed.shape == (1, 3, 4, 2, 3)
    expected = torch.zeros_like(packed)
    expected[0, 0, :, 0, 0] = 1  # frame 0 repeated in all four channels
    expected[0, 1, 2, 1, 2] = 1
    expected[0, 2, 3, 1, 1] = 1
    assert torch.equal(packed, expected)


def test_pack_mask_rejects_bad_frame_counts():
    with pytest.raises(ValueError, match="4k\\+1"):
        pack_mask(torch.zeros(1, 8, 1, 16, 16), 4, 8)


def test_erase_and_kive():
    video = torch.rand(1, 5, 3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 5, 1, 8, 8)
    mask[:, :, :, 2:4, 2:4] = 1
    masked = erase(video, mask)
    assert torch.all(masked[:, :, :, 2:4, 2:4] == -1)
    assert torch.equal(masked[:, :, :, 5:, 5:], video[:, :, :, 5:, 5:])
    key = torch.rand(3, 8, 8)
    kv, km = kive_substitute(masked, mask, key)
    assert torch.equal(kv[0, 0], key) and torch.equal(kv[:, 1:], masked[:, 1:])
    assert km[:, 0].sum() == 0 and torch.equal(km[:, 1:], mask[:, 1:])


def test_weights_round_trip_is_exact(tmp_path):
    source = SPEC.make_vivid(_tiny_transformer(seed=0))
    with torch.no_grad():
        for p in source.parameters():
            if p.requires_grad:
                p.normal_()
    save_vivid_weights(source, tmp_path / "w", VIVIDWeightsConfig(base_model="some/base"))
    assert sorted(f.name for f in (tmp_path / "w").iterdir()) == [
        "patch_embed.safetensors",
        "pytorch_lora_weights.safetensors",
        "vivid_config.json",
    ]
    target = _tiny_transformer(seed=0)
    config = load_vivid_weights(target, tmp_path / "w")
    assert config.base_model == "some/base" and config.lora_rank == SPEC.lora_rank
    src, dst = dict(source.named_parameters()), dict(target.named_parameters())
    assert src.keys() == dst.keys()
    for name in src:
        assert torch.equal(src[name], dst[name]), name
    noise, cond, text, rope = _inputs(source)
    with torch.no_grad():
        a = source(transformer_input(noise, cond), text, torch.tensor([10]), image_rotary_emb=rope).sample
        b = target(transformer_input(noise, cond), text, torch.tensor([10]), image_rotary_emb=rope).sample
    assert torch.equal(a, b)


def test_trained_base_round_trip_is_exact(tmp_path):
    """`base_trained` weights (tiny models trained from scratch) carry every base weight: a fresh base with other
    random weights becomes the trained model exactly."""
    source = SPEC.make_vivid(_tiny_transformer(seed=0))
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    save_vivid_weights(source, tmp_path / "w", VIVIDWeightsConfig(base_trained=True))
    assert (tmp_path / "w" / "transformer.safetensors").is_file()
    target = _tiny_transformer(seed=1)
    assert load_vivid_weights(target, tmp_path / "w").base_trained
    src, dst = dict(source.state_dict()), dict(target.state_dict())
    assert src.keys() == dst.keys()
    for name in src:
        assert torch.equal(src[name], dst[name]), name

    (tmp_path / "w" / "transformer.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="transformer.safetensors not found"):
        load_vivid_weights(_tiny_transformer(), tmp_path / "w")
    other = SPEC.make_vivid(CogVideoXTransformer3DModel(**dict(TINY_TRANSFORMER, num_layers=1)))
    save_vivid_weights(other, tmp_path / "w1", VIVIDWeightsConfig(base_trained=True))
    with pytest.raises(ValueError, match="base weights do not fit the model"):
        load_vivid_weights(_tiny_transformer(), tmp_path / "w1")


def test_module_prefixes_are_stripped_on_load(tmp_path):
    from safetensors.torch import load_file, save_file

    source = SPEC.make_vivid(_tiny_transformer())
    save_vivid_weights(source, tmp_path / "w", VIVIDWeightsConfig())
    lora = load_file(tmp_path / "w" / "pytorch_lora_weights.safetensors")
    assert not any(k.startswith("module.") for k in lora)
    save_file({f"module.{k}": v for k, v in lora.items()}, tmp_path / "w" / "pytorch_lora_weights.safetensors")
    load_vivid_weights(_tiny_transformer(), tmp_path / "w")


def test_loading_onto_the_wrong_base_fails_clearly(tmp_path):
    source = SPEC.make_vivid(_tiny_transformer())
    save_vivid_weights(source, tmp_path / "w", VIVIDWeightsConfig())
    other = CogVideoXTransformer3DModel(**dict(TINY_TRANSFORMER, num_attention_heads=2))
    with pytest.raises(ValueError, match="patch embedding"):
        load_vivid_weights(other, tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="vivid_config.json"):
        load_vivid_weights(_tiny_transformer(), tmp_path)


def _fake_hub(monkeypatch, snapshot: Path | None, calls: list):
    """Replace huggingface_hub.snapshot_download: record the call, return `snapshot` or fail like the hub."""
    import huggingface_hub

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if snapshot is None:
            raise huggingface_hub.errors.RepositoryNotFoundError(f"404 Client Error: Repository Not Found: {repo_id}")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


@pytest.mark.parametrize("offline", [True, False])
def test_weights_given_as_a_hub_repo_id_are_downloaded(tmp_path, monkeypatch, offline):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    source = SPEC.make_vivid(_tiny_transformer(seed=0), rank=4, alpha=4)
    with torch.no_grad():
        for p in source.parameters():
            if p.requires_grad:
                p.normal_()
    save_vivid_weights(source, tmp_path / "snapshot", VIVIDWeightsConfig(lora_rank=4, lora_alpha=4))
    calls = []
    _fake_hub(monkeypatch, tmp_path / "snapshot", calls)
    target = _tiny_transformer(seed=0)
    assert load_vivid_weights(target, "someone/vivid-weights").lora_rank == 4
    assert VIVIDWeightsConfig.load("someone/vivid-weights").lora_alpha == 4
    repo, kwargs = calls[0]
    assert repo == "someone/vivid-weights" and kwargs["local_files_only"] is offline
    assert sorted(kwargs["allow_patterns"]) == ["patch_embed.safetensors", "pytorch_lora_weights.safetensors",
                                                "transformer.safetensors", "vivid_config.json",
                                                "vivid_manifest.json"]
    src, dst = dict(source.named_parameters()), dict(target.named_parameters())
    for name in src:
        assert torch.equal(src[name], dst[name]), name


def test_weights_that_are_neither_a_folder_nor_a_repo_fail_clearly(tmp_path, monkeypatch):
    calls = []
    _fake_hub(monkeypatch, None, calls)
    for missing in (tmp_path / "no-such-weights", "no-such-weights-name"):
        with pytest.raises(FileNotFoundError, match="no such folder, and not a hub repo id"):
            load_vivid_weights(_tiny_transformer(), missing)
    assert calls == [], "a local path must not be looked up on the hub"
    (tmp_path / "file.safetensors").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="file.safetensors is a file"):
        load_vivid_weights(_tiny_transformer(), tmp_path / "file.safetensors")
    with pytest.raises(FileNotFoundError, match="someone/missing: no such local folder, and the hub repo") as err:
        load_vivid_weights(_tiny_transformer(), "someone/missing")
    assert "\n" not in str(err.value)
    (tmp_path / "snapshot").mkdir()
    _fake_hub(monkeypatch, tmp_path / "snapshot", calls)
    with pytest.raises(FileNotFoundError, match="hub repo someone/other has no vivid_config.json"):
        load_vivid_weights(_tiny_transformer(), "someone/other")




def test_full_size_5b_builds_on_meta_with_published_parameter_count():
    with torch.device("meta"):
        base = CogVideoXTransformer3DModel(**COGVIDEOX_5B_TRANSFORMER)
    total = parameter_report(base)["total"]
    assert total == COGVIDEOX_5B_TRANSFORMER_PARAMETERS
    with torch.device("meta"):
        vivid = SPEC.make_vivid(CogVideoXTransformer3DModel(**COGVIDEOX_5B_TRANSFORMER))
    report = parameter_report(vivid)
    hidden, blocks, rank, patch = 48 * 64, 42, SPEC.lora_rank, 2
    new_patch = hidden * 20 * patch * patch  # 20 new input channels
    lora_per_block = 4 * rank * (hidden + hidden)  # to_q, to_k, to_v, to_out.0: A (r x d) + B (d x r)
    assert report["total"] == total + new_patch + blocks * lora_per_block
    patch_full = hidden * 36 * patch * patch + hidden
    assert report["trainable"] == patch_full + blocks * lora_per_block
