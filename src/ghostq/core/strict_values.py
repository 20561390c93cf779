"""Checks stricter than pydantic's lax mode where lax hides mistakes: a true/false given to a number or a text
(YAML also reads yes/no/on/off as booleans), and NaN / infinite floats."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a field annotation admits `kind` anywhere (itself, a union member, a Literal value, Any)."""
    if annotation is kind or annotation is Any:
        return True
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return any(type(a) is kind for a in args)
    return any(_accepts(a, kind) for a in args if not isinstance(a, (str, int, float)))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic section a field holds (directly or as `Section | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg) if get_origin(annotation) is not Literal else None
        if found is not None:
            return found
    return None


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)


def boolean_misuse(model: type[BaseModel], data: Any, prefix: str = "") -> dict[str, str]:
    """Dotted key -> problem for every true/false given to a field that is not a boolean (pydantic would
    silently read it as 1 / 0)."""
    problems: dict[str, str] = {}
    if not isinstance(data, dict):
        return problems
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue
        dotted = f"{prefix}{key}"
        section = _model_in(field.annotation)
        if section is not None and isinstance(value, dict):
            problems.update(boolean_misuse(section, value, dotted + "."))
        elif not _accepts(field.annotation, bool) and _holds_bool(value):
            problems[dotted] = (
                f"{dotted}: a boolean is not allowed here (got {value!r}; YAML also reads yes/no/on/off as booleans)"
            )
    return problems


def under(loc: tuple[Any, ...], dotted: str) -> bool:
    """Whether a pydantic error location is the dotted key or inside it."""
    key = ".".join(map(str, loc))
    return key == dotted or key.startswith(dotted + ".")


def non_finite(node: Any, key: str) -> list[str]:
    """Dotted keys of every NaN / infinite float in a validated model (sections whose base allows them too)."""
    if isinstance(node, BaseModel):
        return [k for name in type(node).model_fields for k in non_finite(getattr(node, name), f"{key}.{name}")]
    if isinstance(node, dict):
        return [k for name, v in node.items() for k in non_finite(v, f"{key}.{name}")]
    if isinstance(node, (list, tuple)):
        return [k for i, v in enumerate(node) for k in non_finite(v, f"{key}.{i}")]
    return [key] if isinstance(node, float) and not math.isfinite(node) else []
