"""The sandbox's fleet simulator and its Avro encoder (in memory; no broker)."""

from __future__ import annotations

import io
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import fastavro
import pytest
from fastavro.validation import validate

from tu_analytics.sandbox.encode import AvroEncoder, encode_long
from tu_analytics.sandbox.fleet import SITES, CustomerSpec, Fleet, build_fleet
from tu_analytics.sandbox.schemas.generate import unit_field, value_field
from tu_analytics.sandbox.sim.sparse import SparseRecordWriter
from tu_analytics.sandbox.simulator import SimRecord, Simulator, geohash, load_schemas

# Friday 00:00 UTC to Tuesday 00:00 UTC: two weekdays around a weekend.
START = datetime(2026, 3, 6, tzinfo=UTC)
END = START + timedelta(days=4)
V2_FROM = START + timedelta(days=1, hours=7, minutes=13)
SCHEMA_IDS = {("insights", 1): 101, ("insights", 2): 102, ("raw", 1): 201}
COUNTERS = (
    "CumulativeOperatingHours", "CumulativeIdleHours", "CumulativeEngineHours",
    "CumulativeProductiveHours", "CumulativeMovingHours", "EngineTotalFuelUsed",
    "EngineTotalIdleFuelUsed", "TotalVehicleDistance", "CumulativeCO2Emissions",
    "GeneratorTotalKwHoursExport", "BatteryChargeCyclesCount",
    "BatteryChargerCumulativeInputEnergy", "BatteryCumulativeDischargedEnergy",
)
RAW_COUNTERS = ("run1", "run2", "runOdo", "km", "input1ChangeCounter", "input2ChangeCounter")
LAMPS = ("AmberWarningLamp", "MalfunctionIndicatorLamp", "ProtectLamp", "RedStopLamp")


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return build_fleet(7, [
        CustomerSpec("acme-rentals", 14, ("aalborg", "aarhus", "hamburg")),
        CustomerSpec("northwind-build", 12, ("london", "birmingham", "chicago")),
    ])


@pytest.fixture(scope="module")
def records(fleet: Fleet) -> list[SimRecord]:
    return list(Simulator(fleet, seed=3, v2_from=V2_FROM).records(START, END))


@pytest.fixture(scope="module")
def schemas() -> dict[tuple[str, int], Any]:
    return {k: fastavro.parse_schema(v) for k, v in load_schemas().items()}


def measured(payload: Any) -> Iterator[int]:
    """Every measurement time in a payload (``datetime``/``time`` at any depth)."""
    if isinstance(payload, dict):
        for k, v in payload.items():
            if k in ("datetime", "time", "datetimeCleared") and isinstance(v, int):
                yield v
            else:
                yield from measured(v)
    elif isinstance(payload, list):
        for v in payload:
            yield from measured(v)


def val(p: dict[str, Any], insight: str) -> Any:
    """An insight's value in a payload (its value field's name differs per insight)."""
    rec = p.get(insight)
    if rec is None:
        return None
    return rec["Hour"] if "Hour" in rec else rec[value_field(insight)]


def measure_ms(r: SimRecord) -> int:
    return r.payload["Location"]["datetime"] if r.format == "insights" else r.payload["time"]


# -- fleet --------------------------------------------------------------------------------------

def test_default_fleet_has_60_machines_of_many_kinds() -> None:
    f = build_fleet()
    assert len(f.machines) >= 60
    assert len(f.customers) >= 2
    assert set(f.customers) == {m.customer for m in f.machines}
    types = Counter(m.type for m in f.machines)
    for t in ("excavator", "wheel loader", "telehandler", "scissor lift", "generator",
              "compressor", "light tower"):
        assert types[t] >= 2, t
    assert sum(m.kin for m in f.machines) >= 5
    assert len({m.oem for m in f.machines}) >= 8
    assert len({m.machine_id for m in f.machines}) == len(f.machines)
    assert len({(m.customer, m.equipment_id) for m in f.machines}) == len(f.machines)
    for m in f.machines:
        assert len(m.pin) == 17
        assert m.serial_number == m.pin
        assert (m.unit_id is None) == m.kin
        assert m.home_site in m.sites
        assert {s.tz for s in m.sites} == {m.home_site.tz}
        assert m.equipment_id.split("-")[1].isdigit()
    assert build_fleet() == f  # deterministic
    assert build_fleet(8).machines[0].machine_id != f.machines[0].machine_id


