"""The GPU suite's `edit_*` rows: one `vivid edit` with a speed or memory flag on a tiny base, as JSON."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_edit_options import main


@pytest.mark.parametrize("family", ["cogvideox", "wan"])
def test_one_edit_with_a_flag_prints_its_row(family, capsys):
    assert main(["--family", family, "--flags=--vae-slicing --cache taylorseer_cache", "--device", "cpu",
                 "--steps", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["family"] == family and row["flags"] == "--vae-slicing --cache taylorseer_cache" and row["seconds"] > 0


def test_a_failing_edit_fails_the_row():
    with pytest.raises(SystemExit, match="failed"):
        main(["--family", "cogvideox", "--flags=--memory model", "--device", "cpu"])  # offloads need a GPU
