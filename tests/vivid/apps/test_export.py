"""vivid export: weights + config + model card, loadable by VIVIDPipeline; --push-to-hub --dry-run."""

from __future__ import annotations

import json

import torch
import yaml

from vivid.cli import main


def _fake_checkpoint(tiny_model_dir, root, seed: int = 0):
    """A training checkpoint as the trainer writes it: vivid-weights/ + trainer_state.json."""
    from vivid.model.tiny import build_tiny_components
    from vivid.model.cogvideox_spec import CogVideoXSpec
    from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

    t = CogVideoXSpec().make_vivid(build_tiny_components(0)["transformer"], rank=4, alpha=4)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in t.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    ckpt = root / "checkpoints" / "checkpoint-7"
    save_vivid_weights(t, ckpt / "vivid-weights", VIVIDWeightsConfig(base_model=str(tiny_model_dir), lora_rank=4,
                                                                    lora_alpha=4))
    state = {"step": 7, "world_size": 1, "last_loss": 0.5,
             "config": {"data": {"frames": 9, "height": 64, "width": 96}, "optim": {"lr": 1e-3},
                        "mixed_precision": "no"}}
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    return ckpt, t


def test_export_writes_weights_config_card_and_loads(tiny_model_dir, tmp_path, capsys):
    ckpt, trained = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    # the run folder resolves to its newest checkpoint; the base model is recorded as a hub id
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(out),
                 "--base-model", "THUDM/CogVideoX-5b"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "patch_embed.safetensors", "pytorch_lora_weights.safetensors",
                     "training_config.json", "vivid_config.json", "vivid_manifest.json"]
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "THUDM/CogVideoX-5b" and meta["library_name"] == "diffusers"
    assert meta["license"] == "other" and "vivid" in meta["tags"] and "lora" in meta["tags"]
    assert "LoRA rank 4" in card and "Trained 7 optimizer steps" in card and "VIVIDPipeline.from_vivid" in card
    assert json.loads((out / "vivid_config.json").read_text())["base_model"] == "THUDM/CogVideoX-5b"

    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_vivid(out, base_model=str(tiny_model_dir))
    loaded = dict(pipe.transformer.named_parameters())
    for name, p in trained.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(loaded[name], p, rtol=0, atol=0)


def test_export_errors(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a VIVID weights folder" in capsys.readouterr().err


def test_export_of_an_incomplete_weights_folder_names_the_missing_file(tiny_model_dir, tmp_path, capsys):
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    (ckpt / "vivid-weights" / "patch_embed.safetensors").unlink()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "export")]) == 2
    assert "patch_embed.safetensors not found: incomplete VIVID weights folder" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()


def test_push_to_hub_dry_run_lists_files_and_hides_the_token(tiny_model_dir, tmp_path, monkeypatch, capsys):
    secret = "hf_FAKEtoken1234567890abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "export"), "--push-to-hub",
                 "someone/vivid-tiny", "--private", "--dry-run"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "would upload to https://huggingface.co/someone/vivid-tiny (private)" in text
    assert "HF_TOKEN environment variable" in text
    for name in ("README.md", "pytorch_lora_weights.safetensors", "patch_embed.safetensors", "vivid_config.json"):
        assert name in text
    assert secret not in text
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "e2"), "--push-to-hub",
                 "not-a-repo-id", "--dry-run"]) == 2
    assert secret not in capsys.readouterr().err


