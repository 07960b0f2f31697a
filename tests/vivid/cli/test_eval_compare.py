"""`vivid eval --compare` (issue 36): each model on the same samples, masks, seeds and steps, one table; a VACE model
is evaluated without VIVID weights."""

from __future__ import annotations

import json

import pytest

from vivid.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from data_loaders.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    return write_synthetic_dataset(out, videos=1, images=1, eval_per_task=1, seed=3).eval_manifests[0]


def test_compare_writes_one_table_of_every_model_on_the_same_samples(tmp_path, tiny_model_dir, tiny_vace_model_dir,
                                                                     synth, capsys):
    out = tmp_path / "cmp"
    assert main(["eval", "--compare", str(tiny_model_dir), str(tiny_vace_model_dir), "--data", str(synth),
                 "--out", str(out), "--clip", "none", "--steps", "1", "--tasks", "add", "delete"]) == 0
    table = (out / "comparison.md").read_text()
    assert "| model | task | n | BP (lower better) | background PSNR | background SSIM | TA | TC | s / clip |" in table
    for name in (tiny_model_dir, tiny_vace_model_dir):
        for task in ("add", "delete"):
            assert f"| {name} | {task} | 1 |" in table
    reports = [json.loads((out / f"{k}-{p.name}" / "report.json").read_text())
               for k, p in enumerate((tiny_model_dir, tiny_vace_model_dir))]
    assert [r["settings"]["model"] for r in reports] == [str(tiny_model_dir), str(tiny_vace_model_dir)]
    same = ("steps", "guidance", "seed", "paste_back", "tasks")
    assert {k: reports[0]["settings"][k] for k in same} == {k: reports[1]["settings"][k] for k in same}
    assert [s["id"] for s in reports[0]["samples"]] == [s["id"] for s in reports[1]["samples"]]
    assert reports[0]["samples"][0]["bp"] != reports[1]["samples"][0]["bp"]  # two models, two sets of outputs
    assert main(["eval", "--compare", str(tiny_model_dir), "--model", str(tiny_model_dir), "--data", str(synth),
                 "--out", str(out)]) == 2
    assert "--compare names every model" in capsys.readouterr().err


def test_a_vace_model_is_evaluated_without_weights(tmp_path, tiny_vace_model_dir, synth):
    assert main(["eval", "--model", str(tiny_vace_model_dir), "--data", str(synth), "--out", str(tmp_path / "e"),
                 "--clip", "none", "--steps", "1", "--tasks", "delete"]) == 0
