"""Help texts show every option's default; `vivid keyframe` has one seed flag."""

from __future__ import annotations

import pytest

from vivid.cli import build_parser


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return " ".join(sub.format_help().split())


@pytest.mark.parametrize("command", ["edit", "keyframe", "app"])
def test_every_option_with_a_default_shows_it(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    text = _help(command)
    for action in sub._actions:
        if action.option_strings and action.default not in (None, False, "==SUPPRESS==") \
                and not isinstance(action.default, bool):
            help_text = " ".join((action.help or "").split())
            assert "default" in help_text or f"{help_text} (default:" in text, action.option_strings
    assert "default: the base's" in text  # steps and guidance


def test_edit_help_names_the_defaults_it_uses():
    text = _help("edit")
    assert "(default: adaptive)" in text and "(default: 0)" in text  # --boundaries, --seed


def test_keyframe_has_one_seed_flag(capsys):
    parser = build_parser()
    base = ["keyframe", "--model", "m", "--video", "v.mp4", "--mask", "m.png", "--task", "add", "--out-dir", "o"]
    assert parser.parse_args(base + ["--seed", "3", "7"]).seed == [3, 7]
    assert parser.parse_args(base + ["--seed", "3"]).seed == [3]
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--seeds", "3", "7"])
    assert "--seeds" not in _help("keyframe")