def test_from_vivid_downloads_a_hub_repo_and_loads_its_base_model(tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub

    from vivid.pipeline import VIVIDPipeline

    ckpt, trained = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--base-model", str(tiny_model_dir)]) == 0
    calls = []

    def snapshot_download(repo_id, **kwargs):  # the hub: the export folder is what `vivid export --push-to-hub` uploads
        calls.append((repo_id, kwargs))
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    pipe = VIVIDPipeline.from_vivid("someone/vivid-tiny")  # the base model comes from the repo's vivid_config.json
    assert [c[0] for c in calls] == ["someone/vivid-tiny"]
    assert set(calls[0][1]["allow_patterns"]) == {"pytorch_lora_weights.safetensors", "patch_embed.safetensors",
                                                   "vivid_config.json", "transformer.safetensors",
                                                   "vivid_manifest.json"}
    assert pipe.vivid_config.base_model == str(tiny_model_dir)
    loaded = dict(pipe.transformer.named_parameters())
    for name, p in trained.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(loaded[name], p, rtol=0, atol=0)


# ----------------------------------------------------------------------------- file safety and publishing (issue 20)
def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_into_an_earlier_export_keeps_the_other_files(tiny_model_dir, tmp_path):
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    (out / ".git").mkdir()
    (out / ".git" / "config").write_text("[core]\n")
    (out / "notes.txt").write_text("my notes\n")
    old_lora = (out / "pytorch_lora_weights.safetensors").read_bytes()
    other, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run2", seed=1)  # other weights, no trainer state
    (other / "trainer_state.json").unlink()
    assert main(["export", "--checkpoint", str(other), "--out", str(out)]) == 0
    assert (out / ".git" / "config").read_text() == "[core]\n" and (out / "notes.txt").read_text() == "my notes\n"
    new_lora = (out / "pytorch_lora_weights.safetensors").read_bytes()
    assert new_lora != old_lora
    assert new_lora == (other / "vivid-weights" / "pytorch_lora_weights.safetensors").read_bytes()
    assert not (out / "training_config.json").exists()  # the earlier export's file this one does not write
    assert not list(tmp_path.glob(".export.*"))  # no temporary left beside it


def test_export_refuses_a_folder_it_does_not_own(tiny_model_dir, tmp_path, capsys):
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    clone = tmp_path / "clone"  # a freshly cloned, empty hub repo: fine, nothing in it is replaced
    (clone / ".git").mkdir(parents=True)
    (clone / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(clone)]) == 0
    assert (clone / ".gitattributes").read_text() == "*.safetensors filter=lfs\n" and (clone / "README.md").is_file()
    project = tmp_path / "project"  # a README an export would replace, and not an earlier export: refused
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(project)]) == 2
    assert "holds README.md but is not an earlier export" in capsys.readouterr().err
    assert _files(project) == {"README.md": b"my project\n"}


def test_export_refuses_out_inside_or_equal_to_the_source(tiny_model_dir, tmp_path, capsys):
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    (ckpt / "vivid-weights" / "mine.txt").write_text("a user file\n")
    before = _files(tmp_path / "run")
    weights = ckpt / "vivid-weights"
    for checkpoint, out in ((weights, weights), (ckpt, ckpt), (ckpt, weights), (ckpt, ckpt / "export"),
                            (tmp_path / "run", tmp_path / "run" / "export")):
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
        assert "is inside the source" in capsys.readouterr().err
    assert _files(tmp_path / "run") == before


def test_an_interrupted_export_leaves_the_previous_export_intact(tiny_model_dir, tmp_path, monkeypatch):
    import os
    import shutil

    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("my notes\n")
    before = _files(out)
    other, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run2", seed=1)

    def ctrl_c_at(patcher, module, name, n):
        """Make module.name raise KeyboardInterrupt on its n-th call (once)."""
        real, calls = getattr(module, name), []

        def fake(*args, **kwargs):
            calls.append(args)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        patcher.setattr(module, name, fake)
        return calls

    # Ctrl-C while the second weights file is copied, and at several points of moving the files into place
    for module, name, n in ((shutil, "copy2", 2), (os, "replace", 1), (os, "replace", 4), (os, "replace", 8)):
        with monkeypatch.context() as m:
            calls = ctrl_c_at(m, module, name, n)
            assert main(["export", "--checkpoint", str(other), "--out", str(out)]) != 0
        assert len(calls) >= n, (name, n)
        assert _files(out) == before, (name, n)
        assert not list(tmp_path.glob(".export.*")), (name, n)

    stale = tmp_path / ".export.k1lled00.export"  # what a kill -9 mid-copy leaves: the next export removes it
    stale.mkdir()
    (stale / ".vivid-temporary.json").write_text('{"vivid": "export", "for": "export"}')
    (stale / "pytorch_lora_weights.safetensors").write_bytes(b"partial")
    kept = tmp_path / ".export.export-mine"  # a folder of that name holding anything else is not vivid's
    kept.mkdir()
    (kept / "notes.txt").write_text("x")
    assert main(["export", "--checkpoint", str(other), "--out", str(out)]) == 0
    assert not stale.exists() and (kept / "notes.txt").is_file() and (out / "notes.txt").is_file()


