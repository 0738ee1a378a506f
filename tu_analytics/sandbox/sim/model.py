"""The simulation's data model: segment states, counter slots, and the per-machine records
(start state of a day, a day's plan and segments, the static unit, a message's context).

Counters live in a plain list indexed by the slots below (RUN..DIS): a segment holds their
values at its start and a constant rate per millisecond, so a counter at any instant is
``start + rate * (t - t0)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from tu_analytics.sandbox.fleet import Machine

from .rand import normal_draws

if TYPE_CHECKING:
    from .behaviour import Behaviour
    from .faults import Fault
    from .sparse import Preencoded

UNIX_ORD: Final = date(1970, 1, 1).toordinal()
DAY_MS: Final = 86_400_000
H_MS: Final = 3_600_000.0

# Segment states (PLUG_IN is transient: the moment a lift's charger is connected)
OFF, IDLE, WORK, TRANSPORT, CHARGING, PLUGGED, PLUG_IN = range(7)
ON = (False, True, True, False, False, False, False)

# Counter slots of a segment's start vector / rate vector.
(RUN, WRK, IDL, MOV, KM, TKM, FT, FI, FL, DEF, KWH, SOC, CHG, DIS) = range(14)
N_COUNTERS: Final = 14
ZERO_RATES: Final = [0.0] * N_COUNTERS  # shared; never mutated

CO2_PER_L: Final = 2.68  # kg CO2 per litre of diesel
CO2_PER_KWH: Final = 0.2  # kg CO2 per kWh of grid electricity
DEF_PER_L: Final = 0.04  # litres of DEF per litre of diesel at load
CHARGE_PCT_H: Final = 12.5  # lift charger: empty to full in 8 h
CHARGER_EFF: Final = 0.85


@dataclass(slots=True)
class State:
    """A machine at a local midnight: everything that carries from one day to the next."""

    site: int  # index into Machine.sites
    c: list[float]  # counters (see RUN..DIS)
    changes1: int  # input 1 (ignition) on/off changes since install
    changes2: int  # input 2 (working) changes
    cycles: int  # battery charge cycles
    plugged: bool  # electric: charger connected
    spot_day: int  # the day whose parking spot on ``site`` the machine stands at


class Seg:
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
class Plan:
    day: int
    d0: int
    d1: int
    base_ms: int  # UTC ms of local 00:00 on the clock of the day's noon offset
    segs: list[Seg]
    faults: list[tuple[int, int, Fault]]  # (raised, cleared, fault)
    operator: int  # index into the customer's operators
    end: State


class Unit:
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
        "schedule",
        "temp_sensors",
        "tz",
        "util",
        "volts",
    )

    m: Machine
    b: Behaviour
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
    init: State
    cands: list[tuple[int, float, float, Callable[[Ctx], Any]]]
    lamps: list[tuple[int, str]]
    hdr: Preencoded
    meta: Preencoded
    key: bytes
    fault_pool: tuple[Fault, ...]
    raw_static: dict[str, Any]
    rkey: int  # random-stream key of this machine under this simulator seed
    temp_sensors: int  # classic temperature inputs wired (RAW temperature1/2)
    schedule: str  # "day" (weekday shifts), "night" (every night) or "24/7" (every day)


class Ctx:
    """The machine at one message: what the insight getters read."""

    __slots__ = ("c", "cycles", "doy", "load", "local_h", "on", "plat", "rng", "speed", "st",
                 "t", "u", "z")

    def __init__(self, u: Unit, rng: random.Random) -> None:
        self.u, self.rng = u, rng
        self.z = normal_draws(rng)  # standard normal draws (what gauss gives, ~5x cheaper)
        self.c: list[float] = [0.0] * N_COUNTERS
        self.t = 0
        self.st = OFF
        self.load = 0.0
        self.on = False
        self.plat = 0.0
        self.cycles = 0
        self.speed = 0.0
        self.local_h = 0.0
        self.doy = 1



# A message of a day, as delivered: (delivery ms: the stream's order, machine index,
# measure_ms, format 0/1, schema version, body, Kafka timestamp ms).
Msg = tuple[int, int, int, int, int, Any, int]
