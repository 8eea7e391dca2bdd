"""Typed dataclass configs from YAML: `base:` inheritance, dotted overrides, strict key and type checks.

Generic over any dataclass tree; vimi's own sections and defaults live in vimi.config.
"""

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from vimi.errors import ConfigError


def from_dict(cls: type, data: Any, source: str = "<dict>", prefix: str = "", override_sources=None):
    """Build dataclass `cls` from nested dicts, rejecting unknown keys and wrong types."""
    override_sources = override_sources or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix or 'config'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        where = override_sources.get(dotted, source)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(names)})"
            raise ConfigError(f"{where}: unknown config key '{dotted}'{hint}")
        kwargs[key] = _check_value(hints[key], value, dotted, where, source, override_sources)
    return cls(**kwargs)


def missing_keys(cls: type, data: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields of dataclass `cls` (nested sections too) that `data` does not set."""
    hints = typing.get_type_hints(cls)
    missing = []
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in data:
            missing.append(dotted)
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(data[f.name], dict):
            missing += missing_keys(hints[f.name], data[f.name], dotted)
    return missing


def to_dict(cfg: Any) -> dict:
    def convert(value):
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(dataclasses.asdict(cfg))


def read_yaml_with_bases(path: Path, seen: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: `base:` links form a cycle: {' -> '.join(map(str, (*seen, path)))}")
    if not path.is_file():
        where = f" (named as a base of {seen[-1]})" if seen else ""
        raise ConfigError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    bases = data.pop("base", None) or []
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, read_yaml_with_bases(path.parent / base, (*seen, path)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected section.key=value")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
    node[parts[-1]] = value


def _check_value(tp, value, dotted, where, source, override_sources):
    def bad(expected: str):
        return ConfigError(f"{where}: config key '{dotted}' expects {expected}, got {value!r}")

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, dotted, override_sources)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(inner[0], value, dotted, where, source, override_sources)
    if origin is Literal:
        if value not in args:
            raise bad("one of " + ", ".join(repr(a) for a in args))
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads `3e-3` (no dot) as a string; accept what Python reads as a number.
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise bad(f"a list ({tp})")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise bad(f"a list of {len(args)} values")
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        items = [
            _check_value(t, v, f"{dotted}[{i}]", where, source, override_sources)
            for i, (t, v) in enumerate(zip(item_types, value))
        ]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad("a mapping")
        return {
            k: _check_value(args[1], v, f"{dotted}.{k}", where, source, override_sources)
            for k, v in value.items()
        }
    return value
