"""`vivid eval` end to end on the tiny model (of each base) and a small synthetic eval split; the evaluation helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vivid.cli import main
from vivid.evaluation import (
    EditedVideo,
    EvalSample,
    EvalSettings,
    evaluate,
    format_table,
    inpaint_editor,
    load_eval_samples,
    summarize,
)
from vivid.synthetic_world import COLORS


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from data_loaders.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    result = write_synthetic_dataset(out, videos=1, images=1, eval_per_task=1, seed=3)
    return result.eval_manifests[0]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory, family_model_dir):
    """A valid VIVID weights folder (the untrained LoRA and widened patch embedding) of the tiny model of each
    base."""
    from vivid.model.registry import spec_for
    from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

    spec = spec_for(family_model_dir)
    t = spec.make_vivid(spec.load_components(family_model_dir)["transformer"], rank=4, alpha=4)
    return save_vivid_weights(t, tmp_path_factory.mktemp("w") / "weights",
                              VIVIDWeightsConfig(base_model=str(family_model_dir), lora_rank=4, lora_alpha=4))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP saved as a folder, loaded by path like a hub checkpoint."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from vivid.model.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer(16)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


# the tiny Wan's eval is slow on two shared cores (about a minute): it runs with the slow tests
@pytest.mark.parametrize("family", ["cogvideox", pytest.param("wan", marks=pytest.mark.slow)], indirect=True)
def test_vivid_eval_writes_report_with_required_keys(tmp_path, family_model_dir, weights_dir, synth, clip_dir, capsys):
    """On either base (the tiny CogVideoX and the tiny Wan)."""
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(family_model_dir), "--weights", str(weights_dir), "--data", str(synth),
                 "--out", str(out), "--clip", str(clip_dir), "--limit", "1", "--steps", "2"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for task in ("add", "modify", "delete"):
        s = report[task]
        assert s["n"] == 1
        assert s["bp"] is not None and 0 <= s["bp"] <= 255
        assert s["tc"] is not None and -100 <= s["tc"] <= 100
    for task in ("add", "modify"):
        assert -100 <= report[task]["ta"] <= 100
        assert report[task]["synthetic_ta"] in (0.0, 1.0)
    assert "ta" not in report["delete"] and 0 <= report["delete"]["remnant"] <= 1
    settings = report["settings"]
    assert settings["steps"] == 2 and settings["paste_back"] is False and settings["clip"] == str(clip_dir)
    assert settings["weights"] == str(weights_dir) and settings["eval_fps"] == 7.5
    assert len(report["samples"]) == 3
    assert (out / "report.md").read_text().count("| vivid |") == 3
    assert (out / "samples.png").stat().st_size > 0
    assert "synthetic TA" in capsys.readouterr().out


def test_vivid_eval_inpaint_baseline_needs_no_model(tmp_path, synth):
    out = tmp_path / "inpaint"
    assert main(["eval", "--baseline", "inpaint", "--data", str(synth), "--out", str(out), "--clip", "none"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"delete", "settings", "method"} and "add" not in report
    assert report["method"] == "inpaint" and report["delete"]["tc"] is None
    assert report["delete"]["remnant"] < report["delete"]["source_remnant"]


def test_vivid_eval_errors_are_one_line(tmp_path, tiny_model_dir, synth, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(synth), "--out", str(tmp_path)]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["eval", "--baseline", "untrained", "--data", str(tmp_path / "missing.jsonl"),
                 "--model", str(tiny_model_dir), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    for flag, value in (("--max-frames", "-1"), ("--clip-frames", "8")):
        assert main(["eval", "--baseline", "untrained", "--model", str(tiny_model_dir), "--data", str(synth),
                     "--out", str(tmp_path), flag, value]) == 2
        assert flag in capsys.readouterr().err


def _sample(task: str, color: str = "red") -> EvalSample:
    frames = np.full((3, 32, 48, 3), 110, np.uint8)
    mask = np.zeros((3, 32, 48), bool)
    mask[:, 8:24, 12:36] = True
    if task == "delete":
        frames[:, 10:22, 14:34] = COLORS[color]
    return EvalSample(f"s-{task}", task, frames, mask, f"a {color} square", fps=8.0,
                      attributes={"color": color, "shape": "square"})


def test_evaluate_scores_an_oracle_and_a_do_nothing_editor():
    samples = [_sample("add"), _sample("modify"), _sample("delete")]

    def oracle(s: EvalSample) -> np.ndarray:
        out = s.frames.copy()
        if s.task == "delete":
            out[s.mask] = 110
        else:
            out[:, 10:22, 14:34] = COLORS["red"]
        return out

    settings = EvalSettings(eval_fps=None)
    good = evaluate(samples, oracle, settings, method="oracle")
    idle = evaluate(samples, lambda s: s.frames.copy(), settings, method="identity")
    assert good["add"]["synthetic_ta"] == 1.0 and good["modify"]["synthetic_ta"] == 1.0
    assert good["delete"]["remnant"] == 0.0 and good["add"]["bp"] == 0.0
    assert idle["add"]["synthetic_ta"] == 0.0 and idle["delete"]["remnant"] > 0.5
    assert "| oracle | add | 1 |" in format_table({"oracle": good, "identity": idle})
    assert summarize([], "add")["n"] == 0


def test_inpaint_editor_removes_the_colour():
    s = _sample("delete", "blue")
    out = inpaint_editor()(s)
    assert out.shape == s.frames.shape
    with pytest.raises(ValueError, match="only deletes"):
        inpaint_editor()(_sample("add"))


@pytest.fixture(scope="module")
def long_synth(tmp_path_factory):
    """Eval samples of 21 frames: longer than the tiny model's 9-frame clips."""
    from data_loaders.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth-long")
    result = write_synthetic_dataset(out, videos=0, images=0, eval_per_task=1, frames=21, seed=5)
    return result.eval_manifests[0]


