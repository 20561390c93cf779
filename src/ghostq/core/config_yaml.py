"""Reading a config: strict YAML (no duplicate keys, no recursive or exploding aliases) and dotted overrides.

Every problem is a one-line ConfigError naming the file (and line) or the override.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ghostq.core.errors import ConfigError

# Bounds on what aliases may expand to: json / pydantic copy every alias, so `&a [*b, *b, ...]` chains explode.
_MAX_YAML_NODES = 100_000
_MAX_YAML_DEPTH = 64


class StrictYAMLError(yaml.MarkedYAMLError):
    """YAML that PyYAML reads but a config must not hold: a duplicate key, a recursive or exploding alias."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, an alias inside its own anchor, and alias bombs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open_anchors: list[str | None] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose as PyYAML does, refusing an alias to an anchor whose node is still open (a cycle)."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise StrictYAMLError(
                    None, None, f"alias *{event.anchor} refers to its own anchor (a recursive structure)",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        self._open_anchors.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self._open_anchors.pop()

    def get_single_node(self) -> yaml.Node | None:
        """The document's node, refused when aliases expand it past the size or depth bounds."""
        node = super().get_single_node()
        if node is not None:
            size, depth = _expanded_shape(node, {})
            if size > _MAX_YAML_NODES or depth > _MAX_YAML_DEPTH:
                raise StrictYAMLError(
                    None, None,
                    f"the document expands to {size} values nested {depth} deep "
                    f"(limits: {_MAX_YAML_NODES} values, {_MAX_YAML_DEPTH} levels); check the aliases",
                    node.start_mark,
                )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key written twice (merge keys `<<` may still be overridden)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise StrictYAMLError(
                    None, None, f"duplicate key {key!r} (first written on line {first})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_shape(node: yaml.Node, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, depth) of a composed node once every alias is copied; memoised, so shared nodes cost once."""
    known = memo.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.SequenceNode):
        children = [_expanded_shape(c, memo) for c in node.value]
    elif isinstance(node, yaml.MappingNode):
        children = [_expanded_shape(c, memo) for pair in node.value for c in pair]
    else:
        children = []
    shape = (1 + sum(c[0] for c in children), 1 + max((c[1] for c in children), default=0))
    memo[id(node)] = shape
    return shape


def parse_yaml(text: str) -> Any:
    """Parse one YAML document strictly (no duplicate keys, no recursive or exploding aliases)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader


def _yaml_problem(err: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """(1-based line or None, one-line description) of a PyYAML error."""
    mark = getattr(err, "problem_mark", None)
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(err.position, 0)) + 1
        char = ord(err.character) if isinstance(err.character, str) else err.character
        return line, f"control character {char:#x} is not allowed"
    problem = str(getattr(err, "problem", None) or err)
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and problem.startswith("but "):
        problem = f"{context}, {problem}"
    elif context:
        problem += f" ({context}" + (f" on line {context_mark.line + 1})" if context_mark is not None else ")")
    return (mark.line + 1 if mark is not None else None), " ".join(problem.split())


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable, binary, empty or malformed file is a one-line ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror or err}") from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: a binary file (NUL bytes), not a YAML config")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); save it as UTF-8"
        ) from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        line, problem = _yaml_problem(err, text)
        where = f"{path}:{line}" if line is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty: write at least one section (e.g. `run: {{name: demo}}`)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(
    data: dict[str, Any], overrides: list[str], source: str = "command line"
) -> dict[str, Any]:
    """Apply `a.b=c` overrides (value parsed as YAML) to a nested dict, returning a new dict."""
    out = json.loads(json.dumps(_str_keys(data), default=str))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: override {item!r} is not of the form section.key=value")
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except StrictYAMLError as err:
            raise ConfigError(f"{source}: override {item!r}: {_yaml_problem(err, raw)[1]}") from None
        except (yaml.YAMLError, RecursionError):
            value = raw
        parts = key.strip().split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {'.'.join(parts[: depth + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _str_keys(node: Any) -> Any:
    """A copy with every mapping key as text (YAML allows dates, numbers or null as keys; JSON does not)."""
    if isinstance(node, dict):
        return {k if isinstance(k, str) else str(k): _str_keys(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_str_keys(v) for v in node]
    return node
