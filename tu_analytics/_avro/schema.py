"""Avro schema naming: primitives, full names, namespaces and named-type resolution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

__all__ = ["NAMED_KINDS", "PRIMITIVES", "NamedTypes", "branch_name", "fullname", "namespace_of"]

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED_KINDS: Final = frozenset({"record", "error", "enum", "fixed"})

T = TypeVar("T")


def fullname(name: str, namespace: str | None) -> str:
    """A name made full by Avro's rule: a dotted name is full already."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def namespace_of(full: str) -> str | None:
    return full.rpartition(".")[0] or None


def branch_name(t: Any) -> str:
    """The short name of a union branch: the type name, or a named type's own name."""
    if isinstance(t, str):
        return t.rpartition(".")[2]
    kind = t["type"]
    return str(t["name"]).rpartition(".")[2] if kind in NAMED_KINDS else branch_name(kind)


class NamedTypes(Generic[T]):
    """Named types seen so far in one schema walk, each with what a compiler made of it.

    A reference is looked up by its full name in the current namespace, then as written.
    """

    def __init__(self) -> None:
        self._defs: dict[str, tuple[Mapping[str, Any], T]] = {}

    def define(self, schema: Mapping[str, Any], namespace: str | None, value: T) -> str:
        """Register ``schema`` (a named type) and return its full name."""
        full = fullname(str(schema["name"]), schema.get("namespace", namespace))
        self._defs[full] = (schema, value)
        return full

    def lookup(self, name: str, namespace: str | None) -> tuple[str, Mapping[str, Any], T]:
        """(full name, definition, value) of a reference; ``KeyError`` when unknown."""
        for key in (fullname(name, namespace), name):
            if key in self._defs:
                schema, value = self._defs[key]
                return key, schema, value
        raise KeyError(f"unknown Avro type {name!r}")

    def __contains__(self, full: str) -> bool:
        return full in self._defs
