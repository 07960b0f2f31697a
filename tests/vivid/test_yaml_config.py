"""The typed config loader refuses bad YAML, Python tags and non-finite numbers in one line naming the file or
key (issue 31, items 6 and 7), and the CLI prints them so."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.conftest import REPO_ROOT
from vivid.cli import main
from vivid.yaml_config import ConfigError, load_dataclass_config


@dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class Config:
    optim: Optim = field(default_factory=Optim)


@pytest.mark.parametrize("override", ["optim.lr=.inf", "optim.lr=-.inf", "optim.lr=.nan", "optim.lr=inf",
                                      "optim.lr=nan", "optim.betas=[0.9, .inf]", "optim.lr=1e999"])
def test_non_finite_numbers_are_refused_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}(\[1\])?: expected a finite number"):
        load_dataclass_config(Config, None, [override])


def test_an_override_that_does_not_parse_is_one_line():
    with pytest.raises(ConfigError) as err:
        load_dataclass_config(Config, None, ["optim.betas=[0.9,"])
    assert str(err.value).startswith("override optim.betas=[0.9,: not a YAML value (line 1, column")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("optim:\n  lr: [1, 2\n", "not valid YAML: line 3, column 1: expected ',' or ']'"),
    ("optim: {lr: 1\n", "not valid YAML: line 2"),
    ("optim:\n\tlr: 1\n", "not valid YAML: line 2, column 1: found character '\\t'"),
])
def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_dataclass_config(Config, path)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_a_python_tag_is_refused_and_never_run(tmp_path):
    pwned = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'optim: !!python/object/apply:os.system ["touch {pwned}"]\n')
    with pytest.raises(ConfigError, match=r"line 1, column 8: .*python/object/apply:os.system.*no Python objects"):
        load_dataclass_config(Config, path)
    assert not pwned.exists()


@pytest.mark.parametrize("case", ["evil_tag", "syntax", "inf_override", "bad_override"])
def test_vivid_train_prints_config_errors_in_one_line(tmp_path, capsys, case):
    config = tmp_path / "c.yaml"
    config.write_text((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    extra = []
    if case == "evil_tag":
        config.write_text(f'optim: !!python/object/apply:os.system ["touch {tmp_path / "pwned"}"]\n')
    elif case == "syntax":
        config.write_text("optim: [\n")
    elif case == "inf_override":
        extra = ["optim.lr=.inf"]
    else:
        extra = ["optim.lr=[1,"]
    assert main(["train", "--config", str(config), *extra, f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vivid train: error:") and len(err.splitlines()) == 1, err
    assert (str(config) in err) or "optim.lr" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_an_unexpected_error_keeps_its_traceback_and_asks_for_a_bug_report(monkeypatch, capsys):
    import vivid.cli.flops

    def broken(args):
        raise KeyError("internal")

    monkeypatch.setattr(vivid.cli.flops, "run", broken)
    assert main(["flops"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'internal'" in err
    assert err.strip().splitlines()[-1].startswith("vivid flops: unexpected error: this is a bug in vivid")


def test_a_multi_line_error_of_a_users_input_is_printed_on_one_line(monkeypatch, capsys):
    import vivid.cli.flops

    def bad(args):
        raise ValueError("first line\n  second line")

    monkeypatch.setattr(vivid.cli.flops, "run", bad)
    assert main(["flops"]) == 2
    assert capsys.readouterr().err == "vivid flops: error: first line second line\n"
