"""Test helper: the published shape's insight records, read by the formats' one rule.

Each insight's value field is named after the insight and some unit fields are named
otherwise (streaming_format.md), so tests find them with ``insight_layout`` rather than by a
literal ``value``/``unit`` name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tu_analytics.formats.machine_insights import avro_insight_layout

# Avro type -> the rule's field kind (formats.machine_insights.Kind).
_KINDS: Final = {"int": "count", "long": "count", "float": "double", "double": "double",
                 "boolean": "boolean", "string": "string", "enum": "string"}
# Published epoch-ms time fields (plain ``long`` in v1/v2, ``timestamp-millis`` in v3).
TIME_FIELDS: Final = frozenset({"datetime", "datetimeCleared", "UnitInstallDateTime"})
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _branch(t: Any) -> Any:
    real = [b for b in t if b != "null"] if isinstance(t, list) else [t]
    return real[0] if len(real) == 1 else None


def _kind(t: Any) -> str:
    b = _branch(t)
    name = b.get("type") if isinstance(b, dict) else b
    return _KINDS.get(name, "other") if isinstance(name, str) else "other"


def insight_layouts(schema: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Per top-level insight field of a Machine Insights writer schema: (value field, unit
    field or None), by ``formats.machine_insights.insight_layout``."""
    named: dict[str, dict[str, Any]] = {}
    out: dict[str, tuple[str, str | None]] = {}
    for f in schema["fields"]:
        rec = _branch(f["type"])
        if isinstance(rec, str):  # a reference to a record defined earlier
            rec = named.get(rec)
        if not isinstance(rec, dict) or rec.get("type") != "record":
            continue
        named[f"{rec.get('namespace', '')}.{rec['name']}".lstrip(".")] = rec
        layout = avro_insight_layout(f["name"], {g["name"]: _kind(g["type"])
                                                for g in rec["fields"]})
        if layout is not None:
            out[f["name"]] = layout
    return out


def value_field(schema: dict[str, Any], insight: str) -> str:
    """The value field of ``insight``'s record in ``schema``."""
    return insight_layouts(schema)[insight][0]


def utc_ms(v: Any) -> Any:
    """A published time (epoch ms, or the datetime Confluent gives for timestamp-millis) as
    the UTC datetime the frames hold; None stays None."""
    if v is None or isinstance(v, datetime):
        return v
    return EPOCH + timedelta(milliseconds=v)
