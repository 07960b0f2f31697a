"""`vivid flops` (vivid/cli/flops.py)."""

from __future__ import annotations

import json

import pytest


def test_cli_flops_json(capsys):
    from vivid.cli import main

    assert main(["flops", "--model-size", "tiny", "--frames", "9", "--height", "64", "--width", "96",
                 "--steps", "4", "--no-guidance", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["edit"]["guidance"] is False and out["edit"]["video_tokens"] == 72
    assert out["edit"]["total"] == pytest.approx(sum(out["edit"]["components"].values()))
    assert main(["flops"]) == 0
    assert "17.1" in capsys.readouterr().out
    assert main(["flops", "--height", "100"]) == 2


def test_cli_flops_of_a_long_edit_in_both_modes(capsys):
    from vivid.cli import main

    totals = {}
    for mode in ("chain", "parallel"):
        assert main(["flops", "--frames", "1000", "--long-mode", mode, "--kv-budget", "1350", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["long_mode"] == mode and out["clips"] == 21  # CogVideoX-5B: 49-frame clips sharing end frames
        totals[mode] = out["total"]
    assert totals["chain"] < totals["parallel"]
    assert main(["flops", "--frames", "1000", "--long-mode", "parallel"]) == 0
    assert "joint pass over 22 keyframes" in capsys.readouterr().out