def test_custom_customers_and_validation() -> None:
    f = build_fleet(1, [CustomerSpec("solo", 5, ("odense",), {"excavator": 1.0})])
    assert [m.type for m in f.machines] == ["excavator"] * 5
    assert [m.equipment_id for m in f.machines] == [f"EX-00{i}" for i in range(1, 6)]
    with pytest.raises(ValueError, match="unknown"):
        build_fleet(1, [CustomerSpec("x", 3, ("atlantis",))])
    with pytest.raises(ValueError, match="unique"):
        build_fleet(1, [CustomerSpec("x", 3, ("odense",)), CustomerSpec("x", 2, ("odense",))])


def test_geohash_known_values() -> None:
    assert geohash(57.64911, 10.40744, 11) == "u4pruydqqvj"  # Wikipedia's example
    assert geohash(57.048273, 9.947384) == "u4phd376qbg5"  # Trackunit's published example
    assert geohash(-25.382708, -49.265506) == "6gkzwgjzn820"
    assert len(geohash(0.0, 0.0)) == 12


# -- determinism --------------------------------------------------------------------------------

def test_same_seed_same_records_and_split_windows_match(
        fleet: Fleet, records: list[SimRecord]) -> None:
    mid = START + timedelta(days=1, hours=13, minutes=7, seconds=3)
    again = list(Simulator(fleet, seed=3, v2_from=V2_FROM).records(START, END))
    assert again == records
    sim = Simulator(fleet, seed=3, v2_from=V2_FROM)
    split = list(sim.records(START, mid)) + list(sim.records(mid, END))
    assert split == records
    # A fresh simulator asked only for the second half agrees too (state chains from epoch).
    fresh = list(Simulator(fleet, seed=3, v2_from=V2_FROM).records(mid, END))
    assert fresh == [r for r in records if r.receipt_ms >= ms(mid)]
    hour = START + timedelta(hours=3)
    other = list(Simulator(fleet, seed=4, v2_from=V2_FROM).records(START, hour))
    assert other != [r for r in records if r.receipt_ms < ms(hour)]


def test_live_one_second_windows_continue_the_backfill(fleet: Fleet) -> None:
    t0 = START + timedelta(hours=8)  # Friday morning: machines are working
    sim = Simulator(fleet, seed=3)
    list(sim.records(START, t0))
    live: list[SimRecord] = []
    t = t0
    for _ in range(600):
        live += sim.records(t, t + timedelta(seconds=1))
        t += timedelta(seconds=1)
    assert live == list(Simulator(fleet, seed=3).records(t0, t))
    assert len(live) > 20


def test_encoded_batches_match_records_and_fastavro(
        fleet: Fleet, records: list[SimRecord], schemas: dict[tuple[str, int], Any]) -> None:
    sim = Simulator(fleet, seed=3, v2_from=V2_FROM)
    batches = list(sim.encoded_batches(START, END, SCHEMA_IDS, batch_size=1000))
    assert all(len(b) <= 1000 for b in batches)
    flat = [x for b in batches for x in b]
    assert len(flat) == len(records)
    for (key, value, receipt, customer, fmt), r in zip(flat, records, strict=True):
        assert (key, receipt, customer, fmt) == (r.machine_id.encode(), r.receipt_ms,
                                                 r.customer, r.format)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schemas[(r.format, r.schema_version)], r.payload)
        sid = SCHEMA_IDS[(r.format, r.schema_version)]
        assert value == b"\x00" + sid.to_bytes(4, "big") + buf.getvalue()
    with pytest.raises(KeyError, match="insights"):
        next(iter(Simulator(fleet, seed=3, v2_from=V2_FROM).encoded_batches(
            START, END, {("raw", 1): 1})))


