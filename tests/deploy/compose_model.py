"""Read docker-compose files the way Docker Compose does, for the deploy tests (no Docker engine here).

Only what our files use is implemented, and the tests assert that they use nothing else:
- YAML with anchors and ``<<`` merge keys (PyYAML's safe loader) and Compose's ``!override`` / ``!reset`` tags;
- interpolation of ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:?err}``, ``${VAR?err}``,
  ``${VAR:+r}``, ``${VAR+r}`` in values (keys are never interpolated), as the Compose Specification describes;
  anything else after a ``$`` is an error, as in Compose ("invalid interpolation format");
- merging an override file: mappings merge key by key, ``!override`` replaces, ``!reset`` removes, scalars are
  replaced, ``command`` / ``entrypoint`` / ``healthcheck.test`` are replaced, other sequences are appended.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BASE_FILE = REPO / "docker-compose.yaml"
AWS_FILE = REPO / "docker-compose.aws.yaml"
REPLACED_SEQUENCES = {("command",), ("entrypoint",), ("healthcheck", "test")}


@dataclass(frozen=True)
class Override:
    """A value tagged ``!override``: replaces the base value instead of merging with it."""

    value: Any


@dataclass(frozen=True)
class Reset:
    """A value tagged ``!reset``: removes the base value."""


class ComposeLoader(yaml.SafeLoader):
    pass


def _construct_override(loader: ComposeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


ComposeLoader.add_constructor("!override", _construct_override)
ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())


def load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=ComposeLoader)  # noqa: S506 (a SafeLoader subclass)


class InterpolationError(ValueError):
    pass


_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)"
    r"|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<invalid>))"
)


def interpolate_string(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        name = match["braced"]
        if name is None:
            raise InterpolationError(f"invalid interpolation format in {text!r} at position {match.start()}")
        op, arg, value = match["op"], match["arg"] or "", env.get(name, "")
        present = name in env and (value != "" or not (op or "").startswith(":"))
        if op in ("-", ":-"):
            return value if present else arg
        if op in ("?", ":?"):
            if not present:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return value
        if op in ("+", ":+"):
            return arg if present else ""
        return value

    return _TOKEN.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, Override):
        return Override(interpolate(node.value, env))
    return node


def merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(override, Override):
        return copy.deepcopy(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, (*path, key))
            else:
                merged[key] = strip_tags(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and path[-2:] not in REPLACED_SEQUENCES \
            and path[-1:] not in REPLACED_SEQUENCES:
        return copy.deepcopy(base) + [v for v in override if v not in base]
    return strip_tags(override)


def strip_tags(node: Any) -> Any:
    """The document with ``!override`` values unwrapped and ``!reset`` keys dropped (the file read on its own)."""
    if isinstance(node, Override):
        return strip_tags(node.value)
    if isinstance(node, dict):
        return {k: strip_tags(v) for k, v in node.items() if not isinstance(v, Reset)}
    if isinstance(node, list):
        return [strip_tags(v) for v in node]
    return copy.deepcopy(node)


def tagged_paths(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Where ``!override`` / ``!reset`` appear."""
    if isinstance(node, Override):
        return [(path, "override"), *tagged_paths(node.value, path)]
    if isinstance(node, Reset):
        return [(path, "reset")]
    if isinstance(node, dict):
        return [hit for k, v in node.items() for hit in tagged_paths(v, (*path, str(k)))]
    if isinstance(node, list):
        return [hit for i, v in enumerate(node) for hit in tagged_paths(v, (*path, str(i)))]
    return []


def active_services(model: dict[str, Any], profiles: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Services ``docker compose up`` starts: those without profiles, or with an enabled one."""
    return {name: svc for name, svc in model["services"].items()
            if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def bind_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read_only) for the short volume syntax our files use."""
    mounts = {}
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"long volume syntax not handled by these tests: {volume}"
        source, target, *mode = volume.split(":")
        mounts[target] = (source, "ro" in mode)
    return mounts
