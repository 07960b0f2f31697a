"""Typed dataclass configs from YAML, with dotted `key=value` overrides: the one loader of the training and the
data-build configs.

    config = load_dataclass_config(TrainConfig, "configs/tiny.yaml", ["optim.lr=1e-4", "data.frames=9"])

Every key is checked against the dataclasses: an unknown key or a value of the wrong type is a `ConfigError`
naming the key (and the file). Values on the command line are parsed as YAML (`true`, `[0.9, 0.99]`, `null`),
except that a field typed as text keeps the text as written: YAML 1.1 would read `mixed_precision=no` as false
and `logging.run_name=2024` as a number.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad configuration key or value; the message names the key."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` (and convert the few safe cases); ConfigError otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        hint = _yaml11_hint(value) if any(a is str for a in args) else ""
        raise ConfigError(f"{key}: {value!r} is not a {_type_name(tp)}{hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}{_yaml11_hint(value)}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # `.inf`, `.nan`: never a learning rate, a weight or a size
            raise ConfigError(f"{key}: expected a finite number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}{_yaml11_hint(value)}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _yaml11_hint(value: Any) -> str:
    """A hint for values YAML 1.1 turned into booleans or numbers (`no`, `off`, `2024`) in a YAML file."""
    if isinstance(value, (bool, int, float, datetime.date)):
        return " (YAML reads unquoted no/yes/on/off, numbers and dates as such: quote the text, e.g. \"no\")"
    return ""


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known in {cls.__name__}: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # a dataclass's own __post_init__ checks
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _field_type(dotted: str, cls: type) -> Any:
    """The annotation of a dotted key of the dataclass `cls` (`optim.lr` -> float), or None for an unknown key."""
    tp: Any = cls
    for part in dotted.split("."):
        if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _wants_text(tp: Any) -> bool:
    """True for `str`, a Literal of strings, or an optional one of those (no number or bool alternative)."""
    if tp is str:
        return True
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return bool(args) and all(isinstance(a, str) for a in args)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return any(_wants_text(a) for a in rest) and not any(a in (bool, int, float) for a in rest)
    return False


def _is_text_scalar(value: Any) -> bool:
    return isinstance(value, str) or value is None


def _override_value(key: str, raw: str, cls: type) -> Any:
    """Parse one override value as YAML, keeping text as written where the target field is text."""
    if not raw.strip():
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {key}={raw}: not a YAML value ({yaml_problem(err)})") from None
    tp = _field_type(key, cls)
    if tp is None:
        return value
    if _wants_text(tp) and not _is_text_scalar(value) and not isinstance(value, (list, dict)):
        return raw.strip()  # `mixed_precision=no`, `logging.run_name=2024`: the text, not False / 2024
    origin = typing.get_origin(tp)
    item = typing.get_args(tp)[0] if origin in (list, tuple) and typing.get_args(tp) else None
    if isinstance(value, list) and item is not None and _wants_text(item) and not all(map(_is_text_scalar, value)):
        text = yaml.load(raw, Loader=yaml.BaseLoader)  # every scalar as a string: `[to_q, on]` keeps "on"
        if isinstance(text, list):
            return text
    return value


def parse_overrides(overrides: list[str] | None, cls: type) -> dict[str, Any]:
    """["optim.lr=1e-4", "data.frames=9"] -> {"optim": {"lr": "1e-4"}, "data": {"frames": 9}}.

    Values are parsed as YAML, but a field typed as text (str, a Literal of strings) of the dataclass
    `cls` gets the text as written: `mixed_precision=no` is "no", not false.
    """
    data: dict[str, Any] = {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        _set_dotted(data, key, _override_value(key, raw, cls))
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (line and column, counted from 1)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if isinstance(err, yaml.constructor.ConstructorError) and "tag" in problem:
        problem += " (only plain YAML is read: no Python objects)"
    return where + " ".join(problem.split())


def read_yaml(path: str | Path) -> Any:
    """The plain YAML of a file (`yaml.safe_load`: a tag such as !!python/object is refused, never run);
    ConfigError in one line naming the file and the place for a syntax error, a tag or undecodable text."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(err)}") from None


def build_dataclass(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass `cls` built from a (nested) mapping, every key and value checked (ConfigError)."""
    return _build(cls, data)


def load_dataclass_config(
    cls: type, path: str | Path | None, overrides: list[str] | None = None,
    validator: Callable[[Any], None] | None = None,
) -> Any:
    """Any config dataclass `cls` from a YAML file (or its defaults when `path` is None) and dotted overrides,
    every key and value checked against its annotations; `validator` adds cross-field checks (raising ConfigError)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    data = _merge(data, parse_overrides(overrides, cls))
    try:
        config = _build(cls, data)
        if validator is not None:
            validator(config)
        return config
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from err
