"""Precomputed T5 caption embeddings: `vivid data embed-captions`, and the trainer reading them without T5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train.test_trainer import TINY_YAML, read_metrics, synth_data, tiny_overrides  # noqa: F401 (fixture)
from train.config import load_config


def _embed(data: Path, model: Path, out: Path, *extra: str, manifests: tuple[str, ...] = ("train-*", "eval-*")) -> int:
    from vivid.cli import main

    return main(["data", "embed-captions", *[f"{data}/{m}.jsonl" for m in manifests], "--model", str(model),
                 "--out", str(out), "--dtype", "fp32", "--batch-size", "3", "--shard-size", "4", *extra])


def test_embed_captions_writes_every_caption_as_t5_computes_it(synth_data, family_model_dir, tmp_path, capsys):
    """On either base: the store holds the captions as the base's own text encoder computes them (T5 for CogVideoX,
    UMT5 for Wan2.1), at the base's caption length."""
    from train.caption_embeddings import META_NAME, CaptionEmbeddings, manifest_prompts
    from vivid.constants import DELETE_CAPTION
    from vivid.model.registry import spec_for

    tiny_model_dir = family_model_dir

    store_dir = tmp_path / "emb"
    assert _embed(synth_data, tiny_model_dir, store_dir) == 0
    prompts, bad = manifest_prompts([f"{synth_data}/train-*.jsonl", f"{synth_data}/eval-*.jsonl"])
    assert bad == 0 and "" in prompts and DELETE_CAPTION in prompts and len(prompts) > 4
    store = CaptionEmbeddings(store_dir)
    assert len(store) == len(prompts) and store.missing(prompts) == []
    meta = json.loads((store_dir / META_NAME).read_text())
    assert meta["count"] == len(prompts) and len(meta["shards"]) == len(list(store_dir.glob("captions-*.safetensors")))
    assert len(meta["shards"]) > 1 and not list(store_dir.glob(".*part"))  # several shards, no temporaries left
    spec = spec_for(tiny_model_dir)
    parts = spec.load_components(tiny_model_dir, torch.float32)
    assert meta["max_length"] == spec.max_text_length(parts["tokenizer"], parts["transformer"]) == 16
    direct = spec.encode_prompts(parts["tokenizer"], parts["text_encoder"].eval(), prompts, 16)
    torch.testing.assert_close(store.get(prompts), direct, rtol=0, atol=1e-6)
    assert "new caption embedding" in capsys.readouterr().out

    # again: nothing new; a new caption is added in a shard of its own; a killed run's temporary is removed
    (store_dir / ".captions-00009.abc.safetensors.part").write_bytes(b"")
    assert _embed(synth_data, tiny_model_dir, store_dir) == 0
    assert capsys.readouterr().out.startswith("0 new") and not list(store_dir.glob(".*part"))
    extra = tmp_path / "extra.jsonl"
    record = json.loads((synth_data / "eval-00000.jsonl").read_text().splitlines()[0])
    record.update(id="extra", captions=["a brand new caption"], media=str(synth_data / record["media"]),
                  mask=str(synth_data / record["mask"]))
    header = {"vivid_manifest": {"allow_absolute_paths": True}}  # its media lie outside its folder
    extra.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    from vivid.cli import main

    assert main(["data", "embed-captions", str(extra), "--model", str(tiny_model_dir), "--out", str(store_dir),
                 "--dtype", "fp32"]) == 0
    assert capsys.readouterr().out.startswith("1 new") and "a brand new caption" in CaptionEmbeddings(store_dir)

    # refused, one line, before T5 is loaded: another dtype into this store, a folder of other files
    assert _embed(synth_data, tiny_model_dir, store_dir, "--dtype", "bf16") == 2
    assert "holds fp32 embeddings" in capsys.readouterr().err
    assert _embed(synth_data, tiny_model_dir, synth_data) == 2
    assert "not a caption embedding store" in capsys.readouterr().err


