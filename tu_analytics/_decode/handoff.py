"""The flattening hand-off: what the format's flattening needs from the decoder, and what not.

Machine Insights records carry ~140 insight records, each with its unit string. A unit never
changes for a given field, so keeping it per row wastes memory and decode time. The format
(``formats.machine_insights.insight_layout``, the one rule for an insight record's fields)
tells which field of each insight record is its unit; the decoder leaves those fields out of
the rows and reports the first string seen per field instead (``Decoded.units``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

import polars as pl

from .._avro import NAMED_KINDS, PRIMITIVES, fullname

__all__ = ["UNITS_SCHEMA", "unit_fields", "units_frame"]

UNITS_SCHEMA: Final = pl.Schema({"field": pl.String(), "raw_unit": pl.String()})

_KINDS: Final[Mapping[str, str]] = {
    "int": "count", "long": "count", "float": "double", "double": "double",
    "boolean": "boolean", "string": "string", "enum": "string",
}


def unit_fields(writer: Any) -> dict[str, str]:
    """Per top-level insight field of a Machine Insights writer schema: its unit field, when
    that is a (nullable) plain string. Empty for any other schema."""
    # Imported here: formats imports the decoder (dtypes), the decoder needs formats' rule.
    from ..formats import detect_format
    from ..formats.machine_insights import avro_insight_layout

    try:
        if detect_format(json.dumps(writer)) != "insights":
            return {}
    except (ValueError, TypeError, KeyError):
        return {}
    named = dict(_named(writer, writer.get("namespace")))
    out: dict[str, str] = {}
    for f in writer["fields"]:
        record = _record_of(f["type"], named, writer.get("namespace"))
        if record is None:
            continue
        kinds = {g["name"]: _kind(g["type"]) for g in record["fields"]}
        layout = avro_insight_layout(f["name"], kinds)
        unit = None if layout is None else layout[1]
        if unit is not None and _is_string(next(g["type"] for g in record["fields"]
                                                 if g["name"] == unit)):
            out[f["name"]] = unit
    return out


def _named(t: Any, ns: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named record definition in a schema, by full name."""
    if isinstance(t, list):
        for b in t:
            yield from _named(b, ns)
    elif isinstance(t, dict):
        kind = t.get("type")
        if kind in NAMED_KINDS:
            ns = t.get("namespace", ns)
            yield fullname(str(t["name"]), ns), t
            for f in t.get("fields", []):
                yield from _named(f["type"], ns)
        elif kind == "array":
            yield from _named(t["items"], ns)
        elif kind == "map":
            yield from _named(t["values"], ns)
        elif isinstance(kind, (dict, list)):
            yield from _named(kind, ns)


def _record_of(t: Any, named: Mapping[str, dict[str, Any]], ns: str | None) -> Any:
    """The record a field holds (through a nullable union or a named reference), or None."""
    t = _non_null(t)
    if isinstance(t, str) and t not in PRIMITIVES:
        t = named.get(fullname(t, ns)) or named.get(t)
    if isinstance(t, dict) and t.get("type") == "record":
        return t
    return None


def _non_null(t: Any) -> Any:
    if isinstance(t, list):
        real = [b for b in t if b != "null"]
        return real[0] if len(real) == 1 else None
    return t


def _kind(t: Any) -> str:
    """A field's kind for the insight rule (``formats.machine_insights.Kind``)."""
    t = _non_null(t)
    if isinstance(t, dict):
        if t.get("logicalType") and t["logicalType"] != "uuid":
            return "other"
        t = t["type"]
    return _KINDS.get(t, "other") if isinstance(t, str) else "other"


def _is_string(t: Any) -> bool:
    """A plain (nullable) ``string``: what the transcoder can leave out and remember."""
    return bool(_non_null(t) == "string")


def units_frame(pairs: Mapping[str, str | None]) -> pl.DataFrame:
    """``field``, ``raw_unit`` for the fields whose unit was seen."""
    seen = {f: u for f, u in pairs.items() if u is not None}
    return pl.DataFrame({"field": list(seen), "raw_unit": list(seen.values())},
                        schema=UNITS_SCHEMA)
