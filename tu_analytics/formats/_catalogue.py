"""The Machine Insights catalogue (``machine_insights.csv``): names, units, value types."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources
from typing import Final, Literal

ValueType = Literal["double", "boolean", "count", "enum"]
VALUE_TYPES: Final[frozenset[str]] = frozenset({"double", "boolean", "count", "enum"})


@dataclass(frozen=True)
class Insight:
    name: str
    unit: str | None
    value_type: ValueType
    enum_values: tuple[str, ...]
    deprecated: bool
    replaced_by: str | None

    @property
    def is_hours(self) -> bool:
        """Published as ``{Hour, datetime}`` rather than ``{value, unit, datetime}``."""
        return self.name.startswith("Cumulative") and self.name.endswith("Hours")


@functools.cache
def catalogue() -> dict[str, Insight]:
    """Every catalogued insight by name, in the CSV's order (read on first use)."""
    text = resources.files(__package__).joinpath("machine_insights.csv").read_text("utf-8")
    return {row["name"]: _insight(row) for row in csv.DictReader(io.StringIO(text))}


def _insight(row: dict[str, str]) -> Insight:
    vt = row["value_type"]
    if vt not in VALUE_TYPES:
        raise ValueError(f"insight {row['name']!r}: unknown value_type {vt!r}")
    return Insight(
        name=row["name"],
        unit=row["unit"] or None,
        value_type=vt,  # type: ignore[arg-type]
        enum_values=tuple(row["enum_values"].split("|")) if row["enum_values"] else (),
        deprecated=row["deprecated"].strip().lower() == "true",
        replaced_by=row["replaced_by"] or None,
    )
