"""Which model specification a model is: chosen by its transformer class, as diffusers names it.

`spec_for` takes a model folder (a pipeline folder with model_index.json, or a transformer folder with
config.json), a hub id (its model_index.json is downloaded, or read from the cache when HF_HUB_OFFLINE is set),
a VIVID weights folder (its vivid_config.json names the family), a config dict, a transformer module, or a
specification. CogVideoXTransformer3DModel -> CogVideoXSpec, WanTransformer3DModel -> WanSpec.

(The registry is a module of its own so that the base class, `vivid/model/spec.py`, imports no subclass.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download

from vivid.constants import VIVID_CONFIG_NAME
from vivid.io.files import read_json
from vivid.model.cogvideox_spec import CogVideoXSpec
from vivid.model.hub import hub_offline, is_repo_id
from vivid.model.spec import ModelSpecification
from vivid.model.transformer import unwrap
from vivid.model.wan_spec import WanSpec

SPECS: dict[str, type[ModelSpecification]] = {spec.name: spec for spec in (CogVideoXSpec, WanSpec)}
FAMILIES = tuple(SPECS)


def spec_by_name(name: str, **options: Any) -> ModelSpecification:
    """The specification of family `name` ("cogvideox", "wan"); `options` go to its constructor (Wan: training
    options)."""
    if name not in SPECS:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return SPECS[name](**options)


def spec_for_class_name(class_name: str) -> ModelSpecification:
    """The specification handling transformer class `class_name`."""
    for spec in SPECS.values():
        if class_name in spec.transformer_class_names:
            return spec()
    known = ", ".join(n for spec in SPECS.values() for n in spec.transformer_class_names)
    raise ValueError(f"no VIVID specification for transformer class {class_name!r} (supported: {known})")


def transformer_class_name(config: Mapping[str, Any]) -> str:
    """The transformer class named by a pipeline's model_index.json (`"transformer": [library, class]`) or by a
    transformer's config.json (`"_class_name"`)."""
    entry = config.get("transformer")
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1]:
        return str(entry[1])
    if config.get("_class_name"):
        return str(config["_class_name"])
    raise ValueError("config names no transformer class (neither model_index.json's 'transformer' nor '_class_name')")


def _read_json(path: Path) -> dict:
    data = read_json(path, "model config")
    if not isinstance(data, dict):
        raise ValueError(f"model config {path}: expected a JSON object, got {type(data).__name__}")
    return data


def _folder_config(folder: Path) -> dict:
    for candidate in (folder / "model_index.json", folder / "config.json", folder / "transformer" / "config.json"):
        if candidate.is_file():
            return _read_json(candidate)
    raise FileNotFoundError(f"{folder}: no model_index.json or config.json, not a diffusers model folder")


def _hub_config(repo_id: str) -> dict:
    if not is_repo_id(repo_id):
        raise FileNotFoundError(f"{repo_id}: no such model folder, and not a hub repo id (owner/name)")
    offline = hub_offline()
    try:
        path = hf_hub_download(repo_id, "model_index.json", local_files_only=offline)
    except Exception as err:  # not found, gated, no network, not cached
        why = "is not in the local hub cache" if offline else f"could not be read ({type(err).__name__})"
        raise FileNotFoundError(f"{repo_id}: no such local folder, and its hub model_index.json {why}") from None
    return _read_json(Path(path))


def spec_for(source: Any) -> ModelSpecification:
    """The specification of `source`: a model folder or hub id, a VIVID weights folder, a config dict, a
    transformer (possibly wrapped) or a specification (returned as is)."""
    if isinstance(source, ModelSpecification):
        return source
    if isinstance(source, torch.nn.Module):
        model = unwrap(source)
        for cls in type(model).__mro__:
            for spec in SPECS.values():
                if cls.__name__ in spec.transformer_class_names:
                    return spec()
        return spec_for_class_name(type(model).__name__)  # raises, naming the class
    if isinstance(source, Mapping):
        if "family" in source and "transformer" not in source and "_class_name" not in source:
            return spec_by_name(str(source["family"]))
        return spec_for_class_name(transformer_class_name(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            if (path / VIVID_CONFIG_NAME).is_file() and not (path / "model_index.json").is_file():
                return spec_by_name(str(_read_json(path / VIVID_CONFIG_NAME).get("family", CogVideoXSpec.name)))
            return spec_for_class_name(transformer_class_name(_folder_config(path)))
        if path.is_file():
            raise NotADirectoryError(f"{source} is a file; give a model folder or a hub id")
        return spec_for_class_name(transformer_class_name(_hub_config(str(source))))
    raise TypeError(f"cannot tell the model family of a {type(source).__name__}")