# -- payload shape ------------------------------------------------------------------------------

def test_payloads_validate_against_their_schemas(
        fleet: Fleet, records: list[SimRecord], schemas: dict[tuple[str, int], Any]) -> None:
    # fastavro's validation costs ~0.4 ms a record: validate every record that brings a field
    # not yet validated for its (format, version, machine type), and every 40th record.
    covered: dict[tuple[str, int, str], set[str]] = defaultdict(set)
    types = {m.machine_id: m.type for m in fleet.machines}
    checked = 0
    for i, r in enumerate(records):
        seen = covered[(r.format, r.schema_version, types[r.machine_id])]
        if set(r.payload) <= seen and i % 40:
            continue
        seen.update(r.payload)
        validate(r.payload, schemas[(r.format, r.schema_version)], raise_errors=True)
        checked += 1
    assert checked > 300
    assert {r.format for r in records} == {"insights", "raw"}


def test_messages_carry_realistic_subsets(fleet: Fleet, records: list[SimRecord]) -> None:
    kin = {m.machine_id for m in fleet.machines if m.kin}
    insights = [r for r in records if r.format == "insights"]
    assert not any(r.format == "raw" and r.machine_id in kin for r in records)
    for r in insights:
        assert r.payload["Metadata"]["MachineId"] == r.machine_id
        assert "Location" in r.payload
        if r.machine_id in kin:
            assert set(r.payload) == {"EquipmentHeader", "Metadata", "Location"}
    n_insights = [sum(1 for k in r.payload if k[0].isupper() and "datetime" in str(
        r.payload[k])) - 2 for r in insights if r.machine_id not in kin]  # minus Location(+Addr)
    assert 5 <= statistics.median(n_insights) <= 15
    counts = Counter(k for r in insights for k in r.payload)
    for field in ("FaultCodes", "LocationAddress", "LocationMetadata", "CANMessages",
                  "AdvancedSensors", "AccessControlKeyUsage", "EngineFuelRate", "FuelLevel",
                  "BatteryStateOfChargePercent", "AfterTreatmentDieselExhaustFluidTankLevel",
                  "GeneratorTotalKwHoursExport", "TotalVehicleDistance"):
        assert counts[field] > 0, field
    addr = next(r.payload["LocationAddress"] for r in insights if "LocationAddress" in r.payload)
    assert len(addr["GeoHash"]) == 12
    assert addr["Country"] in {s.country for s in SITES.values()}


def test_positions_stay_near_the_customers_sites(fleet: Fleet, records: list[SimRecord]) -> None:
    by_id = {m.machine_id: m for m in fleet.machines}

    def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
        return 6371.0 * math.hypot(x, math.radians(lat2 - lat1))

    near = far = 0
    for r in records:
        loc = r.payload["Location"] if r.format == "insights" else r.payload["location"]
        lat, lon = (loc["Latitude"], loc["Longitude"]) if r.format == "insights" else (
            loc["latitude"], loc["longitude"])
        if min(km(lat, lon, s.lat, s.lon) for s in by_id[r.machine_id].sites) < 1.0:
            near += 1
        else:
            far += 1  # on a truck between sites
    assert far / (near + far) < 0.02


# -- the two clocks -----------------------------------------------------------------------------

def test_receipt_order_range_and_never_before_measurement(records: list[SimRecord]) -> None:
    receipts = [r.receipt_ms for r in records]
    # In order but for the timestamps a parallel writer moved back by at most 3 minutes.
    top = 0
    back = []
    for t in receipts:
        if t < top:
            back.append(top - t)
        top = max(top, t)
    assert 0.003 < len(back) / len(receipts) < 0.05
    assert max(back) <= 180_000
    assert ms(START) - 180_000 <= receipts[0] < ms(START) + 15 * 60_000
    assert ms(END) - 15 * 60_000 < receipts[-1] < ms(END)
    for r in records:
        assert max(measured(r.payload)) <= r.receipt_ms