def test_export_keeps_user_folders_named_like_its_temporaries(tiny_model_dir, tmp_path):
    """Issue 31 #2: `.wts.export-my-backup/` holding export file names was deleted as a stale temporary. Only a
    folder of the exact temporary name form holding vivid's marker (for this --out) is one."""
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "wts"
    user = {".wts.export-my-backup": None,  # only export file names inside: the old clean-up deleted it
            ".wts.export-my-copy": '{"vivid": "export", "for": "wts"}',  # vivid's marker, not the name form
            ".wts.abcd1234.export": "not vivid's marker",  # the name form, but no marker of vivid's
            ".wts.abcd1235.export/x": '{"vivid": "export", "for": "other"}'}  # a marker for another --out
    for name, marker in user.items():
        folder = tmp_path / name.split("/")[0]
        folder.mkdir()
        if marker is not None:
            (folder / ".vivid-temporary.json").write_text(marker)
        (folder / "pytorch_lora_weights.safetensors").write_bytes(b"my backup")
        (folder / "README.md").write_text("my notes")
    before = _files(tmp_path)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    after = _files(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before


def _published_checkpoint(tiny_model_dir, root):
    ckpt, trained = _fake_checkpoint(tiny_model_dir, root)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    state["config"].update(output_dir=str(root / "runs" / "vivid"), model=str(tiny_model_dir),
                           data={**state["config"]["data"], "train_manifests": [str(root / "data" / "train-*.jsonl")],
                                 "eval_manifests": ["data/eval-*.jsonl"]})
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    return ckpt


def test_published_card_and_configs_name_no_local_paths(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_FAKE")
    ckpt = _published_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--push-to-hub", "someone/vivid-tiny",
                 "--dry-run"]) == 0
    assert "the base model is the local folder" in capsys.readouterr().out
    for name in ("README.md", "training_config.json", "vivid_config.json"):
        text = (out / name).read_text()
        assert str(tmp_path) not in text and str(tiny_model_dir) not in text, name
    training = json.loads((out / "training_config.json").read_text())
    assert training["data"]["train_manifests"] == ["train-*.jsonl"] and training["output_dir"] == "vivid"
    assert training["data"]["eval_manifests"] == ["data/eval-*.jsonl"]  # relative paths are kept
    assert json.loads((out / "vivid_config.json").read_text())["base_model"] == tiny_model_dir.name
    assert f"`{tiny_model_dir.name}` (a local model)" in (out / "README.md").read_text()


class FakeHfApi:
    """The Hub: one repository per id, with its visibility; records what was uploaded."""

    repos: dict = {}
    uploads: list = []
    fail: BaseException | None = None

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
        if FakeHfApi.fail is not None:
            raise FakeHfApi.fail
        FakeHfApi.repos.setdefault(repo_id, bool(private))  # an existing repository keeps its visibility
        return f"https://huggingface.co/{repo_id}"

    def repo_info(self, repo_id, repo_type=None):
        from types import SimpleNamespace

        return SimpleNamespace(private=FakeHfApi.repos[repo_id])

    def upload_folder(self, folder_path, repo_id, repo_type=None, allow_patterns=None, commit_message=None):
        FakeHfApi.uploads.append((repo_id, sorted(allow_patterns)))


