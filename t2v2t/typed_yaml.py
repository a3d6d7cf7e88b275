"""Typed YAML: plain mappings (YAML files, dotted ``key=value`` overrides) into dataclasses.

The engine under the project's configs (``t2v2t/training/config.py``, ``t2v2t/retrieval/
settings.py``): each value is checked against its field's annotation (no ``eval``), and every
mistake raises :class:`ConfigError` with a one-line message naming the dotted key and what to do.
A ``bool`` field may accept extra words through its metadata, ``field(metadata={WORDS: {...}})``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from t2v2t.errors import ExpectedError

# Field metadata key: words a setting also accepts, mapped to the value each stands for.
WORDS = "words"


class ConfigError(ExpectedError, ValueError):
    """A config that cannot be used; the message is one line meant for the user."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping (``yaml.safe_load``); errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML in {path}{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; ConfigError names ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null", "~") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        # A null entry removes it: `data.sources.cc3m=null` pre-trains on WebVid alone.
        return {
            str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items() if v is not None
        }
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as the number it means.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def _unknown_key(key: str, name: str, known: list[str]) -> ConfigError:
    parent = key[: -len(name)]  # "optim." for "optim.lrr"
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(parent + c) for c in close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (known here: {', '.join(known)})")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (possibly partial) mapping, type-checking each value."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            raise _unknown_key(key, str(name), list(fields))
        words = fields[name].metadata.get(WORDS)
        if words and isinstance(value, str):
            value = words.get(value.lower(), value)
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], value parsed as a YAML scalar/list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value (e.g. optim.lr=3e-5)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # e.g. an unbalanced quote: keep the text; the type check decides
    return key.split("."), value


def check_path(parts: Sequence[str], cls: type, prefix: Sequence[str] = ()) -> None:
    """Fail early, naming the whole dotted key, when an override addresses no field.

    ``prefix``: the section ``cls`` stands at (``["eval"]``), so messages name the whole key."""
    tp: Any = cls
    parts = [*prefix, *parts]
    for i, part in enumerate(parts):
        if i < len(prefix):
            continue
        key = ".".join(parts[: i + 1])
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
            origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                raise _unknown_key(key, part, list(hints))
            tp = hints[part]
        elif origin is dict:
            tp = typing.get_args(tp)[1]  # a new source name is allowed: it adds a source
        else:
            raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[:i])} is not a section")


def set_override(tree: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    """Set ``a.b.c`` (``parts``) to ``value`` in ``tree``, making missing sections."""
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str], cls: type) -> dict[str, Any]:
    """Set each dotted ``key=value`` in a copy of ``tree``, each key checked against ``cls``."""
    out = deep_merge({}, tree)
    for item in overrides:
        parts, value = parse_override(item)
        check_path(parts, cls)
        set_override(out, parts, value)
    return out
