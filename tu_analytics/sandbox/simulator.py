"""Simulated Trackunit telemetry: Machine Insights and RAW records for the sandbox.

The model, per machine and *local* calendar day (the home site's time zone):

1. **Plan** the day from its start state: does the machine work today (weekday/weekend odds,
   its own utilisation, weeks off rent), shift times, lunch, alternating working/idle blocks,
   engine-off pauses, a relocation to another site, overnight charging for electric lifts.
   The plan is a list of contiguous *segments*; each carries the value of every cumulative
   counter at its start and a constant rate, so a counter at any instant is
   ``start + rate * (t - t0)``: counters cannot decrease and every message reports values
   consistent with every other message. Refuels and DEF top-ups happen at segment starts.
2. **Messages** of the day: times follow the state (every 1-2 min working, ~5 min idle,
   30-60 min heartbeats off, an immediate message at ignition/work changes); each message
   carries a random, state-dependent subset of the machine's insights. Each has a receipt
   delay (seconds; ~1 % minutes to hours late), which makes the Kafka timestamp.

Determinism: every random draw comes from a ``random.Random`` seeded by (seed, machine, day,
purpose), and a day's start state is the previous day's end state, chained from ``epoch``
(checkpointed). So any window of receipt times is a pure function of (fleet, seed, v2_from,
epoch, window): generating [a, b) then [b, c) equals generating [a, c), and a fresh simulator
gives the same records as a long-running one. Windows may not start before ``epoch``
(the first seek chains ~50 µs per machine-day from there: ~1 s for 64 machines x 330 days).

Two clocks: ``SimRecord.receipt_ms`` (and the Kafka timestamp a producer should use) is when
the platform received the record; every ``datetime`` in the payload is when it was measured.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import heapq
import json
import math
import random
import statistics
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from tu_analytics.sandbox.encode import AvroEncoder, Preencoded, SparseRecordWriter
from tu_analytics.sandbox.fleet import Fleet, Machine, Site

__all__ = [
    "DEFAULT_EPOCH",
    "LATE_SHARE",
    "MAX_DELAY_MS",
    "SimRecord",
    "Simulator",
    "geohash",
    "load_schemas",
]

SimFormat = Literal["insights", "raw"]
EncodedRecord = tuple[bytes, bytes, int, str, str]

DEFAULT_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)
MAX_DELAY_MS: Final = 6 * 3_600_000  # the latest a record may arrive after its measurement
LATE_SHARE: Final = 0.01  # share of records that arrive minutes to hours late
_NORMAL_DELAY_CAP_MS: Final = 30_000  # on-time records arrive within 30 s
_SLICE_MS: Final = 3_600_000  # internal merge step: bounds memory on long backfills
_CHECKPOINT_EVERY: Final = 8  # days between stored start states

_UNIX_ORD: Final = date(1970, 1, 1).toordinal()
_DAY_MS: Final = 86_400_000
_H_MS: Final = 3_600_000.0
_FORMATS: Final[tuple[SimFormat, ...]] = ("insights", "raw")

# Segment states (_PLUG_IN is transient: the moment a lift's charger is connected)
OFF, IDLE, WORK, TRANSPORT, CHARGING, PLUGGED, _PLUG_IN = range(7)
_ON = (False, True, True, False, False, False, False)
# Seconds between Machine Insights messages per state (uniform in [lo, hi]).
_INTERVALS_S: Final[Mapping[int, tuple[int, int]]] = {
    OFF: (1800, 3600), IDLE: (270, 330), WORK: (60, 120), TRANSPORT: (60, 120),
    CHARGING: (900, 1800), PLUGGED: (1800, 3600),
}
_KIN_INTERVALS_S: Final = {True: (600, 1800), False: (3600, 7200)}  # seen on site / not
_RAW_INTERVALS_S: Final = {True: (540, 660), False: (3300, 3900)}  # ignition on / off
_RAW_TRANSPORT_S: Final = (300, 420)
_MAX_RELOCATION_KM: Final = 400.0  # further sites in the same zone are never trucked to

# Counter slots of a segment's start vector / rate vector.
(RUN, WRK, IDL, MOV, KM, TKM, FT, FI, FL, DEF, KWH, SOC, CHG, DIS) = range(14)
_N_COUNTERS: Final = 14
_ZERO_RATES: Final = [0.0] * _N_COUNTERS  # shared; never mutated

_CO2_PER_L: Final = 2.68  # kg CO2 per litre of diesel
_CO2_PER_KWH: Final = 0.2  # kg CO2 per kWh of grid electricity
_DEF_PER_L: Final = 0.04  # litres of DEF per litre of diesel at load
_CHARGE_PCT_H: Final = 12.5  # lift charger: empty to full in 8 h
_CHARGER_EFF: Final = 0.85

# Stream unit strings are short forms (S1: "km", "volt"); words in the catalogue.
_SHORT_UNITS: Final[Mapping[str, str]] = {
    "kilometres": "km", "kilometres per hour": "km/h", "litres": "l", "litres per hour": "l/h",
    "percent": "%", "degrees Celsius": "°C", "kilopascal": "kPa", "revolutions per minute": "rpm",
    "kilogram": "kg", "kilowatt-hours": "kWh", "volt": "volt", "ampere": "A", "watt": "W",
    "hertz": "Hz", "seconds": "s", "metres": "m", "g-force": "g", "degrees": "deg",
    "volt-ampere": "VA", "volt-ampere reactive": "var", "count": "count",
}


def load_schemas() -> dict[tuple[str, int], dict[str, Any]]:
    """The sandbox's writer schemas (parsed JSON) by (format, version)."""
    pkg = resources.files("tu_analytics.sandbox.schemas")
    files = {("insights", 1): "machine_insights_v1.avsc", ("insights", 2):
             "machine_insights_v2.avsc", ("raw", 1): "raw_v1.avsc"}
    return {k: json.loads(pkg.joinpath(f).read_text(encoding="utf-8")) for k, f in files.items()}


def _catalogue_units() -> dict[str, str | None]:
    text = resources.files("tu_analytics.formats").joinpath("machine_insights.csv").read_text(
        encoding="utf-8")
    out: dict[str, str | None] = {}
    for row in csv.DictReader(text.splitlines()):
        unit = row["unit"]
        out[row["name"]] = _SHORT_UNITS.get(unit, unit) if row["value_type"] in (
            "double", "count") and unit and unit != "not applicable" else None
    return out


_GEOHASH_ALPHABET: Final = "0123456789bcdefghjkmnpqrstuvwxyz"


def _spread(v: int) -> int:
    """Spread the low 32 bits of v to the even bit positions of a 64-bit integer."""
    v &= 0xFFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    return (v | (v << 1)) & 0x5555555555555555


def geohash(lat: float, lon: float, precision: int = 12) -> str:
    """Standard base-32 geohash (longitude bit first), up to 12 characters."""
    if not 1 <= precision <= 12:
        raise ValueError("precision must be 1..12")
    lat_i = min(int((lat + 90.0) / 180.0 * (1 << 30)), (1 << 30) - 1)
    lon_i = min(int((lon + 180.0) / 360.0 * (1 << 30)), (1 << 30) - 1)
    bits = (_spread(lon_i) << 1) | _spread(lat_i)  # 60 bits, lon first at every pair
    return "".join(
        _GEOHASH_ALPHABET[(bits >> (55 - 5 * k)) & 31] for k in range(precision)
    )