def test_trainer_with_caption_embeddings_matches_on_the_fly_and_never_touches_t5(
    synth_data, tiny_model_dir, tmp_path, monkeypatch
):
    """Same losses as T5 on the fly; T5 is neither loaded nor called (training and validation with guidance)."""
    from transformers import T5EncoderModel

    from data_loaders.errors import DataError
    from train.trainer import train

    store_dir, partial = tmp_path / "emb", tmp_path / "partial"
    assert _embed(synth_data, tiny_model_dir, store_dir) == 0
    assert _embed(synth_data, tiny_model_dir, partial, manifests=("eval-*",)) == 0  # lacks the training captions
    common = (f"model.pretrained={tiny_model_dir}", "optim.max_steps=2", "checkpoint.every_n_steps=0",
              "validation.every_n_steps=2", "validation.steps=2", "validation.guidance=3.0",
              "cache_text_embeddings=false")
    train(load_config(TINY_YAML, tiny_overrides(synth_data, tmp_path / "fly", *common)))

    def no_t5(*args, **kwargs):
        raise AssertionError("T5 was used")

    monkeypatch.setattr(T5EncoderModel, "forward", no_t5)
    monkeypatch.setattr(T5EncoderModel, "from_pretrained", classmethod(no_t5))
    run = tmp_path / "stored"
    train(load_config(TINY_YAML, tiny_overrides(synth_data, run, *common, f"caption_embeddings={store_dir}")))
    fly, stored = read_metrics(tmp_path / "fly"), read_metrics(run)
    assert [r["loss"] for r in stored] == pytest.approx([r["loss"] for r in fly], rel=0, abs=1e-6)
    assert list((run / "validation" / "step-2").glob("*.mp4"))

    # a store that lacks the training captions: one line, naming the fix
    with pytest.raises(DataError, match="lacks .* captions .*embed-captions"):
        train(load_config(TINY_YAML, tiny_overrides(synth_data, tmp_path / "p", *common,
                                                    f"caption_embeddings={partial}")))
    with pytest.raises(FileNotFoundError, match="not a caption embedding store"):
        train(load_config(TINY_YAML, tiny_overrides(synth_data, tmp_path / "q", *common,
                                                    f"caption_embeddings={tmp_path / 'none'}")))


def test_embed_captions_sends_token_ids_to_the_encoders_device_and_stores_cpu_rows(tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    """A CPU simulation of a GPU machine: the text encoder reports its weights on another device ('meta' stands
    in for cuda); the token ids must be sent there (an embedding lookup with ids elsewhere fails on a GPU), and the
    rows stored are CPU tensors, equal to what the encoder computes."""
    from train.caption_embeddings import CaptionEmbeddings, write_caption_embeddings
    from vivid.model.registry import spec_for

    spec = spec_for(tiny_model_dir)
    text = spec.load_text_components(tiny_model_dir, torch.float32)
    encoder = text["text_encoder"].eval()

    class OnAnotherDevice(torch.nn.Module):  # first parameter on 'meta'; computes with the real CPU encoder
        def __init__(self):
            super().__init__()
            self.where = torch.nn.Parameter(torch.empty(1, device="meta"))
            self.inner, self.config = encoder, encoder.config

    asked: list[str] = []
    original = spec.encode_prompts

    def encode_prompts(tokenizer, text_encoder, prompts, max_length, device=None):
        asked.append(str(device))
        if str(device) != "meta":
            raise RuntimeError(f"Expected all tensors to be on the same device, but found cpu and meta ({device})")
        return original(tokenizer, text_encoder.inner, prompts, max_length, device="cpu")

    monkeypatch.setattr(spec, "encode_prompts", encode_prompts)
    prompts = ["a red ball", "a dog", ""]
    meta, added = write_caption_embeddings(tmp_path / "emb", prompts, text["tokenizer"], OnAnotherDevice(), 16,
                                           str(tiny_model_dir), spec, batch_size=2)
    assert added == 3 and set(asked) == {"meta"}
    direct = original(text["tokenizer"], encoder, prompts, 16)
    stored = CaptionEmbeddings(tmp_path / "emb").get(prompts)
    assert stored.device.type == "cpu"
    torch.testing.assert_close(stored, direct, rtol=0, atol=0)


def test_embed_captions_on_a_full_disk_is_one_line_and_the_store_stays_usable(synth_data, tiny_model_dir, tmp_path,
                                                                              monkeypatch, capsys):
    """The disk fills while the second shard is written (safetensors' own error, as on a real full disk): one
    line naming the shard, the first shard kept and readable, no temporary left; a run again adds the rest."""
    import train.caption_embeddings as ce
    from safetensors import SafetensorError

    calls = {"n": 0}
    save_file = ce.save_file

    def filling_up(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(path, "wb") as f:
                f.write(b"\0" * 100)  # a torn partial write
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(ce, "save_file", filling_up)
    store_dir = tmp_path / "emb"
    assert _embed(synth_data, tiny_model_dir, store_dir) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in err and errors[0].startswith("vivid data: error:")
    assert "No space left on device" in errors[0] and "captions-00001.safetensors" in errors[0]
    kept = len(ce.CaptionEmbeddings(store_dir))
    assert kept == 6 and f"keeps the {kept} caption" in errors[0] and not list(store_dir.glob(".*"))
    monkeypatch.setattr(ce, "save_file", save_file)
    assert _embed(synth_data, tiny_model_dir, store_dir) == 0
    prompts, _ = ce.manifest_prompts([f"{synth_data}/train-*.jsonl", f"{synth_data}/eval-*.jsonl"])
    assert ce.CaptionEmbeddings(store_dir).missing(prompts) == []
