"""Typed, frozen parameters loaded from one section of ``params.yaml``.

Every command loads only the sections it needs::

    resample = params.load(ResampleParams, "steps.resample")

The dataclass *is* the schema: an unknown key, a missing required key or a value of the wrong
type is a :class:`ParamsError` that names the file, the dotted key and the fix. Nested
dataclasses, ``Optional[...]``, ``list[...]``/``tuple[...]`` and ``dict[str, ...]`` fields are
supported; everything else is taken as is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PATH = Path("params.yaml")


class ParamsError(ValueError):
    """A params file or section does not match its dataclass."""


def params_path() -> Path:
    """The params file in use: ``$SYNCHRORAMA_PARAMS`` or ``./params.yaml``."""
    return Path(os.environ.get("SYNCHRORAMA_PARAMS", DEFAULT_PATH))


def read_yaml(path: Path | str | None = None) -> dict[str, Any]:
    path = Path(path) if path is not None else params_path()
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root or set SYNCHRORAMA_PARAMS)")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    return data


def section(data: dict[str, Any], dotted: str, path: Path | str = "params.yaml") -> Any:
    """The value at ``dotted`` (``"steps.resample"``) in ``data``; a missing part names the key."""
    node: Any = data
    walked = []
    for part in dotted.split("."):
        walked.append(part)
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{path}: missing section '{'.'.join(walked)}' (add it to params.yaml)")
        node = node[part]
    return node


def load(cls: type[T], dotted: str | None, path: Path | str | None = None, data: dict | None = None) -> T:
    """Build ``cls`` from section ``dotted`` of the params file (``None`` = the whole file)."""
    path = Path(path) if path is not None else params_path()
    if data is None:
        data = read_yaml(path)
    raw = data if dotted is None else section(data, dotted, path)
    if raw is None:
        raw = {}
    return from_dict(cls, raw, where=f"{path}: {dotted or '<root>'}")


def from_dict(cls: type[T], raw: Any, where: str = "params") -> T:
    """Validate ``raw`` against dataclass ``cls`` (recursively) and build the frozen instance."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "(none)"
        raise ParamsError(f"{where}: unknown key '{unknown[0]}' (known keys: {known}); check for a typo")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{key}: required key is missing")
            continue
        kwargs[name] = _coerce(hints[name], raw[name], key)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # a dataclass's own checks (__post_init__)
        if isinstance(e, ParamsError):
            raise
        raise ParamsError(f"{where}: {e}") from e


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ParamsError as e:
                errors.append(str(e))
        raise ParamsError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ParamsError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ParamsError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def as_dict(obj: Any) -> dict[str, Any]:
    """A JSON-able dict of a params dataclass (for provenance and cache keys)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), sort_keys=True, default=str))


def fingerprint(obj: Any) -> str:
    """A stable sha256 of a params dataclass (or any JSON-able value)."""
    value = as_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
