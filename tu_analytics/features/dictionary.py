"""The feature dictionary: name, unit, definition, as-of rule and source fields of every column.

One entry per column :func:`~tu_analytics.features.table.feature_table` can produce, in the
order the table has them: :data:`ENTRIES` is the single list of features (the table selects
its output columns from it, so the two cannot drift). The table's ``.dictionary`` is this list
restricted to its actual columns, so a stored feature table always explains itself.

Every entry names one of the as-of rules in :data:`AS_OF_RULES`, which say exactly which
readings (measurement time ``m``, receipt time ``k``) a row may use. :data:`SEMANTICS_VERSION`
changes whenever any feature's meaning changes; it is stored with every table and training
set so a saved model never meets features that silently mean something else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import polars as pl

__all__ = [
    "AS_OF_RULES",
    "DICTIONARY_SCHEMA",
    "ENTRIES",
    "FEATURE_NAMES",
    "SEMANTICS_VERSION",
    "Entry",
    "feature_dictionary",
]

#: Bump on every change of a feature's meaning; record it in the CHANGELOG.
#: 1: first release. 2: cut-off column, identity as of the cut-off, explicit per-feature
#: as-of rules, cutoff rows (values of version-1 columns unchanged).
SEMANTICS_VERSION = 2

#: Row ``r`` covers ``[bucket_start, bucket_end)`` and is final at its cut-off
#: ``cutoff_time = bucket_end + allowed_latency`` (for cutoff rows: the given time, latency 0).
AS_OF_RULES: dict[str, str] = {
    "key": "Row key or bucket arithmetic; no readings involved.",
    "window": (
        "Readings measured in [bucket_start, bucket_end) and received by cutoff_time. A reading "
        "received later never joins any bucket's window features (its own bucket is closed; "
        "a later bucket would be rewriting history)."
    ),
    "counter": (
        "Increase between consecutive counter readings that were each received by the cut-off "
        "of the bucket they were measured in; the interval's whole increase goes to the bucket "
        "of its later reading. An interval spanning bucket_end is never split: at the cut-off "
        "the counter value at bucket_end is unknown (no reading measured after bucket_end may "
        "be used), so the rest of the interval lands in the bucket of the next on-time "
        "reading. A late reading is skipped; the next on-time interval spans it, so no usage "
        "is lost. Null (unknown, never 0) when no valid interval ends in the bucket."
    ),
    "as_of": (
        "State at bucket_end: every reading measured before bucket_end and received by "
        "cutoff_time, late or not, as of that moment. Later data never changes a past row."
    ),
    "identity": (
        "Latest non-null value among records received by cutoff_time (receipt order); later "
        "records never rewrite a past row. Null until the first such record."
    ),
    "derived": "Computed from other columns of the same row only; inherits their rules.",
}


class Entry(NamedTuple):
    """One dictionary row; ``rule`` is a key of :data:`AS_OF_RULES` (``None``: from the
    definition's wording, see :func:`_rule`)."""

    name: str
    unit: str
    definition: str
    source_fields: tuple[str, ...]
    rule: str | None = None


DICTIONARY_SCHEMA = pl.Schema(
    {
        "name": pl.String(),
        "unit": pl.String(),
        "definition": pl.String(),
        "as_of_rule": pl.String(),
        "as_of": pl.String(),
        "source_fields": pl.List(pl.String()),
    }
)

_PIT = (
    " Point in time: only readings measured in the bucket and received by bucket end plus "
    "allowed_latency."
)
_DELTA = (
    " Sum of counter increases between consecutive on-time readings whose later reading lies "
    "in the bucket (credited to the bucket that revealed them); resets and impossible jumps "
    "count 0; null when no valid interval ends in the bucket."
)
_ASOF = " As of bucket end: every reading measured before it and received by it plus latency."

_STATS: tuple[tuple[str, str, str, str], ...] = (
    ("battery_v", "volt", "battery potential", "BatteryPotential"),
    ("def_level_pct", "percent", "DEF tank level", "AfterTreatmentDieselExhaustFluidTankLevel"),
    ("coolant_temp_c", "degrees Celsius", "engine coolant temperature", "EngineCoolantTemperature"),
    ("ambient_temp_c", "degrees Celsius", "ambient air temperature", "AmbientAirTemperature"),
)


def _stat_entries() -> list[Entry]:
    out: list[Entry] = []
    for prefix, unit, what, field in _STATS:
        src = (field, f"{field}_datetime")
        out += [
            Entry(f"{prefix}_mean", unit, f"Mean {what} over readings in the bucket." + _PIT, src),
            Entry(f"{prefix}_min", unit, f"Minimum {what} in the bucket." + _PIT, src),
            Entry(f"{prefix}_max", unit, f"Maximum {what} in the bucket." + _PIT, src),
            Entry(
                f"{prefix}_last",
                unit,
                f"Latest (by measurement time) {what} in the bucket." + _PIT,
                src,
            ),
        ]
    return out


def _hours(name: str, counter: str) -> list[Entry]:
    src = (counter, f"{counter}_datetime")
    return [
        Entry(f"{name}_hours", "hours", f"Increase of {counter}." + _DELTA, src),
        Entry(
            f"{name}_ratio",
            "ratio",
            f"{name}_hours / bucket_hours. Can exceed 1 when a long interval is credited to "
            "one bucket.",
            src,
        ),
    ]


def _identity_entries() -> list[Entry]:
    what = {
        "EquipmentID": "Customer's own equipment name (e.g. EX-001)",
        "OEMName": "Manufacturer",
        "Model": "Model name",
    }
    site = Entry(
        "site",
        "",
        "Site the machine is at, by the rules of tu_analytics.sites: the machine's latest "
        "City, else the City first reported most recently by a machine within ~1 km, else "
        "the nearest Natural Earth place (or the position to 0.1 deg). Always present; never "
        "null once the machine has a position or a City." + _ASOF + " Other machines count "
        "the same way (their City readings available by the row's cut-off).",
        ("City", "LocationAddress_datetime", "Latitude", "Longitude", "Location_datetime"),
    )
    named = [
        Entry(n, "", f"{w}, as known at cutoff_time.", (n,), "identity") for n, w in what.items()
    ]
    return [*named, site]


#: Columns whose rule the wording of their definition does not give.
_RULES: dict[str, str] = {
    "MachineId": "key",
    "bucket_start": "key",
    "bucket_end": "key",
    "bucket_hours": "key",
    "cutoff_time": "key",
    "operating_ratio": "derived",
    "idle_ratio": "derived",
    "engine_ratio": "derived",
    "fuel_rate_lph": "derived",
    "counter_resets": "counter",
    "counter_gaps": "counter",
    "distance_km": "counter",
    "distance_source": "derived",
    "fault_count": "window",
    "fault_max_severity": "window",
    "record_count": "window",
    "max_gap_minutes": "window",
}


def _rule(e: Entry) -> str:
    if e.rule is not None:
        return e.rule
    if e.name in _RULES:
        return _RULES[e.name]
    if _DELTA in e.definition:
        return "counter"
    return "as_of" if _ASOF in e.definition else "window"


ENTRIES: tuple[Entry, ...] = (
    Entry("MachineId", "", "Trackunit machine UUID (key).", ("MachineId",)),
    Entry("bucket_start", "UTC datetime", "Start of the bucket [start, end) (key).", ()),
    Entry("bucket_end", "UTC datetime", "End of the bucket (exclusive).", ()),
    Entry("bucket_hours", "hours", "Bucket length.", ()),
    Entry(
        "cutoff_time",
        "UTC datetime",
        "The moment the row is final and may be served: bucket_end + allowed_latency (for "
        "cutoff rows, the requested cutoff). Nothing received after it is used.",
        ("kafka_timestamp",),
    ),
    *_identity_entries(),
    *_hours("operating", "CumulativeOperatingHours"),
    *_hours("idle", "CumulativeIdleHours"),
    *_hours("engine", "CumulativeEngineHours"),
    Entry(
        "fuel_used_l",
        "litres",
        "Increase of EngineTotalFuelUsed." + _DELTA,
        ("EngineTotalFuelUsed", "EngineTotalFuelUsed_datetime"),
    ),
    Entry(
        "idle_fuel_used_l",
        "litres",
        "Increase of EngineTotalIdleFuelUsed." + _DELTA,
        ("EngineTotalIdleFuelUsed", "EngineTotalIdleFuelUsed_datetime"),
    ),
    Entry(
        "fuel_rate_lph",
        "litres per hour",
        "fuel_used_l / operating_hours: fuel per hour of operation; null when operating_hours "
        "is null or 0.",
        ("EngineTotalFuelUsed", "CumulativeOperatingHours"),
    ),
    Entry(
        "counter_resets",
        "count",
        "Intervals of the six counters above (hours, fuel, odometer) ending in the bucket whose "
        "counter went down (reset, device swap, offset edit).",
        (
            "CumulativeOperatingHours",
            "CumulativeIdleHours",
            "CumulativeEngineHours",
            "EngineTotalFuelUsed",
            "EngineTotalIdleFuelUsed",
            "TotalVehicleDistance",
        ),
    ),
    Entry(
        "counter_gaps",
        "count",
        "Intervals of those counters ending in the bucket with a physically impossible increase "
        "(rate above max_rate), counted as jumps, not usage.",
        (
            "CumulativeOperatingHours",
            "CumulativeIdleHours",
            "CumulativeEngineHours",
            "EngineTotalFuelUsed",
            "EngineTotalIdleFuelUsed",
            "TotalVehicleDistance",
        ),
    ),
    Entry(
        "distance_km",
        "kilometres",
        "Increase of TotalVehicleDistance (as for hours) if any valid odometer interval ends in "
        "the bucket, else the haversine length of the path through consecutive on-time "
        "positions (segments ending in the bucket; steps implying > 150 km/h skipped).",
        ("TotalVehicleDistance", "Latitude", "Longitude", "Location_datetime"),
    ),
    Entry(
        "distance_source",
        "",
        "'odometer' or 'gps': where distance_km came from; null when distance_km is null.",
        ("TotalVehicleDistance", "Latitude", "Longitude"),
    ),
    Entry(
        "latitude",
        "degrees",
        "Latitude of the latest known position (largest Location_datetime)." + _ASOF,
        ("Latitude", "Location_datetime"),
    ),
    Entry(
        "longitude",
        "degrees",
        "Longitude of the latest known position (largest Location_datetime)." + _ASOF,
        ("Longitude", "Location_datetime"),
    ),
    Entry(
        "position_count",
        "count",
        "Distinct positions (by Location_datetime) in the bucket; (0, 0) and out-of-range "
        "positions ignored." + _PIT,
        ("Latitude", "Longitude", "Location_datetime"),
    ),
    Entry(
        "dispersion_m",
        "metres",
        "Radius of gyration of the bucket's positions: root mean square distance from their "
        "centroid (equirectangular approximation)." + _PIT,
        ("Latitude", "Longitude", "Location_datetime"),
    ),
    Entry(
        "geohash6_cells",
        "count",
        "Distinct geohash cells of precision 6 (about 1.2 km x 0.6 km) holding the bucket's "
        "positions, computed from Latitude/Longitude." + _PIT,
        ("Latitude", "Longitude", "Location_datetime"),
    ),
    Entry(
        "time_on_site",
        "ratio",
        "Share of the bucket's positions within site_radius_m (default 100 m) of the bucket's "
        "median position (component-wise median of latitude and longitude)." + _PIT,
        ("Latitude", "Longitude", "Location_datetime"),
    ),
    Entry(
        "fault_count",
        "count",
        "Fault occurrences (MachineId, CodeIdentifier, datetime) raised in the bucket and "
        "received by bucket end plus allowed_latency.",
        ("fault_codes.CodeIdentifier", "fault_codes.datetime"),
    ),
    Entry(
        "faults_active",
        "count",
        "Fault occurrences raised and not cleared (datetimeCleared) at bucket end." + _ASOF,
        ("fault_codes.CodeIdentifier", "fault_codes.datetime", "fault_codes.datetimeCleared"),
    ),
    Entry(
        "fault_max_severity",
        "severity (0-100)",
        "Largest numeric CodeSeverity among faults counted in fault_count; text severities "
        "('High', free text) are not parsed and count as missing.",
        ("fault_codes.CodeSeverity",),
    ),
    Entry(
        "fault_new_codes",
        "count",
        "CodeIdentifiers first known for the machine in this bucket (never seen in any earlier "
        "bucket of this table)." + _ASOF,
        ("fault_codes.CodeIdentifier", "fault_codes.datetime"),
    ),
    *_stat_entries(),
    Entry(
        "record_count",
        "count",
        "Records of the machine received (kafka_timestamp) during the bucket; a record whose "
        "fields were all measured later (clock ahead) counts in the bucket of its earliest "
        "measurement; records without any measured field are not counted.",
        ("kafka_timestamp", "*_datetime"),
    ),
    Entry(
        "max_gap_minutes",
        "minutes",
        "Largest interval between consecutive distinct on-time measurement times of the "
        "machine (any field's *_datetime) that ends in the bucket; null if none ends in it.",
        ("*_datetime",),
    ),
    Entry(
        "staleness_minutes",
        "minutes",
        "bucket_end minus the newest measurement time known at bucket end; null if none." + _ASOF,
        ("*_datetime", "kafka_timestamp"),
    ),
)

_BY_NAME = {e.name: e for e in ENTRIES}
#: Every column a feature table can have, in table order.
FEATURE_NAMES: tuple[str, ...] = tuple(_BY_NAME)


def feature_dictionary(columns: Iterable[str] | None = None) -> pl.DataFrame:
    """Dictionary rows for ``columns`` (in that order), or for every known feature.

    Raises ``KeyError`` for a column without an entry, so a table can never ship undocumented
    features.
    """
    names = list(_BY_NAME) if columns is None else list(columns)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise KeyError(f"no dictionary entry for feature(s) {unknown}")
    rows = [_BY_NAME[n] for n in names]
    return pl.DataFrame(
        {
            "name": [r.name for r in rows],
            "unit": [r.unit for r in rows],
            "definition": [r.definition for r in rows],
            "as_of_rule": [_rule(r) for r in rows],
            "as_of": [AS_OF_RULES[_rule(r)] for r in rows],
            "source_fields": [list(r.source_fields) for r in rows],
        },
        schema=DICTIONARY_SCHEMA,
    )