def test_about_one_percent_arrive_late_and_out_of_order(records: list[SimRecord]) -> None:
    delays = [r.receipt_ms - max(measured(r.payload)) for r in records]
    late = sum(d > 60_000 for d in delays) / len(delays)
    # ~1 % late one by one, ~3 % (late_share) held back by coverage outages
    assert 0.015 <= late <= 0.08
    assert statistics.median(delays) < 10_000  # usually seconds
    assert max(delays) <= 6 * 3_600_000
    last: dict[tuple[str, str], int] = {}
    out_of_order = 0
    for r in records:
        key = (r.machine_id, r.format)
        t = measure_ms(r)
        if t < last.get(key, 0):
            out_of_order += 1
        last[key] = max(t, last.get(key, 0))
    assert out_of_order > 0


# -- physics ------------------------------------------------------------------------------------

def test_counters_never_decrease_in_measurement_time(records: list[SimRecord]) -> None:
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        p = r.payload
        if r.format == "insights":
            for k in COUNTERS:
                if k in p:
                    series[(r.machine_id, k)].append(
                        (p[k]["datetime"], val(p, k)))
        else:
            for k in RAW_COUNTERS:
                series[(r.machine_id, k)].append((p["time"], p[k]))
    assert len(series) > 100
    for key, points in series.items():
        values = [v for _, v in sorted(points)]
        assert all(b >= a for a, b in itertools.pairwise(values)), key
    grew = [k for k, pts in series.items() if k[1] == "CumulativeOperatingHours"
            and max(v for _, v in pts) > min(v for _, v in pts)]
    assert len(grew) >= 5


def test_raw_run_counters_agree_with_operating_hours(records: list[SimRecord]) -> None:
    op: dict[str, list[tuple[int, float]]] = defaultdict(list)
    run1: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        if r.format == "insights" and "CumulativeOperatingHours" in r.payload:
            h = r.payload["CumulativeOperatingHours"]
            op[r.machine_id].append((h["datetime"], h["Hour"]))
        elif r.format == "raw":
            run1[r.machine_id].append((r.payload["time"], r.payload["run1"]))
    checked = 0
    for mid, pts in op.items():
        pts.sort()
        raw = sorted(run1[mid])
        # increments over the overlap of both series
        t0, t1 = max(pts[0][0], raw[0][0]), min(pts[-1][0], raw[-1][0])
        a = [v for t, v in pts if t0 <= t <= t1]
        b = [v for t, v in raw if t0 <= t <= t1]
        if len(a) < 2 or len(b) < 2:
            continue
        # Sampled at different instants: allow the growth between neighbouring samples.
        assert abs((a[-1] - a[0]) - (b[-1] - b[0]) / 3600.0) < 0.75, mid
        checked += 1
    assert checked >= 10


def test_levels_stay_within_physical_bounds(records: list[SimRecord]) -> None:
    seen: Counter[str] = Counter()
    for r in records:
        p = r.payload
        for k in ("FuelLevel", "BatteryStateOfChargePercent",
                  "AfterTreatmentDieselExhaustFluidTankLevel", "EnginePercentLoadAtCurrentSpeed"):
            if k in p:
                assert 0.0 <= val(p, k) <= 100.0, (k, p[k])
                seen[k] += 1
        if "BatteryPotential" in p:
            assert 10.0 < val(p, "BatteryPotential") < 30.0
        if "EngineFuelRate" in p:
            assert 0.0 <= val(p, "EngineFuelRate") < 60.0
    assert min(seen.values()) > 10


