"""The CLI's whole-number argparse types are one implementation (`vivid.cli.numbers.whole_number`): every flag
that takes steps, pixels or a count words its errors the same way, naming the flag and the value."""

from __future__ import annotations

import argparse

import pytest

from vivid.cli import numbers
from vivid.cli import build_parser


@pytest.mark.parametrize("kind, value, message", [
    (numbers.positive_int, "0", "must be >= 1, got 0"),
    (numbers.positive_int, "2.5", "must be a whole number >= 1, got '2.5'"),
    (numbers.pixels, "-3", "must be >= 0 pixels, got -3"),
    (numbers.pixels, "x", "must be a whole number of pixels >= 0, got 'x'"),
    (numbers.count, "-1", "must be >= 0, got -1"),
    (numbers.count, "one", "must be a whole number >= 0, got 'one'"),
])
def test_each_type_names_its_bound_and_the_value(kind, value, message):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        kind(value)
    assert str(err.value) == message
    assert numbers.whole_number(5)("5") == 5


@pytest.mark.parametrize("argv, message", [
    (["edit", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["edit", "--paste-back-dilation", "-1"], "argument --paste-back-dilation: must be >= 0 pixels, got -1"),
    (["edit", "--grow", "-2"], "argument --grow: must be >= 0 pixels, got -2"),
    (["mask", "--frame", "-1"], "argument --frame: must be >= 0, got -1"),
    (["mask", "--max-instances", "two"], "argument --max-instances: must be a whole number >= 0, got 'two'"),
    (["app", "--steps", "1.5"], "argument --steps: must be a whole number >= 1, got '1.5'"),
])
def test_the_commands_use_them(argv, message, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert message in capsys.readouterr().err
