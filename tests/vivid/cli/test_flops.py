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