def test_fuel_burns_with_the_engine_and_tanks_get_refilled(records: list[SimRecord]) -> None:
    fuel: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for r in records:
        p = r.payload
        if "FuelLevel" in p and "EngineTotalFuelUsed" in p:
            fuel[r.machine_id].append((p["FuelLevel"]["datetime"], val(p, "FuelLevel"),
                                       val(p, "EngineTotalFuelUsed")))
    drops = rises = 0
    for pts in fuel.values():
        pts.sort()
        for (_, l1, u1), (_, l2, u2) in itertools.pairwise(pts):
            if u2 > u1 + 1.0:  # burnt fuel: the tank level went down unless refuelled
                drops += l2 < l1
                rises += l2 > l1 + 20  # refuel
            if u2 == u1:
                assert abs(l2 - l1) <= 0.2  # engine off: the level stays put (to rounding)
    assert drops > 20
    assert rises >= 1


def test_electric_lifts_discharge_at_work_and_charge_overnight(
        fleet: Fleet, records: list[SimRecord]) -> None:
    lifts = {m.machine_id for m in fleet.machines if m.type == "scissor lift"}
    soc: dict[str, list[tuple[int, float, bool | None]]] = defaultdict(list)
    for r in records:
        p = r.payload
        if r.machine_id in lifts and "BatteryStateOfChargePercent" in p:
            charging = val(p, "BatteryChargerState")
            soc[r.machine_id].append((p["BatteryStateOfChargePercent"]["datetime"],
                                      val(p, "BatteryStateOfChargePercent"), charging))
    assert soc
    up = down = 0
    for pts in soc.values():
        pts.sort()
        for (_, a, _), (_, b, _) in itertools.pairwise(pts):
            up += b > a + 1
            down += b < a - 1
    assert up > 0
    assert down > 0
    assert any(c for pts in soc.values() for _, _, c in pts)


def test_faults_are_raised_and_later_cleared(records: list[SimRecord]) -> None:
    raised: dict[tuple[str, str, int], int] = {}
    cleared: dict[tuple[str, str, int], tuple[int, int]] = {}
    for r in records:
        for fc in r.payload.get("FaultCodes") or []:
            key = (r.machine_id, fc["CodeIdentifier"], fc["datetime"])
            assert fc["CodeSeverity"].isdigit()
            assert 0 <= int(fc["CodeSeverity"]) <= 100
            assert fc["CodeDescription"]
            assert fc["CodeSource"]
            if fc["datetimeCleared"] is None:
                raised[key] = measure_ms(r)
            else:
                cleared[key] = (fc["datetimeCleared"], measure_ms(r))
    assert len(raised) >= 3
    assert any("-" in k[1] and k[1].split("-")[0].isdigit() for k in raised)  # SPN-FMI
    # Every clear follows its raise; raises late in the window may still be open.
    assert set(cleared) <= set(raised)
    for key, (when, carried_at) in cleared.items():
        assert key[2] < when <= carried_at
        assert carried_at > raised[key]
    assert len(cleared) >= len(raised) - 2


# -- rhythm -------------------------------------------------------------------------------------

def test_messages_are_frequent_when_working_and_sparse_when_off(
        fleet: Fleet, records: list[SimRecord]) -> None:
    diesel = {m.machine_id for m in fleet.machines if m.kind == "diesel"}
    by_machine: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.format == "insights" and r.machine_id in diesel:
            by_machine[r.machine_id].append(r.payload)
    gaps: dict[str, list[float]] = defaultdict(list)
    for ps in by_machine.values():
        ps.sort(key=lambda p: p["Location"]["datetime"])
        for a, b in itertools.pairwise(ps):
            gap = (b["Location"]["datetime"] - a["Location"]["datetime"]) / 60_000
            if val(a, "OperationStatus") is True:
                gaps["working"].append(gap)
            elif val(a, "EngineStatus") is False:
                gaps["off"].append(gap)
    assert 1.0 <= statistics.median(gaps["working"]) <= 2.5
    assert 20.0 <= statistics.median(gaps["off"]) <= 60.0


