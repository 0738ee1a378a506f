"""The sandbox follows the published Streaming API shape (issue 10 item 1, issue 12 item 4):
per-insight field names, record and primitive unions, three writer-schema versions that Avro
resolves, and a stream with disorder, duplicates and late backlogs in the configured shares."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from tu_analytics.sandbox.encode import AvroEncoder
from tu_analytics.sandbox.fleet import CUSTOMERS, CustomerSpec, Fleet, build_fleet
from tu_analytics.sandbox.schemas.generate import (
    catalogue,
    is_hours,
    machine_insights,
    unit_field,
    value_field,
)
from tu_analytics.sandbox.simulator import SimConfig, SimRecord, Simulator, load_schemas

START = datetime(2026, 3, 4, tzinfo=UTC)  # Wednesday
V2, V3 = START + timedelta(hours=20), START + timedelta(hours=34)
END = START + timedelta(days=2)
IDS = {("insights", 1): 1, ("insights", 2): 2, ("insights", 3): 3, ("raw", 1): 9}
CAN = "com.trackunit.streaming."


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return build_fleet(3, [CustomerSpec("acme-rentals", 16, ("aalborg", "hamburg")),
                           CustomerSpec("mine", 8, ("newman",), CUSTOMERS[2].type_mix)])


@pytest.fixture(scope="module")
def records(fleet: Fleet) -> list[SimRecord]:
    return list(Simulator(fleet, seed=5, v2_from=V2, v3_from=V3).records(START, END))


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_value_and_unit_field_names_differ_per_insight_deterministically() -> None:
    names = [r["name"] for r in catalogue() if not is_hours(r)]
    styles = Counter("own name" if value_field(n) == n else value_field(n)
                     if value_field(n) in ("value", "Value") else "camel case" for n in names)
    assert set(styles) == {"own name", "value", "Value", "camel case"}
    assert min(styles.values()) >= 5
    units = Counter(unit_field(n) for n in names)
    assert units["unit"] > len(names) / 2
    assert len(units) == 3
    assert all("unit" in u.lower() and "unit" not in value_field(n).lower()
               for n in names for u in [unit_field(n)])
    assert [value_field(n) for n in names] == [value_field(n) for n in names]  # stable
    schema = load_schemas()[("insights", 1)]
    rec = _field(schema, "EngineFuelRate")["type"][1]
    assert [f["name"] for f in rec["fields"]] == [
        value_field("EngineFuelRate"), unit_field("EngineFuelRate"), "datetime"]


def test_enum_insights_are_strings_from_v1() -> None:
    schema = load_schemas()[("insights", 1)]
    for name in ("AfterTreatmentDieselParticulateFilterState",
                 "AfterTreatmentDieselParticulateFilterActiveRegenerationState"):
        rec = _field(schema, name)["type"][1]
        assert rec["fields"][0]["type"] == ["null", "string"]


def test_versions_change_only_what_avro_resolves() -> None:
    v1, v2, v3 = (machine_insights(v) for v in (1, 2, 3))
    names = [[f["name"] for f in s["fields"]] for s in (v1, v2, v3)]
    assert names[1][:len(names[0])] == names[0]  # fields only added, at the end
    assert names[2][:len(names[1])] == names[1]
    assert len(names[0]) < len(names[1]) < len(names[2])
    for s in (v2, v3):
        for f in s["fields"][len(v1["fields"]):]:
            assert f["default"] is None
            assert f["type"][0] == "null"
    parsed = [_can_item(s)["ParsedValue"] for s in (v1, v2, v3)]
    assert parsed == [["null", "double"], ["null", "double", "string"],
                      ["null", "double", "string"]]
    branches = [b["name"] for b in _can_item(v1)["CanMessageValues"][1:]]
    assert branches == ["CanMessageValue", "CanMessageMinMax", "CanMessageAccumulated"]
    assert _field(v1, "Location")["type"][1]["fields"][-1]["type"] == ["null", "long"]
    assert _field(v3, "Location")["type"][1]["fields"][-1]["type"] == [
        "null", {"type": "long", "logicalType": "timestamp-millis"}]


def _can_item(schema: dict[str, Any]) -> dict[str, Any]:
    item = _field(schema, "CANMessages")["type"][1]["items"]
    return {f["name"]: f["type"] for f in item["fields"]}


def test_three_versions_live_and_older_data_reads_with_newer_schemas(
        records: list[SimRecord]) -> None:
    by_version = Counter(r.schema_version for r in records if r.format == "insights")
    assert set(by_version) == {1, 2, 3}
    parsed = {k: fastavro.parse_schema(v) for k, v in load_schemas().items()}
    for old in (1, 2):
        sample = [r for r in records if r.format == "insights" and r.schema_version == old]
        for r in sample[:: max(1, len(sample) // 300)]:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed[("insights", old)], r.payload)
            for new in range(old + 1, 4):
                buf.seek(0)
                got = fastavro.schemaless_reader(buf, parsed[("insights", old)],
                                                 parsed[("insights", new)])
                assert isinstance(got, dict)
                assert got["Metadata"]["MachineId"] == r.payload["Metadata"]["MachineId"]
                assert got["Location"]["Latitude"] == r.payload["Location"]["Latitude"]


def test_can_messages_use_the_published_unions(records: list[SimRecord]) -> None:
    cans = [(r.schema_version, c) for r in records if r.format == "insights"
            for c in r.payload.get("CANMessages", [])]
    kinds = Counter(c["CanMessageValues"][0] for _, c in cans if "CanMessageValues" in c)
    assert set(kinds) == {CAN + "CanMessageValue", CAN + "CanMessageMinMax",
                          CAN + "CanMessageAccumulated"}
    strings = [(v, c) for v, c in cans if isinstance(c["ParsedValue"], str)]
    assert strings
    assert all(v >= 2 for v, _ in strings)  # v1's ParsedValue is double only


def test_encoder_matches_fastavro_on_every_version_and_union(fleet: Fleet,
                                                            records: list[SimRecord]) -> None:
    parsed = {k: fastavro.parse_schema(v) for k, v in load_schemas().items()}
    sim = Simulator(fleet, seed=5, v2_from=V2, v3_from=V3)
    encoded = [e for b in sim.encoded_batches(START, END, IDS) for e in b]
    assert len(encoded) == len(records)
    versions = {sid: k for k, sid in IDS.items()}
    seen = Counter()
    for (_, value, ts, _, _), r in zip(encoded, records, strict=True):
        key = versions[int.from_bytes(value[1:5], "big")]
        assert key == (r.format, r.schema_version)
        assert ts == r.receipt_ms
        if r.format == "insights" and ("CANMessages" in r.payload or seen[key] < 200):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed[key], r.payload)
            assert value[5:] == buf.getvalue()
            seen[key] += 1
    assert min(seen.values()) >= 200
    # The generic encoder takes the tagged union values as fastavro does (here on the bare
    # array schema, without the enclosing namespace).
    can = _field(load_schemas()[("insights", 3)], "CANMessages")["type"][1]
    datum = [{"ParsedValue": "N", "CanMessageValues": ("CanMessageAccumulated", {"value": 2.5})},
             {"ParsedValue": 1.0, "CanMessageValues": ("CanMessageValue", {"value": 1.0})}]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(can), datum)
    assert AvroEncoder(can).encode(datum) == buf.getvalue()
    with pytest.raises(TypeError, match="names no branch"):
        AvroEncoder(can).encode([{"CanMessageValues": ("Nope", {})}])


def _shares(fleet: Fleet, config: SimConfig) -> dict[str, float]:
    sim = Simulator(fleet, seed=5, v2_from=V2, v3_from=V3, config=config)
    top = back = late = 0
    messages: Counter[tuple[str, str, int]] = Counter()
    for r in sim.records(START, END):
        back += r.receipt_ms < top
        top = max(top, r.receipt_ms)
        measured = r.payload["Location"]["datetime"] if r.format == "insights" \
            else r.payload["time"]
        late += r.receipt_ms - measured > 15 * 60_000
        messages[(r.machine_id, r.format, measured)] += 1  # a machine measures once a ms
    n = sum(messages.values())
    return {"disorder": back / n, "duplicates": (n - len(messages)) / n, "late": late / n}


def test_disorder_duplicates_and_late_backlogs_in_their_shares(fleet: Fleet) -> None:
    plain = _shares(fleet, SimConfig(late_share=0.0, disorder_share=0.0, duplicate_share=0.0))
    assert plain["disorder"] == 0.0
    assert plain["duplicates"] == 0.0
    assert plain["late"] < 0.012  # only the ~1 % of one-by-one late records
    real = _shares(fleet, SimConfig())
    assert 0.005 < real["disorder"] < 0.03
    assert 0.002 < real["duplicates"] < 0.01
    assert 0.015 < real["late"] - plain["late"] < 0.08
    more = _shares(fleet, SimConfig(late_share=0.08))
    assert more["late"] > real["late"]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="late_share"):
        SimConfig(late_share=0.5)
    with pytest.raises(ValueError, match="duplicate_share"):
        SimConfig(duplicate_share=-0.1)