def _key(*parts: object) -> int:
    """A stable 64-bit key (``hash()`` of strings changes between processes)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


_M64: Final = (1 << 64) - 1


def _mix(key: int, *parts: int) -> int:
    """splitmix64 over ``parts``: a cheap stable hash for one-off draws."""
    h = key
    for p in parts:
        h = (h + p * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _M64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
        h ^= h >> 31
    return h


def _uniform01(h: int) -> float:
    return (h >> 11) * (1.0 / (1 << 53))


def _rng(key: int, *parts: int) -> random.Random:
    # Not for security: a reproducible stream per (machine, day, purpose).
    return random.Random(_mix(key, *parts))  # noqa: S311


# Purposes of the per-day random streams.
_P_PLAN, _P_MSG, _P_RENT, _P_SPOT = 1, 2, 3, 4


def _to_ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("use time-zone-aware datetimes (e.g. tzinfo=UTC)")
    return round(t.timestamp() * 1000)


def _haversine_km(a: Site, b: Site) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return int(math.degrees(math.atan2(x, y))) % 360


# ---------------------------------------------------------------------------------------------
# Static behaviour per machine type
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Behaviour:
    p_weekday: float  # chance of use on a weekday (times the machine's own utilisation)
    p_saturday: float
    p_sunday: float
    shift: tuple[float, float]  # local start/end hour
    lunch: bool  # engine off over lunch
    work_min: float  # mean length of a working block
    idle_min: float  # mean length of an idle block
    pause_p: float  # chance a gap between working blocks is engine-off instead of idle
    load: tuple[float, float]  # engine/generator load range while working
    move_share: float  # share of working time spent driving
    work_speed: float  # mean km/h while driving on site
    jitter_m: float  # position spread while working
    fault_rate: float  # expected new faults per working day
    p_reloc: float  # chance of a relocation on a weekday


_KIN = _Behaviour(0.75, 0.10, 0.02, (7.0, 16.0), False, 600, 1, 0.0, (0, 0), 0.3, 3, 40, 0, 0.03)
_BEHAVIOUR: Final[Mapping[str, _Behaviour]] = {
    "excavator": _Behaviour(0.8, 0.12, 0.02, (7.0, 16.5), True, 35, 14, 0.2, (0.35, 0.9),
                            0.05, 2.0, 30, 0.25, 0.02),
    "wheel loader": _Behaviour(0.8, 0.12, 0.02, (6.5, 16.5), True, 30, 12, 0.2, (0.3, 0.85),
                               0.6, 8.0, 70, 0.25, 0.02),
    "telehandler": _Behaviour(0.75, 0.10, 0.02, (7.0, 16.0), True, 12, 8, 0.35, (0.2, 0.7),
                              0.5, 6.0, 60, 0.15, 0.03),
    "scissor lift": _Behaviour(0.7, 0.08, 0.01, (7.0, 16.0), True, 5, 8, 0.4, (0.3, 0.9),
                               0.3, 1.5, 25, 0.08, 0.03),
    "generator": _Behaviour(0.75, 0.15, 0.05, (6.5, 17.5), False, 90, 15, 0.05, (0.25, 0.85),
                            0.0, 0.0, 1, 0.12, 0.015),
    "compressor": _Behaviour(0.6, 0.08, 0.01, (7.0, 16.0), True, 40, 10, 0.15, (0.4, 0.9),
                             0.0, 0.0, 2, 0.1, 0.02),
    "light tower": _Behaviour(0.6, 0.10, 0.02, (16.5, 21.5), False, 300, 5, 0.02, (0.8, 0.95),
                              0.0, 0.0, 1, 0.05, 0.02),
}


@dataclass(frozen=True, slots=True)
class _Fault:
    code: str  # CodeIdentifier: "SPN-FMI" for CAN, free text otherwise
    spn: int  # 0 when not a CAN fault
    fmi: int
    name: str
    description: str
    severity: str  # "0".."100"
    source: str  # CAN source address, or the reporting controller
    lamp: str  # which v2 lamp it lights: amber / red / mil / protect


def _can(spn: int, fmi: int, name: str, text: str, sev: int, sa: int, lamp: str) -> _Fault:
    return _Fault(f"{spn}-{fmi}", spn, fmi, name, f"{name} - {text}", str(sev), str(sa), lamp)


_BELOW = "Data valid but below normal operating range"
_ABOVE = "Data valid but above normal operating range"
_DIESEL_FAULTS: Final = (
    _can(100, 1, "Engine Oil Pressure", f"{_BELOW} - Most severe level", 90, 0, "red"),
    _can(110, 0, "Engine Coolant Temperature", f"{_ABOVE} - Most severe level", 85, 0,
         "protect"),
    _can(97, 15, "Water In Fuel Indicator", f"{_ABOVE} - Least severe level", 30, 0, "amber"),
    _can(168, 18, "Battery Potential / Power Input 1", f"{_BELOW} - Moderately severe level", 45,
         0, "amber"),
    _can(94, 18, "Engine Fuel Delivery Pressure", f"{_BELOW} - Moderately severe level", 50, 0,
         "amber"),
    _can(107, 15, "Engine Air Filter 1 Differential Pressure", f"{_ABOVE} - Least severe level",
         25, 0, "amber"),
    _can(175, 16, "Engine Oil Temperature 1", f"{_ABOVE} - Moderately severe level", 65, 0,
         "protect"),
    _can(629, 12, "Controller #1", "Bad intelligent device or component", 75, 0, "red"),
    _can(639, 9, "J1939 Network #1", "Abnormal update rate", 40, 3, "amber"),
    _can(1569, 31, "Engine Protection Torque Derate", "Condition exists", 70, 0, "protect"),
)
_EMISSION_FAULTS: Final = (
    _can(1761, 17, "Aftertreatment 1 Diesel Exhaust Fluid Tank Volume",
         f"{_BELOW} - Least severe level", 35, 61, "mil"),
    _can(3364, 18, "Aftertreatment 1 Diesel Exhaust Fluid Tank 1 Quality",
         f"{_BELOW} - Moderately severe level", 60, 61, "mil"),
    _can(3719, 16, "Aftertreatment 1 Diesel Particulate Filter Soot Load Percent",
         f"{_ABOVE} - Moderately severe level", 55, 61, "mil"),
    _can(5246, 0, "Aftertreatment SCR Operator Inducement Severity",
         f"{_ABOVE} - Most severe level", 80, 61, "red"),
)
_LIFT_FAULTS: Final = (
    _Fault("Tilt alarm", 0, 0, "Tilt alarm",
           "Machine tilted beyond limit; lift and drive disabled", "70", "Platform controller",
           "red"),
    _Fault("Platform overload", 0, 0, "Platform overload",
           "Load sensing: platform overloaded; lift disabled", "80", "Platform controller",
           "red"),
    _Fault("Low battery cutout", 0, 0, "Low battery cutout",
           "Battery voltage low; lift function cut out", "50", "Ground controller", "amber"),
    _Fault("Charger fault", 0, 0, "Charger fault",
           "Battery charger reported an internal fault", "40", "Charger", "amber"),
)

# Operators per customer for access control (digital keys / key cards).
_OPERATORS_PER_CUSTOMER: Final = 8
_ACCESS_TYPES: Final = ("KEY_CARD", "DIGITAL_KEY", "KEYPAD_USE", "ROLLING_PIN")

# RAW CAN variables: (variable id = J1939 SPN, name, unit)
_RAW_CAN_VARS: Final = (
    (190, "Engine Speed", "rpm"),
    (96, "Fuel Level", "%"),
    (110, "Engine Coolant Temperature", "°C"),
    (247, "Engine Total Hours of Operation", "h"),
    (250, "Engine Total Fuel Used", "L"),
)


# ---------------------------------------------------------------------------------------------
# Per-machine simulation state
# ---------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _State:
    """A machine at a local midnight: everything that carries from one day to the next."""

    site: int  # index into Machine.sites
    c: list[float]  # counters (see RUN..DIS)
    changes1: int  # input 1 (ignition) on/off changes since install
    changes2: int  # input 2 (working) changes
    cycles: int  # battery charge cycles
    plugged: bool  # electric: charger connected
    spot_day: int  # the day whose parking spot on ``site`` the machine stands at


class _Seg:
    """A stretch of constant state: counters at ``t0`` plus a rate per millisecond."""

    __slots__ = ("c0", "changes1", "changes2", "cycles", "lat0", "lat1", "load", "lon0", "lon1",
                 "r", "site", "speed", "st", "t0", "t1")

    def __init__(self, t0: int, t1: int, st: int, load: float, c0: list[float], r: list[float],
                 site: int) -> None:
        self.t0, self.t1, self.st, self.load = t0, t1, st, load
        self.c0, self.r, self.site = c0, r, site
        self.changes1 = self.changes2 = self.cycles = 0
        self.lat0 = self.lon0 = self.lat1 = self.lon1 = self.speed = 0.0


@dataclass(slots=True)
class _Plan:
    day: int
    d0: int
    d1: int
    base_ms: int  # UTC ms of local 00:00 on the clock of the day's noon offset
    segs: list[_Seg]
    faults: list[tuple[int, int, _Fault]]  # (raised, cleared, fault)
    operator: int  # index into the customer's operators
    end: _State


class _Unit:
    """Everything static the simulator derives once per machine."""

    __slots__ = (
        "access",
        "access_type",
        "b",
        "cands",
        "co2_0",
        "drain",
        "eng0",
        "epoch_day",
        "fault_pool",
        "h0",
        "has_def",
        "hdr",
        "hyd",
        "idle0",
        "idle_rpm",
        "init",
        "key",
        "kind",
        "lamps",
        "m",
        "meta",
        "move0",
        "prod0",
        "raw_static",
        "rich",
        "rkey",
        "temp_sensors",
        "tz",
        "util",
        "volts",
    )

    m: Machine
    b: _Behaviour
    tz: ZoneInfo
    kind: str
    util: float
    access: bool
    access_type: str
    rich: bool
    hyd: bool
    has_def: bool
    volts: float
    idle_rpm: float
    drain: float  # electric: %/h at full load
    h0: float  # CumulativeOperatingHours at install
    eng0: float
    idle0: float
    prod0: float
    move0: float
    co2_0: float
    epoch_day: int
    init: _State
    cands: list[tuple[int, float, float, Callable[[_Ctx], Any]]]
    lamps: list[tuple[int, str]]
    hdr: Preencoded
    meta: Preencoded
    key: bytes
    fault_pool: tuple[_Fault, ...]
    raw_static: dict[str, Any]
    rkey: int  # random-stream key of this machine under this simulator seed
    temp_sensors: int  # classic temperature inputs wired (RAW temperature1/2)


class _Ctx:
    """The machine at one message: what the insight getters read."""

    __slots__ = ("c", "cycles", "doy", "load", "local_h", "on", "plat", "rng", "speed", "st",
                 "t", "u", "z")

    def __init__(self, u: _Unit, rng: random.Random) -> None:
        self.u, self.rng = u, rng
        self.z = _normal(rng)  # standard normal draws (what gauss gives, ~5x cheaper)
        self.c: list[float] = [0.0] * _N_COUNTERS
        self.t = 0
        self.st = OFF
        self.load = 0.0
        self.on = False
        self.plat = 0.0
        self.cycles = 0
        self.speed = 0.0
        self.local_h = 0.0
        self.doy = 1


# ---------------------------------------------------------------------------------------------
# Insight getters: (ctx) -> value, or None to leave the insight out of this message
# ---------------------------------------------------------------------------------------------

@functools.cache
def _z_table() -> tuple[float, ...]:
    nd = statistics.NormalDist()
    n = 1 << 12
    return tuple(nd.inv_cdf((i + 0.5) / n) for i in range(n))


def _normal(rng: random.Random) -> Callable[[], float]:
    """Standard normal noise by table lookup (tails cut at ~3.5 sigma: fine for sensor noise)."""
    table = _z_table()
    rnd = rng.random
    n = float(len(table))

    def z() -> float:
        return table[int(rnd() * n)]
    return z


def _minutes(h: float) -> float:
    # Trackunit's hour counters have one-minute resolution (whole minutes as hours).
    return math.floor(h * 60.0) / 60.0


def _fuel_rate(c: _Ctx) -> float:
    s = c.u.m.spec
    if c.st == WORK:
        return s.idle_lph + (s.max_lph - s.idle_lph) * c.load
    return s.idle_lph if c.st == IDLE else 0.0


def _ambient(c: _Ctx) -> float:
    lat = c.u.m.home_site.lat
    season = -math.cos(2 * math.pi * (c.doy - 20) / 365.0)
    mean = 16.0 - 0.25 * (lat - 30.0) + (9.0 - 0.1 * (lat - 30.0)) * season
    return mean + 4.0 * math.sin(2 * math.pi * (c.local_h - 9.0) / 24.0)


def _batt_v(c: _Ctx) -> float:
    u = c.u
    if u.kind == "electric":
        if c.st == CHARGING:
            v = 27.6
        else:
            v = 23.0 + 2.6 * c.c[SOC] / 100.0 - (0.8 * c.load if c.st == WORK else 0.0)
        return round(v + 0.04 * c.z(), 2)
    return round(u.volts * (1.155 if c.on else 1.05) + 0.04 * c.z(), 2)


def _rpm(c: _Ctx) -> float:
    if c.st == WORK:
        return float(round(1350 + 550 * c.load + 35 * c.z()))
    return float(round(c.u.idle_rpm + 10 * c.z()))


def _gps_speed(c: _Ctx) -> float:
    return round(c.speed, 1)


def _soot(c: _Ctx) -> float:
    frac = ((c.u.eng0 + c.c[RUN] / 3600.0) / 40.0) % 1.0
    return round(5.0 + 80.0 * frac, 1)


def _regen_state(c: _Ctx) -> str:
    frac = ((c.u.eng0 + c.c[RUN] / 3600.0) / 40.0) % 1.0
    if frac > 0.97:
        return "REGENERATION_NEEDED"
    return "ACTIVE" if frac < 0.01 else "NOT_ACTIVE"


def _ac_power_w(c: _Ctx) -> float:
    kw = c.u.m.spec.rated_kw * (c.load if c.st == WORK else 0.02)
    return round(kw * 1000.0 * (1 + 0.01 * c.z()), 0)


def _us(c: _Ctx) -> bool:
    return c.u.m.home_site.country == "United States"


def _ac_volts(c: _Ctx) -> float:
    return round((480.0 if _us(c) else 400.0) + 1.5 * c.z(), 1)


def _ac_current(c: _Ctx) -> float:
    v = 480.0 if _us(c) else 400.0
    kw = c.u.m.spec.rated_kw * (c.load if c.st == WORK else 0.02)
    return round(kw * 1000.0 / (math.sqrt(3) * v * 0.9) * (1 + 0.01 * c.z()), 1)


def _batt_current(c: _Ctx) -> float:
    st = c.st
    if st == WORK:
        return round(-(40 + 110 * c.load) + 4 * c.z(), 1)
    if st == IDLE:
        return round(-8 + 1 * c.z(), 1)
    if st == CHARGING:
        return round(30 + 1.5 * c.z(), 1)
    return 0.4 if st == PLUGGED else -0.2


def _remaining_run_s(c: _Ctx) -> float | None:
    if not c.on:
        return None
    drain = c.u.drain * (0.6 + 0.6 * c.load) if c.st == WORK else 1.5
    return round(c.c[SOC] / drain * 3600.0, 0)


def _remaining_charge_s(c: _Ctx) -> float | None:
    if c.st == CHARGING:
        return round((100.0 - c.c[SOC]) / _CHARGE_PCT_H * 3600.0, 0)
    return 0.0 if c.st == PLUGGED else None


def _wheel_speed(c: _Ctx) -> float:
    return round(c.speed, 1) if c.st == WORK else 0.0


def _g(getters: dict[str, Callable[[_Ctx], Any]]) -> dict[str, Callable[[_Ctx], Any]]:
    return getters


_GETTERS: Final = _g({
    "CumulativeOperatingHours": lambda c: _minutes(c.u.h0 + c.c[RUN] / 3600.0),
    "CumulativeEngineHours": lambda c: _minutes(c.u.eng0 + c.c[RUN] / 3600.0),
    "CumulativeIdleHours": lambda c: _minutes(c.u.idle0 + c.c[IDL] / 3600.0),
    "CumulativeProductiveHours": lambda c: _minutes(c.u.prod0 + c.c[WRK] / 3600.0),
    "CumulativeMovingHours": lambda c: _minutes(c.u.move0 + c.c[MOV] / 3600.0),
    "EngineTotalFuelUsed": lambda c: round(c.c[FT], 1),
    "EngineTotalIdleFuelUsed": lambda c: round(c.c[FI], 1),
    "CumulativeCO2Emissions": lambda c: round(
        c.c[FT] * _CO2_PER_L if c.u.kind == "diesel" else c.u.co2_0 + c.c[CHG] * _CO2_PER_KWH, 1),
    "FuelLevel": lambda c: round(min(100.0, max(0.0, 100.0 * c.c[FL] / c.u.m.spec.tank_l)), 1),
    "FuelTankCapacity": lambda c: float(c.u.m.spec.tank_l),
    "EngineFuelRate": lambda c: round(_fuel_rate(c) * (1 + 0.03 * c.z()), 2),
    "EngineSpeed": _rpm,
    "EngineCoolantTemperature": lambda c: round(
        (84 + 6 * c.load if c.st == WORK else 78) + 1.5 * c.z(), 1),
    "EngineOilPressure": lambda c: round(
        (320 + 120 * c.load if c.st == WORK else 210) + 8 * c.z(), 0),
    "EngineOilTemperature": lambda c: round(
        (95 + 10 * c.load if c.st == WORK else 86) + 1.5 * c.z(), 1),
    "EnginePercentLoadAtCurrentSpeed": lambda c: round(min(100.0, max(0.0, (
        100 * c.load if c.st == WORK else 12) + 4 * c.z())), 0),
    "ActualEnginePercentTorque": lambda c: round(min(100.0, max(0.0, (
        90 * c.load if c.st == WORK else 8) + 4 * c.z())), 0),
    "EngineIntakeManifoldTemperature": lambda c: round(_ambient(c) + 18 + 2 * c.z(), 1),
    "BarometricPressure": lambda c: round(
        101.3 - c.u.m.home_site.altitude / 120.0 + 0.3 * c.z(), 1),
    "EngineStatus": lambda c: c.on,
    "OperationStatus": lambda c: c.st == WORK,
    "BatteryPotential": _batt_v,
    "AmbientAirTemperature": lambda c: round(_ambient(c) + 0.5 * c.z(), 1),
    "AfterTreatmentDieselExhaustFluidTankLevel": lambda c: round(max(0.0, c.c[DEF]), 1),
    "AfterTreatmentDieselParticulateFilterSootLoadPercent": _soot,
    "AfterTreatmentDieselParticulateFilterActiveRegenerationState": _regen_state,
    "HydraulicTemperature": lambda c: round(
        (52 + 12 * c.load if c.st == WORK else 45) + 1.5 * c.z(), 1),
    "HydraulicOilLevel": lambda c: round(min(100.0, 93 + 0.8 * c.z()), 1),
    "TotalVehicleDistance": lambda c: round(c.c[KM], 2),
    "WheelBasedVehicleSpeed": _wheel_speed,
    "Speed": _gps_speed,
    "TransmissionOilTemperature": lambda c: round(
        (72 + 15 * c.load if c.st == WORK else 60) + 1.5 * c.z(), 1),
    "GeneratorTotalKwHoursExport": lambda c: round(c.c[KWH], 1),
    "AcTotalActivePower": _ac_power_w,
    "AcAverageFrequency": lambda c: round((60.0 if _us(c) else 50.0) + 0.03 * c.z(), 2),
    "AcAveragePhaseToPhaseRmsVoltage": _ac_volts,
    "AcAverageRmsCurrent": _ac_current,
    "AcTotalRelativeLoadPercentage": lambda c: round(
        100 * (c.load if c.st == WORK else 0.02) + 1 * c.z(), 1),
    "AcTotalPowerFactor": lambda c: round(min(1.0, 0.8 + 0.15 * c.load + 0.01 * c.z()),
                                          3),
    "BatteryStateOfChargePercent": lambda c: round(min(100.0, max(0.0, c.c[SOC])), 1),
    "BatteryCurrent": _batt_current,
    "BatteryChargerState": lambda c: c.st == CHARGING,
    "BatteryChargerPowerLineState": lambda c: c.st in (CHARGING, PLUGGED),
    "BatteryChargeCyclesCount": lambda c: c.cycles,
    "BatteryChargerCumulativeInputEnergy": lambda c: round(c.c[CHG], 2),
    "BatteryCumulativeDischargedEnergy": lambda c: round(c.c[DIS], 2),
    "BatteryRemainingRunTime": _remaining_run_s,
    "BatteryRemainingChargeTime": _remaining_charge_s,
    "BatteryTemperature": lambda c: round(
        _ambient(c) + (9 if c.st == CHARGING else 4 if c.on else 1) + 0.5 * c.z(), 1),
    "PlatformHeight": lambda c: round(c.plat, 2),
    "PlatformElevated": lambda c: c.plat > 0.2,
    "PlatformStowed": lambda c: c.plat == 0.0,
})

# (insight, chance in a message while the engine/key is on, chance otherwise)
_DIESEL_CORE: Final = (
    ("CumulativeOperatingHours", 0.55, 0.7), ("CumulativeIdleHours", 0.45, 0.5),
    ("CumulativeEngineHours", 0.25, 0.3), ("EngineTotalFuelUsed", 0.45, 0.5),
    ("EngineTotalIdleFuelUsed", 0.3, 0.35), ("CumulativeCO2Emissions", 0.15, 0.2),
    ("FuelLevel", 0.65, 0.6), ("FuelTankCapacity", 0.02, 0.02), ("EngineFuelRate", 0.75, 0.0),
    ("EngineSpeed", 0.7, 0.0), ("EngineCoolantTemperature", 0.5, 0.0),
    ("EngineOilPressure", 0.3, 0.0), ("EnginePercentLoadAtCurrentSpeed", 0.45, 0.0),
    ("EngineStatus", 0.5, 0.3), ("OperationStatus", 0.35, 0.3), ("BatteryPotential", 0.4, 0.6),
    ("AmbientAirTemperature", 0.15, 0.1), ("Speed", 0.3, 0.15),
)
_LIGHT_TOWER: Final = (
    ("CumulativeOperatingHours", 0.6, 0.7), ("EngineTotalFuelUsed", 0.3, 0.3),
    ("FuelLevel", 0.7, 0.6), ("EngineFuelRate", 0.6, 0.0), ("EngineStatus", 0.5, 0.3),
    ("OperationStatus", 0.4, 0.3), ("BatteryPotential", 0.5, 0.6),
)
_RICH: Final = (
    ("CumulativeProductiveHours", 0.25, 0.3), ("EngineOilTemperature", 0.25, 0.0),
    ("ActualEnginePercentTorque", 0.2, 0.0), ("EngineIntakeManifoldTemperature", 0.1, 0.0),
    ("BarometricPressure", 0.05, 0.0),
)
_WITH_DEF: Final = (
    ("AfterTreatmentDieselExhaustFluidTankLevel", 0.45, 0.3),
    ("AfterTreatmentDieselParticulateFilterSootLoadPercent", 0.15, 0.0),
    ("AfterTreatmentDieselParticulateFilterActiveRegenerationState", 0.05, 0.0),
)
_HYDRAULIC: Final = (("HydraulicTemperature", 0.3, 0.0), ("HydraulicOilLevel", 0.05, 0.05))
_WHEELED: Final = (
    ("CumulativeMovingHours", 0.25, 0.3), ("TotalVehicleDistance", 0.45, 0.4),
    ("WheelBasedVehicleSpeed", 0.3, 0.0), ("TransmissionOilTemperature", 0.15, 0.0),
)
_GENERATOR: Final = (
    ("GeneratorTotalKwHoursExport", 0.55, 0.5), ("AcTotalActivePower", 0.55, 0.0),
    ("AcAverageFrequency", 0.35, 0.0), ("AcAveragePhaseToPhaseRmsVoltage", 0.35, 0.0),
    ("AcAverageRmsCurrent", 0.35, 0.0), ("AcTotalRelativeLoadPercentage", 0.35, 0.0),
    ("AcTotalPowerFactor", 0.1, 0.0),
)
_LIFT: Final = (
    ("CumulativeOperatingHours", 0.6, 0.7), ("CumulativeIdleHours", 0.3, 0.3),
    ("BatteryStateOfChargePercent", 0.8, 0.8), ("BatteryPotential", 0.6, 0.6),
    ("BatteryCurrent", 0.4, 0.4), ("BatteryChargerState", 0.25, 0.6),
    ("BatteryChargerPowerLineState", 0.15, 0.5), ("BatteryChargeCyclesCount", 0.08, 0.2),
    ("BatteryChargerCumulativeInputEnergy", 0.08, 0.2),
    ("BatteryCumulativeDischargedEnergy", 0.08, 0.1), ("BatteryRemainingRunTime", 0.2, 0.0),
    ("BatteryRemainingChargeTime", 0.0, 0.3), ("BatteryTemperature", 0.1, 0.05),
    ("CumulativeCO2Emissions", 0.05, 0.1), ("PlatformHeight", 0.5, 0.1),
    ("PlatformElevated", 0.4, 0.1), ("PlatformStowed", 0.25, 0.2),
    ("OperationStatus", 0.45, 0.3), ("Speed", 0.2, 0.1),
)
_V2_LAMPS: Final = ("AmberWarningLamp", "MalfunctionIndicatorLamp", "ProtectLamp", "RedStopLamp")
_LAMP_KIND: Final = {"AmberWarningLamp": "amber", "MalfunctionIndicatorLamp": "mil",
                     "ProtectLamp": "protect", "RedStopLamp": "red"}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------

@dataclass(slots=True)
class SimRecord:
    """One simulated record: what a producer writes to the platform topic."""

    machine_id: str
    customer: str
    format: SimFormat
    receipt_ms: int  # platform receipt time: the Kafka record timestamp
    schema_version: int  # 1 or 2 for insights (see v2_from); always 1 for raw
    payload: dict[str, Any]  # matches the format's .avsc; absent fields are omitted


# Internal message: (receipt_ms, machine index, measure_ms, format 0/1, version, body)
_Msg = tuple[int, int, int, int, int, Any]


class _Cursor:
    __slots__ = ("day", "it", "next_state", "peek", "u")

    def __init__(self, u: _Unit) -> None:
        self.u = u
        self.day = 0
        self.it: Iterator[_Msg] = iter(())
        self.next_state = u.init
        self.peek: _Msg | None = None


class Simulator:
    """Deterministic telemetry for a :class:`~tu_analytics.sandbox.fleet.Fleet`.

    ``records(start, end)`` yields the records *received* in ``[start, end)`` in receipt
    order; ``encoded_batches`` is the same stream as Confluent-framed Avro. Consecutive calls
    whose windows touch (``end`` of one is ``start`` of the next) continue the internal
    per-machine state; any other call re-seeks, with identical results either way. Not
    thread-safe; don't interleave two iterations on one instance.
    """

    def __init__(self, fleet: Fleet, seed: int = 7, v2_from: datetime | None = None,
                 epoch: datetime = DEFAULT_EPOCH) -> None:
        self.fleet = fleet
        self.seed = seed
        self.v2_from_ms: int | None = None if v2_from is None else _to_ms(v2_from)
        self.epoch_ms = _to_ms(epoch)
        self.schemas = load_schemas()
        units = _catalogue_units()
        self._writers = {v: SparseRecordWriter(self.schemas[("insights", v)], units)
                         for v in (1, 2)}
        self._raw_encoder = AvroEncoder(self.schemas[("raw", 1)])
        self._index = self._writers[2].index
        self._tz: dict[str, ZoneInfo] = {}
        self._days: dict[tuple[str, int], tuple[int, int, int]] = {}
        self._operators: dict[str, list[tuple[str, str]]] = {}
        self._units = [self._unit(m) for m in fleet.machines]
        self._checkpoints: list[dict[int, _State]] = [{} for _ in self._units]
        self._cursors = [_Cursor(u) for u in self._units]
        self._pending: list[_Msg] = []
        self._pos: int | None = None  # end of the last fully consumed window

    # -- public --------------------------------------------------------------------------------
    def records(self, start: datetime, end: datetime,
                formats: Iterable[SimFormat] = _FORMATS) -> Iterator[SimRecord]:
        """Records whose receipt time is in ``[start, end)``, in receipt-time order."""
        want = self._want(formats)
        writers = self._writers
        units = self._units
        for rec in self._messages(_to_ms(start), _to_ms(end)):
            fmt = rec[3]
            if not want[fmt]:
                continue
            m = units[rec[1]].m
            if fmt == 0:
                yield SimRecord(m.machine_id, m.customer, "insights", rec[0], rec[4],
                                writers[rec[4]].to_dict(rec[5]))
            else:
                yield SimRecord(m.machine_id, m.customer, "raw", rec[0], 1, rec[5])

    def encoded_batches(
        self, start: datetime, end: datetime, schema_ids: Mapping[tuple[str, int], int],
        batch_size: int = 10_000, formats: Iterable[SimFormat] = _FORMATS,
    ) -> Iterator[list[EncodedRecord]]:
        """The same records as ``records``, as ``(key, value, receipt_ms, customer, format)``.

        ``value`` is Confluent wire format (magic 0, 4-byte big-endian schema id, Avro body)
        with the id ``schema_ids[(format, version)]``; ``key`` is the MachineId in UTF-8.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        want = self._want(formats)
        headers: dict[tuple[int, int], bytes] = {}
        for (fmt_name, version), sid in schema_ids.items():
            if fmt_name not in _FORMATS:
                raise ValueError(f"schema_ids: unknown format {fmt_name!r}")
            headers[(_FORMATS.index(fmt_name), version)] = b"\x00" + sid.to_bytes(4, "big")
        writers = self._writers
        raw_enc = self._raw_encoder.encode_into
        units = self._units
        batch: list[EncodedRecord] = []
        for rec in self._messages(_to_ms(start), _to_ms(end)):
            fmt = rec[3]
            if not want[fmt]:
                continue
            u = units[rec[1]]
            try:
                out = bytearray(headers[(fmt, rec[4])])
            except KeyError:
                raise KeyError(f"schema_ids has no id for {(_FORMATS[fmt], rec[4])}") from None
            if fmt == 0:
                writers[rec[4]].encode_into(rec[5], out)
            else:
                raw_enc(rec[5], out)
            batch.append((u.key, bytes(out), rec[0], u.m.customer, _FORMATS[fmt]))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    # -- windows -------------------------------------------------------------------------------
    @staticmethod
    def _want(formats: Iterable[SimFormat]) -> tuple[bool, bool]:
        fs = set(formats)
        unknown = fs - set(_FORMATS)
        if unknown:
            raise ValueError(f"unknown formats {sorted(unknown)}; use 'insights' and/or 'raw'")
        return ("insights" in fs, "raw" in fs)

    def _messages(self, a: int, b: int) -> Iterator[_Msg]:
        if a < self.epoch_ms:
            raise ValueError(
                f"window starts {datetime.fromtimestamp(a / 1000, UTC):%Y-%m-%d %H:%M} UTC, "
                f"before the simulator's epoch {datetime.fromtimestamp(self.epoch_ms / 1000, UTC)}"
                "; machine state is chained day by day from the epoch: pass an earlier epoch=")
        if b <= a:
            return
        if self._pos != a:
            self._seek(a)
        self._pos = None  # an abandoned iteration forces a re-seek next time
        pending = self._pending
        s = a
        while s < b:
            e = min(b, s + _SLICE_MS)
            batch: list[_Msg] = []
            while pending and pending[0][0] < e:
                batch.append(heapq.heappop(pending))
            for cur in self._cursors:
                self._pull(cur, e, a, batch, pending)
            batch.sort()
            yield from batch
            s = e
        self._pos = b

    def _seek(self, a: int) -> None:
        self._pending = []
        for cur in self._cursors:
            u = cur.u
            day = self._local_day(a - MAX_DELAY_MS, u.tz)
            cur.peek = None
            self._open(cur, day, self._state_at(u, day))

    def _pull(self, cur: _Cursor, e: int, a: int, batch: list[_Msg], pending: list[_Msg]) -> None:
        """Move every message measured before ``e`` into batch (received < e) or pending."""
        while True:
            msg = cur.peek
            if msg is None:
                msg = next(cur.it, None)
                if msg is None:
                    self._open(cur, cur.day + 1, cur.next_state)
                    continue
            if msg[2] >= e:
                cur.peek = msg
                return
            cur.peek = None
            if msg[0] < a:
                continue  # received before the window (only right after a seek)
            if msg[0] < e:
                batch.append(msg)
            else:
                heapq.heappush(pending, msg)

    def _open(self, cur: _Cursor, day: int, state: _State) -> None:
        cur.day = day
        if day < cur.u.epoch_day:
            cur.it = iter(())
            cur.next_state = state
            return
        plan = self._plan(cur.u, day, state, with_messages=True)
        self._remember(cur.u, plan)
        cur.next_state = plan.end
        cur.it = self._day_messages(cur.u, plan)

    def _remember(self, u: _Unit, plan: _Plan) -> None:
        if (plan.day + 1) % _CHECKPOINT_EVERY == 0:
            self._checkpoints[u.m.index][plan.day + 1] = plan.end

    def _state_at(self, u: _Unit, day: int) -> _State:
        """Start state of ``day``: chained from the nearest checkpoint (or the epoch)."""
        if day <= u.epoch_day:
            return u.init
        cps = self._checkpoints[u.m.index]
        keys = sorted(k for k in cps if k <= day)
        d, st = (keys[-1], cps[keys[-1]]) if keys else (u.epoch_day, u.init)
        while d < day:
            plan = self._plan(u, d, st, with_messages=False)
            self._remember(u, plan)
            st = plan.end
            d += 1
        return st

    # -- calendar ------------------------------------------------------------------------------
    def _zone(self, key: str) -> ZoneInfo:
        tz = self._tz.get(key)
        if tz is None:
            tz = self._tz[key] = ZoneInfo(key)
        return tz

    @staticmethod
    def _local_day(ms: int, tz: ZoneInfo) -> int:
        return datetime.fromtimestamp(ms / 1000, tz).date().toordinal()

    def _day_info(self, tz: ZoneInfo, day: int) -> tuple[int, int, int]:
        """(UTC ms of local midnight, of the next midnight, of 00:00 at the noon offset)."""
        key = (tz.key, day)
        info = self._days.get(key)
        if info is None:
            d = date.fromordinal(day)
            d0 = _to_ms(datetime(d.year, d.month, d.day, tzinfo=tz))
            n = date.fromordinal(day + 1)
            d1 = _to_ms(datetime(n.year, n.month, n.day, tzinfo=tz))
            off = datetime(d.year, d.month, d.day, 12, tzinfo=tz).utcoffset()
            off_ms = 0 if off is None else int(off.total_seconds() * 1000)
            info = self._days[key] = (d0, d1, (day - _UNIX_ORD) * _DAY_MS - off_ms)
        return info

    # -- static per machine --------------------------------------------------------------------
    def _operators_of(self, customer: str) -> list[tuple[str, str]]:
        ops = self._operators.get(customer)
        if ops is None:
            ops = self._operators[customer] = [
                (str(_uuid(self.seed, customer, "operator", i)),
                 str(_uuid(self.seed, customer, "key", i)))
                for i in range(_OPERATORS_PER_CUSTOMER)]
        return ops

    def _unit(self, m: Machine) -> _Unit:
        u = _Unit()
        u.rkey = _key(self.seed, m.machine_id)
        rng = _rng(u.rkey, 0)
        spec = m.spec
        u.m = m
        u.kind = m.kind
        u.b = _KIN if m.kind == "kin" else _BEHAVIOUR[m.type]
        u.tz = self._zone(m.home_site.tz)
        u.util = rng.uniform(0.65, 1.0)
        u.rich = m.oem in ("Caterpillar", "Komatsu", "Volvo CE")
        u.hyd = m.type in ("excavator", "wheel loader", "telehandler")
        u.has_def = spec.def_tank_l > 0
        u.access = m.type in ("excavator", "wheel loader", "telehandler") and rng.random() < 0.5
        u.access_type = rng.choice(_ACCESS_TYPES)
        u.volts = spec.volts
        u.idle_rpm = rng.choice((750.0, 800.0, 900.0, 1000.0))
        u.drain = rng.uniform(14.0, 20.0)
        # Generators watch enclosure and coolant; some other units have a cab sensor.
        u.temp_sensors = 2 if m.type == "generator" else 1 if rng.random() < 0.3 else 0
        u.epoch_day = self._local_day(self.epoch_ms, u.tz)
        self._operators_of(m.customer)

        # Counters at the epoch: hours since install at this machine's typical usage.
        years = max(0.0, (self.epoch_ms - m.install_ms) / (365.25 * _DAY_MS))
        run_h = years * 1100.0 * u.util * rng.uniform(0.8, 1.2) if m.kind != "kin" else 0.0
        idle_share = rng.uniform(0.15, 0.3)
        u.h0 = m.hours_at_install
        u.eng0 = m.hours_at_install + round(rng.uniform(0.0, 40.0), 1)  # ECU vs telematics offset
        u.idle0 = m.hours_at_install * idle_share
        u.prod0 = m.hours_at_install - u.idle0
        u.move0 = u.prod0 * u.b.move_share
        c = [0.0] * _N_COUNTERS
        c[RUN] = run_h * 3600.0
        c[IDL] = c[RUN] * idle_share
        c[WRK] = c[RUN] - c[IDL]
        c[MOV] = c[WRK] * u.b.move_share
        c[KM] = (m.hours_at_install * (1 - idle_share) + run_h) * u.b.move_share * u.b.work_speed
        c[TKM] = years * rng.uniform(200, 900)
        if m.kind == "diesel":
            mean_lph = spec.idle_lph + (spec.max_lph - spec.idle_lph) * 0.5
            hours = m.hours_at_install + run_h
            c[FT] = hours * ((1 - idle_share) * mean_lph + idle_share * spec.idle_lph)
            c[FI] = hours * idle_share * spec.idle_lph
            c[FL] = spec.tank_l * rng.uniform(0.35, 0.95)
            c[DEF] = rng.uniform(40.0, 95.0) if u.has_def else 0.0
            c[KWH] = hours * (1 - idle_share) * spec.rated_kw * 0.5 if m.type == "generator" \
                else 0.0
        cycles = 0
        u.co2_0 = 0.0
        if m.kind == "electric":
            c[SOC] = rng.uniform(55.0, 100.0)
            cycles = int((m.hours_at_install + run_h) * 0.45)
            c[CHG] = cycles * spec.battery_kwh * 0.6 / _CHARGER_EFF
            c[DIS] = cycles * spec.battery_kwh * 0.6
            u.co2_0 = m.hours_at_install * 0.45 * spec.battery_kwh * 0.6 / _CHARGER_EFF * 0.2
        starts = int((m.hours_at_install + run_h) * 1.6) * 2
        u.init = _State(site=m.sites.index(m.home_site), c=c, changes1=starts,
                        changes2=int(starts * 1.8), cycles=cycles, plugged=False,
                        spot_day=u.epoch_day - 1)

        # Which insights this machine reports, in schema order.
        spec_list: list[tuple[str, float, float]] = []
        if m.kind == "diesel":
            if m.type == "light tower":
                spec_list += _LIGHT_TOWER
            else:
                spec_list += _DIESEL_CORE
                if u.rich:
                    spec_list += _RICH
                if u.has_def:
                    spec_list += _WITH_DEF
                if u.hyd:
                    spec_list += _HYDRAULIC
                if m.wheeled:
                    spec_list += _WHEELED
                if m.type == "generator":
                    spec_list += _GENERATOR
        elif m.kind == "electric":
            spec_list += _LIFT
        idx = self._index
        u.cands = sorted((idx[n], p_on, p_off, _GETTERS[n]) for n, p_on, p_off in spec_list)
        u.lamps = [(idx[n], _LAMP_KIND[n]) for n in _V2_LAMPS] if m.kind == "diesel" else []
        u.fault_pool = (_LIFT_FAULTS if m.kind == "electric" else
                        _DIESEL_FAULTS + (_EMISSION_FAULTS if u.has_def else ()))

        w = self._writers[1]
        header = {"UnitInstallDateTime": m.install_ms, "OEMName": m.oem, "Model": m.model,
                  "EquipmentID": m.equipment_id, "SerialNumber": m.serial_number, "PIN": m.pin}
        meta: dict[str, Any] = {"TelematicSerialNumber": m.telematic_serial,
                                "MachineId": m.machine_id}
        if m.unit_id is not None:
            meta["UnitId"] = m.unit_id
        meta["ExternalReferenceNumber"] = m.external_ref
        u.hdr = w.preencode("EquipmentHeader", header)
        u.meta = w.preencode("Metadata", meta)
        u.key = m.machine_id.encode()
        u.raw_static = {"unitId": m.unit_id, "serialNumber": m.telematic_serial,
                        "machineId": m.machine_id} if m.unit_id is not None else {
                        "serialNumber": m.telematic_serial, "machineId": m.machine_id}
        return u

    # -- planning ------------------------------------------------------------------------------
    def _spot(self, u: _Unit, day: int, site: int) -> tuple[float, float]:
        """Where on the site the machine stands today (stable within a day)."""
        s = u.m.sites[site]
        h = _mix(u.rkey, _P_SPOT, day, site)
        r = s.radius_m * 0.8 * math.sqrt(_uniform01(h))
        a = 2 * math.pi * _uniform01(_mix(h, 1))
        return _offset(s.lat, s.lon, r * math.cos(a), r * math.sin(a))

    def _plan(self, u: _Unit, day: int, s0: _State, with_messages: bool) -> _Plan:
        m, b = u.m, u.b
        rng = _rng(u.rkey, _P_PLAN, day)
        d0, d1, base = self._day_info(u.tz, day)
        dd = date.fromordinal(day)
        wd = dd.weekday()

        def at(h: float) -> int:
            return min(max(base + int(h * _H_MS), d0), d1)

        iso = dd.isocalendar()
        off_rent = _uniform01(_mix(u.rkey, _P_RENT, iso.year, iso.week)) < 0.12
        p_use = (b.p_weekday if wd < 5 else b.p_saturday if wd == 5 else b.p_sunday) * u.util
        works = rng.random() < p_use and not off_rent
        blocks: list[tuple[int, int, int, float]] = []
        site_from = site_to = s0.site
        transport: tuple[int, int] | None = None
        shift_end = d0
        if works:
            s_h = b.shift[0] + rng.uniform(-0.4, 0.4)
            e_h = b.shift[1] + rng.uniform(-0.4, 0.6)
            if wd == 5:
                e_h = min(e_h, s_h + 5.0)
            near = [i for i, other in enumerate(m.sites) if i != site_from and
                    _haversine_km(m.sites[site_from], other) <= _MAX_RELOCATION_KM]
            if near and wd < 5 and rng.random() < b.p_reloc:
                site_to = rng.choice(near)
                dist = _haversine_km(m.sites[site_from], m.sites[site_to])
                t_h = s_h - 0.75
                arrive = t_h + 0.5 + dist / 55.0
                transport = (at(t_h), at(arrive))
                blocks.append((transport[0], transport[1], TRANSPORT, dist))
                s_h = arrive + 0.3
            periods: list[tuple[float, float]] = []
            if m.type == "light tower" and dd.month in (10, 11, 12, 1, 2, 3) and transport is None:
                periods.append((5.5 + rng.uniform(-0.3, 0.3), 8.0 + rng.uniform(0.0, 0.5)))
            if b.lunch and s_h < 11.0 and e_h > 13.5:
                l0 = 11.75 + rng.uniform(-0.25, 0.5)
                periods += [(s_h, l0), (l0 + rng.uniform(0.5, 0.75), e_h)]
            elif s_h < e_h - 0.5:
                periods.append((s_h, e_h))
            for a_h, z_h in periods:
                self._fill(blocks, rng, u, at(a_h), at(z_h))
            if blocks:
                shift_end = max(t1 for _, t1, _, _ in blocks)

        first_activity = min((t0 for t0, _, _, _ in blocks), default=d1)
        segs, end = self._integrate(u, rng, d0, d1, s0, blocks, shift_end, site_from, site_to,
                                    keep_segs=with_messages)
        # A machine parks at one spot; it moves to a new one only on days it works, and only
        # once it starts (no overnight teleports).
        end.spot_day = day if works else s0.spot_day
        spot_prev = spot_today = (0.0, 0.0)
        if with_messages:
            spot_prev = self._spot(u, s0.spot_day, site_from)
            spot_today = self._spot(u, day, site_to) if works else spot_prev
        for sg in segs:
            sp = spot_prev if sg.t0 < first_activity else spot_today
            sg.lat0, sg.lon0 = sg.lat1, sg.lon1 = sp
            if sg.st == TRANSPORT:
                sg.lat0, sg.lon0 = spot_prev
                sg.lat1, sg.lon1 = spot_today
        faults: list[tuple[int, int, _Fault]] = []
        operator = 0
        if with_messages:
            operator = rng.randrange(_OPERATORS_PER_CUSTOMER)
            faults = self._faults(u, rng, segs, d1)
        return _Plan(day, d0, d1, base, segs, faults, operator, end)

    @staticmethod
    def _fill(blocks: list[tuple[int, int, int, float]], rng: random.Random, u: _Unit,
              a: int, z: int) -> None:
        """Alternate working and idle/pause blocks over [a, z)."""
        b = u.b
        if u.kind == "kin":
            if z > a:
                blocks.append((a, z, WORK, 0.0))
            return
        t = a
        working = True
        while t < z - 60_000:
            if working:
                minutes = min(max(2.0, rng.expovariate(1.0 / b.work_min)), 4 * b.work_min)
                st, load = WORK, rng.uniform(*b.load)
            elif rng.random() < b.pause_p:
                minutes, st, load = rng.uniform(8.0, 35.0), OFF, 0.0
            else:
                minutes = min(max(1.0, rng.expovariate(1.0 / b.idle_min)), 4 * b.idle_min)
                st, load = IDLE, 0.0
            t1 = min(t + int(minutes * 60_000), z)
            if st != OFF:
                blocks.append((t, t1, st, load))
            t = t1
            working = not working

    def _integrate(self, u: _Unit, rng: random.Random, d0: int, d1: int, s0: _State,
                   blocks: list[tuple[int, int, int, float]], shift_end: int, site_from: int,
                   site_to: int, keep_segs: bool) -> tuple[list[_Seg], _State]:
        """Turn activity blocks into contiguous segments with counters, refuels, charging."""
        m = u.m
        spec = m.spec
        b = u.b
        blocks.sort()
        # Contiguous list of (t0, t1, state, load) covering the day.
        spans: list[tuple[int, int, int, float]] = []
        t = d0
        for blk in blocks:
            if blk[0] > t:
                spans.append((t, blk[0], OFF, 0.0))
            spans.append(blk)
            t = blk[1]
        if t < d1:
            spans.append((t, d1, OFF, 0.0))

        c = list(s0.c)
        changes1, changes2, cycles, plugged = s0.changes1, s0.changes2, s0.cycles, s0.plugged
        site = site_from
        segs: list[_Seg] = []
        prev_on = prev_work = False
        first_engine = True
        dead = False  # electric: battery ran flat today
        plug_decided = False
        electric = u.kind == "electric"
        diesel = u.kind == "diesel"
        kin = u.kind == "kin"
        queue = list(reversed(spans))
        while queue:
            t0, t1, st, load = queue.pop()
            if t1 <= t0:
                continue
            if electric:
                if dead and st in (IDLE, WORK):
                    st, load = OFF, 0.0
                if st == _PLUG_IN:
                    plugged = True
                    cycles += 1
                    st = OFF
                if st == OFF and plugged:
                    st = CHARGING if c[SOC] < 100.0 else PLUGGED
                elif st == OFF and not plug_decided and d0 < shift_end <= t0:
                    # End of shift: the crew plugs it in (nearly always when low).
                    plug_decided = True
                    if rng.random() < (0.97 if (c[SOC] < 50.0 or dead) else 0.8):
                        plug = t0 + int(rng.uniform(0, 20) * 60_000)
                        if plug < t1:
                            queue.append((plug, t1, _PLUG_IN, 0.0))
                            t1 = plug
                elif st in (IDLE, WORK):
                    plugged = False
            on = _ON[st]
            if on != prev_on:
                changes1 += 1
            work = st == WORK
            if work != prev_work:
                changes2 += 1
            prev_on, prev_work = on, work
            dur = t1 - t0
            if not (on or electric or st == TRANSPORT) or kin:
                # Nothing accumulates (diesel engine off, Kin tags): no vector arithmetic.
                if keep_segs:
                    sg = _Seg(t0, t1, st, load, c, _ZERO_RATES, site)
                    sg.changes1, sg.changes2, sg.cycles = changes1, changes2, cycles
                    segs.append(sg)
                if st == TRANSPORT:
                    site = site_to
                continue
            r = [0.0] * _N_COUNTERS
            if st == TRANSPORT:
                r[TKM] = load / dur if dur else 0.0  # load carries the distance here
                load = 0.0
            elif diesel and on:
                lph = spec.idle_lph if st == IDLE else \
                    spec.idle_lph + (spec.max_lph - spec.idle_lph) * load
                burn = lph * dur / _H_MS
                tank = spec.tank_l
                # (copies: the list may be the start values of the previous segment)
                if c[FL] - burn < 0.06 * tank or (first_engine and c[FL] < 0.4 * tank):
                    c = c.copy()
                    c[FL] = tank * rng.uniform(0.9, 1.0)  # fuel bowser visit
                if u.has_def:
                    def_use = burn * _DEF_PER_L * (1.0 if work else 0.2) / spec.def_tank_l * 100
                    if c[DEF] - def_use < 10.0 or (first_engine and c[DEF] < 30.0):
                        c = c.copy()
                        c[DEF] = rng.uniform(95.0, 100.0)
                    r[DEF] = -def_use / dur
                first_engine = False
                r[FT] = lph / _H_MS
                r[FL] = -r[FT]
                if st == IDLE:
                    r[FI] = r[FT]
            elif electric:
                if st == WORK:
                    drain = u.drain * (0.6 + 0.6 * load)
                    if c[SOC] - drain * dur / _H_MS < 8.0:
                        # Flat battery: the lift cuts out; the rest of the shift is off.
                        t_dead = t0 + max(60_000, int((c[SOC] - 8.0) / drain * _H_MS))
                        if t_dead < t1:
                            queue.append((t_dead, t1, OFF, 0.0))
                            t1, dur = t_dead, t_dead - t0
                        dead = True
                elif st == IDLE:
                    drain = 1.5
                elif st == OFF:
                    drain = 0.05
                else:
                    drain = 0.0
                r[SOC] = -drain / _H_MS
                r[DIS] = spec.battery_kwh * drain / 100.0 / _H_MS
                if st == CHARGING:
                    full_at = t0 + int((100.0 - c[SOC]) / _CHARGE_PCT_H * _H_MS) + 1
                    if full_at < t1:
                        queue.append((full_at, t1, OFF, 0.0))  # becomes PLUGGED
                        t1, dur = full_at, full_at - t0
                    r[SOC] = _CHARGE_PCT_H / _H_MS
                    r[CHG] = spec.battery_kwh * _CHARGE_PCT_H / 100.0 / _CHARGER_EFF / _H_MS
            if on:
                r[RUN] = 0.001
                if work:
                    r[WRK] = 0.001
                    r[MOV] = 0.001 * b.move_share
                    r[KM] = b.move_share * b.work_speed / _H_MS
                    if m.type == "generator":
                        r[KWH] = spec.rated_kw * load / _H_MS
                else:
                    r[IDL] = 0.001
            if keep_segs:
                sg = _Seg(t0, t1, st, load, c, r, site)
                sg.changes1, sg.changes2, sg.cycles = changes1, changes2, cycles
                if st == TRANSPORT:
                    sg.speed = r[TKM] * _H_MS
                segs.append(sg)
            if st == TRANSPORT:
                site = site_to
            # A new list: the segment keeps the old one as its start values.
            c = [x + dx * dur for x, dx in zip(c, r, strict=True)]
            if electric:
                c[SOC] = min(100.0, max(0.0, c[SOC]))
            elif diesel:
                c[FL] = max(0.0, c[FL])
        end = _State(site=site_to, c=c, changes1=changes1, changes2=changes2, cycles=cycles,
                     plugged=plugged, spot_day=s0.spot_day)
        return segs, end

    def _faults(self, u: _Unit, rng: random.Random, segs: list[_Seg],
                d1: int) -> list[tuple[int, int, _Fault]]:
        on = [(sg.t0, sg.t1) for sg in segs if _ON[sg.st]]
        total = sum(t1 - t0 for t0, t1 in on)
        if not on or total <= 0 or u.b.fault_rate <= 0:
            return []
        # Poisson count (Knuth): small rates, a handful of draws.
        n, p, limit = 0, rng.random(), math.exp(-u.b.fault_rate)
        while p > limit:
            n += 1
            p *= rng.random()
        out: list[tuple[int, int, _Fault]] = []
        for _ in range(n):
            x = rng.uniform(0, total)
            raised = on[-1][1] - 1
            for t0, t1 in on:
                if x < t1 - t0:
                    raised = t0 + int(x)
                    break
                x -= t1 - t0
            cleared = raised + int((2.0 + rng.expovariate(1 / 45.0)) * 60_000)
            cleared = max(raised + 60_000, min(cleared, d1 - 75 * 60_000))
            out.append((raised, cleared, rng.choice(u.fault_pool)))
        out.sort(key=lambda f: f[0])
        return out

    # -- messages ------------------------------------------------------------------------------
    def _timeline(self, u: _Unit, plan: _Plan, rng: random.Random, raw: bool
                  ) -> list[tuple[int, int, int, bool]]:
        """(measure_ms, format, segment index, is-event) for one format's messages of a day."""
        out: list[tuple[int, int, int, bool]] = []
        kin = u.kind == "kin"
        prev_on = prev_work = None
        prev_st = -1
        fmt = 1 if raw else 0
        for i, sg in enumerate(plan.segs):
            st = sg.st
            on, work = _ON[st], st == WORK
            event = prev_st >= 0 and (on != prev_on or work != prev_work or
                                      (st != prev_st and st in (TRANSPORT, CHARGING)))
            prev_on, prev_work, prev_st = on, work, st
            if raw:
                lo, hi = _RAW_TRANSPORT_S if st == TRANSPORT else _RAW_INTERVALS_S[on]
            elif kin:
                lo, hi = _KIN_INTERVALS_S[st in (WORK, TRANSPORT)]
            else:
                lo, hi = _INTERVALS_S[st]
            if event:
                t = sg.t0 + int(rng.uniform(1_000, 5_000))
            else:
                t = sg.t0 + int(rng.uniform(0, hi * 1000))
            ev = event
            while t < sg.t1:
                out.append((t, fmt, i, ev))
                ev = False
                t += int(rng.uniform(lo * 1000, hi * 1000))
        return out

    def _day_messages(self, u: _Unit, plan: _Plan) -> Iterator[_Msg]:
        """Every message measured on this machine-day, in measurement order (lazily built)."""
        rng = _rng(u.rkey, _P_MSG, plan.day)
        times = self._timeline(u, plan, rng, raw=False)
        if u.kind != "kin":
            times += self._timeline(u, plan, rng, raw=True)
            times.sort()
        if not times:
            return
        faults = self._fault_messages(plan, times)
        ctx = _Ctx(u, rng)
        mi = u.m.index
        v2 = self.v2_from_ms
        idx = self._index
        segs = plan.segs
        site_obj = u.m.sites
        kin = u.kind == "kin"
        electric = u.kind == "electric"
        diesel = u.kind == "diesel"
        can_bus = diesel and u.m.type != "light tower"
        compressor = u.m.type == "compressor"
        jit = u.b.jitter_m
        move_share, work_speed = u.b.move_share, u.b.work_speed
        addr_due = True
        access_done = False
        ops = self._operators[u.m.customer]
        op_id, key_id = ops[plan.operator]
        dd = date.fromordinal(plan.day)
        ctx.doy = dd.timetuple().tm_yday
        i_loc, i_meta, i_addr = idx["Location"], idx["LocationMetadata"], idx["LocationAddress"]
        i_acc, i_can, i_adv = idx["AccessControlKeyUsage"], idx["CANMessages"], idx[
            "AdvancedSensors"]
        i_fc = idx["FaultCodes"]
        i_hdr, i_md = idx["EquipmentHeader"], idx["Metadata"]
        rnd = rng.random
        z = ctx.z
        for n, (t, fmt, si, event) in enumerate(times):
            sg = segs[si]
            st = sg.st
            # Receipt: seconds after measurement, ~1 % minutes to hours late.
            if rnd() < LATE_SHARE:
                delay = int(math.exp(rng.uniform(math.log(120_000), math.log(MAX_DELAY_MS))))
            else:
                delay = min(_NORMAL_DELAY_CAP_MS, 400 + int(rng.expovariate(1 / 2500.0)))
            receipt = t + delay
            # Where the machine is.
            if st == TRANSPORT:  # on a truck between sites
                f = (t - sg.t0) / max(1, sg.t1 - sg.t0)
                lat = sg.lat0 + (sg.lat1 - sg.lat0) * f + 0.00003 * z()
                lon = sg.lon0 + (sg.lon1 - sg.lon0) * f + 0.00003 * z()
                speed = max(0.0, sg.speed * 1.1 + 8 * z()) if 0.05 < f < 0.95 else 0.0
            elif st == WORK:  # moving around the site
                lat, lon = _offset(sg.lat0, sg.lon0, jit * z(), jit * z())
                moving = work_speed > 0 and rnd() < move_share
                speed = rng.uniform(1.0, 1.6 * work_speed) if moving else 0.0
            else:  # parked: GPS noise only
                lat, lon = _offset(sg.lat0, sg.lon0, 2.0 * z(), 2.0 * z())
                speed = 0.0
            lat, lon = round(lat, 6), round(lon, 6)
            if st == TRANSPORT:
                addr_due = True  # report the new address once it has arrived
            dt = t - sg.t0
            ctx.c = [a + b * dt for a, b in zip(sg.c0, sg.r, strict=True)]
            ctx.t, ctx.st, ctx.load, ctx.on, ctx.speed = t, st, sg.load, _ON[st], speed
            ctx.cycles = sg.cycles
            ctx.local_h = (t - plan.base_ms) / _H_MS
            site = site_obj[sg.site]
            if fmt == 1:
                yield (receipt, mi, t, 1, 1, self._raw_payload(u, ctx, sg, plan, t, event, lat,
                                                               lon, site, key_id))
                continue

            version = 2 if v2 is not None and receipt >= v2 else 1
            entries: list[tuple[int, Any, int | None]] = [(i_hdr, u.hdr, None),
                                                          (i_md, u.meta, None)]
            entries.append((i_loc, {"Latitude": lat, "Longitude": lon,
                                    "Altitude": round(site.altitude + 1.5 * z(), 1),
                                    "AltitudeUnits": "metres", "datetime": t}, None))
            if kin:
                yield (receipt, mi, t, 0, version, entries)
                continue
            if rnd() < 0.6:
                acc = round(rng.uniform(1.5, 9.0) if st != TRANSPORT else rng.uniform(3, 15), 1)
                entries.append((i_meta, {"AccuracyRadius": acc, "HighAccuracy": acc < 10.0},
                                None))
            if st != TRANSPORT and (addr_due or rnd() < 0.2):
                addr_due = False
                entries.append((i_addr, {"Country": site.country, "Zipcode": site.zipcode,
                                         "City": site.city, "Address": site.address,
                                         "GeoHash": geohash(lat, lon), "datetime": t}, None))
            if u.access and event and ctx.on and not access_done:
                access_done = True
                usage = []
                if rnd() < 0.05:  # a fumbled first attempt
                    usage.append(self._key_use(op_id, key_id, u, "UNLOCK", False, t - 20_000))
                usage.append(self._key_use(op_id, key_id, u, "UNLOCK", True, t - 2_000))
                entries.append((i_acc, usage, None))
            if electric:
                if st == WORK:
                    ctx.plat = rng.uniform(0.3, 1.0) * u.m.spec.platform_m if rnd() < 0.65 else 0.0
                elif st == IDLE:
                    ctx.plat = rng.uniform(0.3, 1.0) * u.m.spec.platform_m if rnd() < 0.4 else 0.0
                else:
                    ctx.plat = 0.0
            on = ctx.on
            for fi, p_on, p_off, getter in u.cands:
                if rnd() < (p_on if on else p_off):
                    v = getter(ctx)
                    if v is not None:
                        entries.append((fi, v, t))
            if can_bus and on and rnd() < 0.04:
                entries.append((i_can, self._can_messages(ctx, t), None))
            if compressor and on and rnd() < 0.3:
                loaded = st == WORK
                entries.append((i_adv, [
                    {"datetime": t, "UnitOfMeasurement": "bar", "SensorId": 7301,
                     "SensorName": "Discharge Pressure",
                     "NumericValue": round((7.0 if loaded else 7.6) + 0.15 * z(), 2),
                     "Source": "CAN1"},
                    {"datetime": t, "SensorId": 7302, "SensorName": "Compressor State",
                     "NumericValue": 1.0 if loaded else 0.0,
                     "StringValue": "LOADED" if loaded else "UNLOADED", "Source": "CAN1"},
                ], None))
            fc = faults.get(n)
            if fc:
                entries.append((i_fc, fc, None))
            if version == 2 and u.lamps and rnd() < (0.3 if on else 0.1):
                lit = {f.lamp for raised, cleared, f in plan.faults if raised <= t < cleared}
                for li, lamp in u.lamps:
                    entries.append((li, lamp in lit, t))
            yield (receipt, mi, t, 0, version, entries)

    @staticmethod
    def _key_use(op: str, key: str, u: _Unit, operation: str, ok: bool, t: int
                 ) -> dict[str, Any]:
        return {"OperatorId": op, "KeyId": key, "Operation": operation,
                "AccessType": u.access_type, "Success": ok, "datetime": t}

    @staticmethod
    def _fault_messages(plan: _Plan, times: list[tuple[int, int, int, bool]]
                        ) -> dict[int, list[dict[str, Any]]]:
        """Which insights message reports each fault's raise (cleared null) and its clear."""
        out: dict[int, list[dict[str, Any]]] = {}
        if not plan.faults:
            return out
        ins = [(n, t) for n, (t, fmt, _, _) in enumerate(times) if fmt == 0]
        ts = [t for _, t in ins]
        for raised, cleared, f in plan.faults:
            k = bisect_right(ts, raised - 1)  # first message at/after the raise
            if k >= len(ts) - 1:
                continue  # no later message to carry the clear: the fault never happened
            j = max(k + 1, bisect_right(ts, cleared - 1))
            if j >= len(ts):
                j = len(ts) - 1
                cleared = min(cleared, ts[j])
            cleared = max(cleared, raised + 1)
            base = {"CodeIdentifier": f.code, "CodeDescription": f.description,
                    "CodeSeverity": f.severity, "CodeSource": f.source, "datetime": raised}
            out.setdefault(ins[k][0], []).append({**base, "datetimeCleared": None})
            out.setdefault(ins[j][0], []).append({**base, "datetimeCleared": cleared})
        return out

    @staticmethod
    def _can_messages(c: _Ctx, t: int) -> list[dict[str, Any]]:
        rpm = _rpm(c)
        raw_rpm = int(rpm / 0.125)
        fuel = round(100.0 * c.c[FL] / c.u.m.spec.tank_l, 1)
        return [
            {"datetime": t, "UnitOfMeasurement": "rpm", "VariableId": 190,
             "VariableName": "Engine Speed", "ParsedValue": rpm,
             "CanMessageValues": {"Kind": "MIN_MAX", "MinValue": rpm - 60.0,
                                  "MaxValue": rpm + 110.0},
             "CanMessageData": {"CanId": 0x0CF00400, "SourceAddress": 0,
                                "BinaryValue": bytes((0xF0, 0x7D, 0x7D, raw_rpm & 0xFF,
                                                      (raw_rpm >> 8) & 0xFF, 0, 0xF0, 0x7D)),
                                "Counter": 1200, "CapturingPeriod": 120, "CanType": "Can A"}},
            {"datetime": t, "UnitOfMeasurement": "%", "VariableId": 96,
             "VariableName": "Fuel Level", "ParsedValue": fuel,
             "CanMessageValues": {"Kind": "VALUE", "value": fuel},
             "CanMessageData": {"CanId": 0x18FEFC17, "SourceAddress": 23, "Counter": 12,
                                "CapturingPeriod": 120, "CanType": "Can A"}},
        ]

    def _raw_payload(self, u: _Unit, c: _Ctx, sg: _Seg, plan: _Plan, t: int, event: bool,
                     lat: float, lon: float, site: Site, key_id: str) -> dict[str, Any]:
        rng = c.rng
        cc = c.c
        on = c.on
        p: dict[str, Any] = dict(u.raw_static)
        p["time"] = t
        p["event"] = 6 if event else 2
        if u.access and on:
            p["keyId"] = key_id
        p["location"] = {"latitude": lat, "longitude": lon}
        if sg.st != TRANSPORT:
            p["address"] = {"country": site.country, "zipCode": site.zipcode, "city": site.city,
                            "streetAddress": site.address}
        if c.speed > 0:
            p["heading"] = _bearing(sg.lat0, sg.lon0, sg.lat1, sg.lon1) \
                if sg.st == TRANSPORT else rng.randrange(360)
        p["speed"] = round(c.speed, 1)
        p["km"] = round(cc[KM] + cc[TKM], 1)
        p["run1"] = float(round(cc[RUN]))
        p["run2"] = float(round(cc[WRK]))
        p["run3"] = 0.0
        p["run4"] = 0.0
        p["runOdo"] = float(round(cc[MOV]))
        if u.temp_sensors:
            p["temperature1"] = round(_ambient(c) + (6.0 if on else 1.0) + 0.3 * c.z(), 1)
            if u.temp_sensors > 1:
                p["temperature2"] = round((82.0 + 6.0 * c.load) if on else _ambient(c) + 2.0, 1)
        work = sg.st == WORK
        p["input1"] = on
        p["input2"] = work
        for i in range(3, 11):
            p[f"input{i}"] = False
        for i in range(1, 6):
            p[f"output{i}"] = False
        p["analogInput1"] = round(2.0 + 6.0 * sg.load + 0.05 * c.z(), 2) if work else \
            round(abs(0.02 * c.z()), 2)
        p["analogInput2"] = 0.0
        p["analogInput4"] = 0.0
        p["input1ChangeCounter"] = sg.changes1
        p["input2ChangeCounter"] = sg.changes2
        p["input3ChangeCounter"] = 0
        p["input4ChangeCounter"] = 0
        p["batteryLevel"] = float(min(100, round(98 + 1 * c.z())))
        p["externalPower"] = _batt_v(c)
        if u.kind == "diesel" and on and rng.random() < 0.5:
            values = (_rpm(c), round(100.0 * cc[FL] / u.m.spec.tank_l, 1),
                      round(84 + 6 * c.load + 1.5 * c.z(), 1),
                      round(u.eng0 + cc[RUN] / 3600.0, 2), round(cc[FT], 1))
            p["canVariables"] = [
                {"time": t, "variableId": vid, "name": name, "value": f"{v:g}", "uom": uom}
                for (vid, name, uom), v in zip(_RAW_CAN_VARS, values, strict=True)]
        if u.kind == "diesel":
            active = [(raised, f) for raised, cleared, f in plan.faults
                      if raised <= t < cleared and f.spn]
            if active:
                p["canFaults"] = [
                    {"time": raised, "spn": f.spn, "fmi": f.fmi, "occurrenceCount": 1,
                     "name": f.name, "description": f.description} for raised, f in active]
        return p


_ID_NAMESPACE: Final = uuid.UUID("0c4f1b9e-2d7a-5e83-9a61-7f3b2c8d4e15")


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, repr(parts)))


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (lat + north_m / 111_320.0,
            lon + east_m / (111_320.0 * math.cos(math.radians(lat))))