def test_weekends_are_quieter_than_weekdays(fleet: Fleet, records: list[SimRecord]) -> None:
    by_id = {m.machine_id: m for m in fleet.machines}
    per_machine_day: Counter[tuple[str, date]] = Counter()
    for r in records:
        if r.format == "insights":
            tz = ZoneInfo(by_id[r.machine_id].home_site.tz)
            local = datetime.fromtimestamp(measure_ms(r) / 1000, tz)
            per_machine_day[(r.machine_id, local.date())] += 1
    counts: dict[bool, list[int]] = {True: [], False: []}
    for (mid, day), n in per_machine_day.items():
        tz = ZoneInfo(by_id[mid].home_site.tz)
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        if midnight >= START and midnight + timedelta(days=1) <= END:  # whole local days
            counts[day.weekday() >= 5].append(n)
    assert counts[True]
    assert counts[False]
    assert statistics.mean(counts[True]) < 0.5 * statistics.mean(counts[False])


def test_schema_v2_from_its_receipt_instant(records: list[SimRecord]) -> None:
    for r in records:
        if r.format == "raw":
            assert r.schema_version == 1
        elif r.receipt_ms >= ms(V2_FROM) + 10 * 60_000:  # (a resend keeps its first version)
            assert r.schema_version == 2
        elif r.receipt_ms < ms(V2_FROM) - 3 * 60_000:  # (disorder moves stamps back <= 3 min)
            assert r.schema_version == 1
        if r.schema_version == 1:
            assert not set(LAMPS) & set(r.payload)
    v2 = [r for r in records if r.schema_version == 2]
    assert v2
    assert any(set(LAMPS) <= set(r.payload) for r in v2)
    assert all(isinstance(r.payload[k][value_field(k)], bool) for r in v2 for k in LAMPS
               if k in r.payload)


def test_no_v2_without_v2_from(fleet: Fleet) -> None:
    recs = list(Simulator(fleet, seed=3).records(START, START + timedelta(hours=12)))
    assert recs
    assert {r.schema_version for r in recs} == {1}
    assert list(Simulator(fleet).records(START, START)) == []
    with pytest.raises(ValueError, match="time-zone"):
        list(Simulator(fleet).records(datetime(2026, 3, 6), datetime(2026, 3, 7)))


def test_formats_filter(fleet: Fleet) -> None:
    a, b = START + timedelta(hours=9), START + timedelta(hours=10)
    both = list(Simulator(fleet, seed=3).records(a, b))
    raw = list(Simulator(fleet, seed=3).records(a, b, formats=("raw",)))
    assert raw == [r for r in both if r.format == "raw"]
    with pytest.raises(ValueError, match="unknown formats"):
        list(Simulator(fleet).records(a, b, formats=("csv",)))  # type: ignore[arg-type]


# -- encoder ------------------------------------------------------------------------------------

KITCHEN_SINK: dict[str, Any] = {
    "type": "record", "name": "Sink", "namespace": "t",
    "fields": [
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "boolean"},
        {"name": "s", "type": "string"},
        {"name": "by", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "arr", "type": {"type": "array", "items": "long"}},
        {"name": "mp", "type": {"type": "map", "values": "string"}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "opt_last", "type": ["string", "null"]},
        {"name": "multi", "type": ["null", "long", "string"]},
        {"name": "sub", "type": {"type": "record", "name": "Sub", "fields": [
            {"name": "x", "type": ["null", "double"], "default": None},
            {"name": "y", "type": ["null", "E"], "default": None},
        ]}},
        {"name": "subs", "type": {"type": "array", "items": "Sub"}},
        {"name": "dflt", "type": "long", "default": 42},
    ],
}