def test_vivid_eval_chains_long_samples_and_reports_tc_across_clip_boundaries(tmp_path, tiny_model_dir, long_synth,
                                                                            clip_dir, capsys):
    out = tmp_path / "eval-long"
    code = main(["eval", "--model", str(tiny_model_dir), "--baseline", "untrained", "--data", str(long_synth),
                 "--out", str(out), "--clip", str(clip_dir), "--steps", "1", "--tasks", "add", "delete",
                 "--max-frames", "0", "--boundaries", "fixed", "--eval-fps", "0"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["max_frames"] is None and report["settings"]["boundaries"] == "fixed"
    for row in report["samples"]:
        assert row["frames"] == 21
        assert row["clips"] == 3 and row["seams"] == 2  # fixed windows [0, 8], [8, 16], [16, 20]
        for key in ("tc_boundary", "tc_inside"):
            assert -100 <= row[key] <= 100
        assert row["gap"] == pytest.approx(row["tc_inside"] - row["tc_boundary"])
    for task in ("add", "delete"):
        s = report[task]
        assert s["long"] == 1 and s["gap"] == pytest.approx(s["tc_inside"] - s["tc_boundary"])
    table = capsys.readouterr().out
    assert "TC seams" in table and "TC inside" in table
    assert "TC seams" in (out / "report.md").read_text()


def test_long_samples_load_past_49_frames_only_when_asked(long_synth):
    assert {len(s.frames) for s in load_eval_samples([long_synth], max_frames=None)} == {21}
    assert {len(s.frames) for s in load_eval_samples([long_synth], max_frames=10)} == {9}  # rounded to 4k+1


def test_boundary_metric_of_a_chained_edit_sees_a_jump_at_the_seam(clip_dir):
    """Clips that each hold one still frame: TC inside is 100, the seam pair differs; the pair across the cut
    (a new shot) counts in neither."""
    from vivid.metrics import CLIPScorer

    rng = np.random.default_rng(0)
    stills = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    frames = np.concatenate([np.repeat(stills[0:1], 9, 0), np.repeat(stills[1:2], 8, 0), np.repeat(stills[2:3], 4, 0)])
    mask = np.zeros(frames.shape[:3], bool)
    mask[:, 8:24, 12:36] = True
    sample = EvalSample("long", "add", frames, mask, "a red square", fps=8.0)
    edited = EditedVideo(frames, seams=[8], cuts=[17], clips=3)
    scorer = CLIPScorer(str(clip_dir))
    report = evaluate([sample], lambda s: edited, EvalSettings(eval_fps=None), scorer=scorer, method="m")
    row = report["samples"][0]
    assert row["tc_inside"] == pytest.approx(100.0, abs=1e-3)
    feats = scorer.image_features(frames[[8, 9]])
    assert row["tc_boundary"] == pytest.approx(100.0 * float(feats[0] @ feats[1]), abs=1e-3)
    assert row["tc_boundary"] < 99.9
    assert row["gap"] > 0 and report["add"]["long"] == 1
    # a short edit next to it: the long columns show its count, the short sample does not enter their means
    short = _sample("add")
    both = evaluate([sample, short], lambda s: edited if s.id == "long" else s.frames.copy(),
                    EvalSettings(eval_fps=None), scorer=scorer, method="m")
    assert both["add"]["long"] == 1 and both["add"]["gap"] == pytest.approx(row["gap"])
    assert "clips" not in both["samples"][1]
    assert "| m | add | 2 |" in format_table({"m": both}) and "TC seams" in format_table({"m": both})
    assert "TC seams" not in format_table({"m": evaluate([short], lambda s: s.frames.copy(), EvalSettings())})


def test_strip_image_rows_share_a_width_and_carry_their_caption():
    from vivid.evaluation import strip_image

    small = EvalSample(id="s", task="add", frames=np.zeros((9, 64, 96, 3), np.uint8),
                       mask=np.ones((9, 64, 96), bool), prompt="a red circle " * 20, fps=8.0)
    real = EvalSample(id="r", task="modify", frames=np.full((9, 144, 176, 3), 200, np.uint8),
                      mask=np.zeros((9, 144, 176), bool), prompt="a yellow square", fps=8.0)
    img = strip_image([(small, small.frames), (real, real.frames)], scale=2)
    assert img.dtype == np.uint8 and img.shape[1] == 3 * 2 * 96  # the real clip scaled down to the same width
    # rows: label bar 16 + 64 * 2 + gap 4; label bar 16 + 144 * 576 / 528 (rounded) + gap 4
    assert img.shape[0] == (16 + 128 + 4) + (16 + round(144 * 576 / 528) + 4)
    assert (img[:16] < 128).any()  # the caption is drawn in its bar
    plain = strip_image([(small, small.frames)], scale=2, labels=False)
    assert plain.shape == (128 + 4, 576, 3)