def test_push_honours_private_and_fails_in_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import HTTPError

    monkeypatch.setenv("HF_TOKEN", "hf_FAKEtoken1234567890")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_FAKEtoken1234567890")
    monkeypatch.setattr(FakeHfApi, "repos", {"someone/public": False})
    monkeypatch.setattr(FakeHfApi, "uploads", [])
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("not for the hub\n")
    args = ["export", "--checkpoint", str(ckpt), "--out", str(out), "--base-model", "THUDM/CogVideoX-5b"]
    assert main([*args, "--push-to-hub", "someone/new", "--private"]) == 0
    assert FakeHfApi.repos["someone/new"] is True and "uploaded: https://huggingface.co/someone/new (private)" in \
        capsys.readouterr().out
    assert FakeHfApi.uploads == [("someone/new", ["README.md", "patch_embed.safetensors",
                                                   "pytorch_lora_weights.safetensors", "training_config.json",
                                                   "vivid_config.json", "vivid_manifest.json"])]  # notes.txt stays local
    assert main([*args, "--push-to-hub", "someone/public", "--private"]) == 2  # would stay public: refused
    err = capsys.readouterr().err
    assert "someone/public already exists and is public; nothing was uploaded" in err
    assert len(FakeHfApi.uploads) == 1
    monkeypatch.setattr(FakeHfApi, "fail", HTTPError("[Errno -3] Temporary failure in name resolution\nmore"))
    assert main([*args, "--push-to-hub", "someone/new"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("vivid export: error: --push-to-hub someone/new: HTTPError: [Errno -3] Temporary failure "
                           "in name resolution")
    monkeypatch.setattr(FakeHfApi, "fail", OSError("token hf_FAKEtoken1234567890 rejected"))
    assert main([*args, "--push-to-hub", "someone/new"]) == 2
    err = capsys.readouterr().err
    assert "hf_FAKEtoken" not in err and "***" in err and len(err.strip().splitlines()) == 1


def _export_files(folder):
    from vivid.apps.export import EXPORT_FILES

    return {name: data for name, data in _files(folder).items() if name in EXPORT_FILES}


def _killed_export_at(k: int, checkpoint, out) -> int:
    """Run `export_weights` in a forked child that dies (os._exit: no clean-up runs, as under kill -9) at its k-th
    os.replace; its exit status (9 when killed, 0 when the export finished before)."""
    import os

    pid = os.fork()
    if pid == 0:  # the child
        try:
            from vivid.apps.export import export_weights

            real, calls = os.replace, [0]

            def replace(*args, **kwargs):
                calls[0] += 1
                if calls[0] == k:
                    os._exit(9)
                return real(*args, **kwargs)

            os.replace = replace
            export_weights(checkpoint, out)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_kill_at_each_rename_of_the_swap_is_completed_or_undone(tiny_model_dir, tmp_path):
    """Issue 31 #3: a kill at the k-th os.replace of the export (for every k) left `--out` torn (a config without
    its LoRA, the old files hidden in `.previous/`) and the next export refused it. Now weight loading and the next
    export first complete the interrupted swap: the folder holds the old export or the new one, never a mix."""
    import shutil

    from vivid.model.tiny import build_tiny_components
    from vivid.model.weights import load_vivid_weights

    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    other, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run2", seed=1)
    (other / "trainer_state.json").unlink()  # the new export has no training_config.json: sets differ in names too
    out, saved = tmp_path / "wts", tmp_path / "saved"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine\n")
    old = _export_files(out)
    shutil.copytree(out, saved)
    assert main(["export", "--checkpoint", str(other), "--out", str(tmp_path / "new")]) == 0
    new = _export_files(tmp_path / "new")
    for k in range(1, 40):
        shutil.rmtree(out)
        shutil.copytree(saved, out)
        code = _killed_export_at(k, other, out)
        assert code in (0, 9), (k, code)
        if k % 2:  # a reader first: it completes the swap and loads one whole set
            load_vivid_weights(build_tiny_components(0)["transformer"], out)
        else:
            assert main(["export", "--checkpoint", str(other), "--out", str(out)]) == 0
        assert _export_files(out) in (old, new), k
        if k % 2 == 0:
            assert _export_files(out) == new, k
        assert (out / "notes.txt").read_text() == "mine\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "run", "run2", "saved", "wts"], k
        if code == 0:
            break
    assert k > 8, f"the export made only {k - 1} renames"


def test_a_reader_refuses_a_folder_whose_files_are_not_its_manifests(tiny_model_dir, tmp_path, capsys):
    from vivid.model.tiny import build_tiny_components
    from vivid.model.weights import load_vivid_weights

    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    other, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run2", seed=1)
    out = tmp_path / "wts"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    lora = "pytorch_lora_weights.safetensors"
    (out / lora).write_bytes((other / "vivid-weights" / lora).read_bytes())  # another export's LoRA, same size
    import pytest

    with pytest.raises(ValueError, match=f"{lora} differs from the file the manifest lists"):
        load_vivid_weights(build_tiny_components(0)["transformer"], out)