@pytest.mark.parametrize("datum", [
    {"i": 0, "l": 0, "f": 0.0, "d": 0.0, "b": False, "s": "", "by": b"", "fx": b"abcd",
     "e": "A", "arr": [], "mp": {}, "ts": 0, "opt_last": None, "multi": None,
     "sub": {}, "subs": []},
    {"i": -1, "l": -(2**63), "f": 1.5, "d": -1e300, "b": True, "s": "Gasværksvej 24 °C",
     "by": bytes(range(256)), "fx": b"\x00\xff\x00\xff", "e": "C", "arr": [1, -64, 63, 64, 2**40],
     "mp": {"k": "v", "ø": "å"}, "ts": 1_700_000_000_123, "opt_last": "x", "multi": 7,
     "sub": {"y": "B", "x": 2.5}, "subs": [{"x": 1.0}, {"y": "A"}, {}], "dflt": -5},
    {"i": 2**31 - 1, "l": 2**63 - 1, "f": -0.25, "d": float("inf"), "b": True, "s": "a" * 300,
     "by": b"\x00", "fx": b"1234", "e": "B", "arr": list(range(-200, 200, 7)), "mp": {"a": ""},
     "ts": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "opt_last": "", "multi": "s",
     "sub": {"x": None}, "subs": [{}]},
])
def test_generic_encoder_matches_fastavro(datum: dict[str, Any]) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(KITCHEN_SINK), datum)
    assert AvroEncoder(KITCHEN_SINK).encode(datum) == buf.getvalue()


def test_encoder_zigzag_and_errors() -> None:
    assert encode_long(0) == b"\x00"
    assert encode_long(-1) == b"\x01"
    assert encode_long(1) == b"\x02"
    assert encode_long(-65) == b"\x81\x01"
    assert encode_long(2**63 - 1) == b"\xfe" + b"\xff" * 8 + b"\x01"
    opt = {"type": "record", "name": "R", "fields": [
        {"name": "a", "type": ["null", "long"], "default": None},
        {"name": "b", "type": ["null", "string"], "default": None}]}
    enc = AvroEncoder(opt)
    assert enc.encode({"b": "x", "a": 1}) == enc.encode({"a": 1, "b": "x"}) == b"\x02\x02\x02\x02x"
    assert enc.framed(7, {}) == b"\x00\x00\x00\x00\x07\x00\x00"
    with pytest.raises(KeyError):
        enc.encode({"nope": 1})


def test_sparse_writer_matches_fastavro_on_the_insights_schema(
        schemas: dict[tuple[str, int], Any]) -> None:
    raw_schema = load_schemas()[("insights", 2)]
    units = {"EngineFuelRate": "l/h", "FuelLevel": "%"}
    w = SparseRecordWriter(raw_schema, units)
    ix = w.index
    t = 1_772_000_000_000
    entries: list[tuple[int, Any, int | None]] = sorted([
        (ix["EquipmentHeader"], w.preencode("EquipmentHeader", {"OEMName": "JCB"}), None),
        (ix["Location"], {"Latitude": 1.5, "Longitude": -2.5, "datetime": t}, None),
        (ix["CumulativeOperatingHours"], 12.25, t),
        (ix["AfterTreatmentDieselParticulateFilterState"], "SAE_SPECIFIC_2", t - 5),
        (ix["BatteryChargeCyclesCount"], 1234567, t),
        (ix["EngineFuelRate"], 12.5, t),
        (ix["EngineStatus"], True, t + 1),
        (ix["FuelLevel"], 55.0, t),
        (ix["FaultCodes"], [{"CodeIdentifier": "100-1", "datetime": t,
                             "datetimeCleared": None}], None),
        (ix["RedStopLamp"], False, t),
    ], key=lambda e: e[0])
    d = w.to_dict(entries)
    assert d["EngineFuelRate"] == {value_field("EngineFuelRate"): 12.5,
                                   unit_field("EngineFuelRate"): "l/h", "datetime": t}
    assert "unit" not in d["EngineStatus"]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas[("insights", 2)], d)
    assert w.encode(entries) == buf.getvalue()
    assert w.framed(9, entries) == b"\x00\x00\x00\x00\x09" + buf.getvalue()
    with pytest.raises(ValueError, match="order"):
        w.encode(list(reversed(entries)))


def test_windows_before_the_epoch_are_refused(fleet: Fleet) -> None:
    sim = Simulator(fleet, epoch=START)
    with pytest.raises(ValueError, match="epoch"):
        list(sim.records(START - timedelta(hours=1), START + timedelta(hours=1)))
    # Right at the epoch machines report from their start state.
    assert list(sim.records(START, START + timedelta(hours=6)))
