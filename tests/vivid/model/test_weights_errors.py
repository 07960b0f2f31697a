"""Bad weights folders are one-line errors naming the file (issue 31, item 6): a vivid_config.json that is not JSON,
not an object or disagrees with the tensors, and LoRA or patch-embedding safetensors with a malformed header."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

from vivid.cli import main
from vivid.constants import LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME, VIVID_CONFIG_NAME
from vivid.model.cogvideox_spec import CogVideoXSpec
from vivid.model.tiny import build_tiny_components
from vivid.model.weights import VIVIDWeightsConfig, load_vivid_weights, save_vivid_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    source = CogVideoXSpec().make_vivid(build_tiny_components(0)["transformer"], 4, 4)
    folder = tmp_path_factory.mktemp("w") / "weights"
    return save_vivid_weights(source, folder, VIVIDWeightsConfig(lora_rank=4, lora_alpha=4))


@pytest.fixture
def broken(weights, tmp_path) -> Path:
    return Path(shutil.copytree(weights, tmp_path / "weights"))


def _load(folder: Path):
    return load_vivid_weights(build_tiny_components(0)["transformer"], folder)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "expected a JSON object of VIVID settings, got list"),
    ('{"lora_rank": 4,', "is not valid JSON (line 1, column 17"),
    ('{"lora_rank": "four"}', "lora_rank: expected an integer, got 'four'"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
])
def test_a_bad_vivid_config_is_one_line_naming_the_file(broken, text, message):
    path = broken / VIVID_CONFIG_NAME
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError) as err:
        _load(broken)
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_a_config_that_disagrees_with_the_tensors_names_the_key(broken):
    config = json.loads((broken / VIVID_CONFIG_NAME).read_text())
    (broken / VIVID_CONFIG_NAME).write_text(json.dumps({**config, "lora_rank": 8, "lora_alpha": 8}))
    with pytest.raises(ValueError, match=r"lora_A.weight is \(4, .*lora_rank 8: the config and the weights disagree"):
        _load(broken)


@pytest.mark.parametrize("name", [LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME])
@pytest.mark.parametrize("damage", ["header_length", "header_json", "truncated"])
def test_a_malformed_safetensors_file_is_one_line_naming_it(broken, name, damage):
    path = broken / name
    data = path.read_bytes()
    if damage == "header_length":  # a header longer than the file
        data = struct.pack("<Q", 1 << 40) + data[8:]
    elif damage == "header_json":
        (n,) = struct.unpack("<Q", data[:8])
        data = data[:8] + b"{" * n + data[8 + n:]
    else:
        data = data[: len(data) // 2]
    path.write_bytes(data)
    with pytest.raises(ValueError) as err:
        _load(broken)
    assert f"{path}: not a readable safetensors file" in str(err.value) and "\n" not in str(err.value)


def test_the_cli_prints_a_bad_weights_folder_in_one_line(broken, tmp_path, capsys):
    (broken / VIVID_CONFIG_NAME).write_text('"just a string"')
    assert main(["export", "--checkpoint", str(broken), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vivid export: error:") and VIVID_CONFIG_NAME in err and len(err.splitlines()) == 1


def test_intact_weights_still_load(weights):
    assert _load(weights).lora_rank == 4
    assert torch.is_tensor(next(iter(build_tiny_components(0)["transformer"].parameters())))


def test_a_base_models_broken_json_names_the_file_line_and_column(tmp_path):
    from vivid.model.registry import spec_for

    (tmp_path / "model_index.json").write_text('{"transformer": ["diffusers", ]}')
    with pytest.raises(ValueError) as err:
        spec_for(tmp_path)
    assert f"model config {tmp_path / 'model_index.json'} is not valid JSON (line 1, column 31: Expecting value)" in str(err.value)
