"""Static behaviour per machine type: when machines work, how hard, how often they report.

Working hours come from the machine's site and type: weekday day shifts by default; night work
(every night) for a share of generators and light towers; three shifts round the clock, every
day, at ``"24/7"`` sites (light towers there work the nights).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from tu_analytics.sandbox.fleet import Machine

from .model import CHARGING, IDLE, OFF, PLUGGED, TRANSPORT, WORK
from .rand import P_NIGHT, mix, uniform01

__all__ = ["BEHAVIOUR", "KIN", "Behaviour", "round_clock_periods", "schedule"]

# Seconds between Machine Insights messages per state (uniform in [lo, hi]).
INTERVALS_S: Final[Mapping[int, tuple[int, int]]] = {
    OFF: (1800, 3600), IDLE: (270, 330), WORK: (60, 120), TRANSPORT: (60, 120),
    CHARGING: (900, 1800), PLUGGED: (1800, 3600),
}
KIN_INTERVALS_S: Final = {True: (600, 1800), False: (3600, 7200)}  # seen on site / not
RAW_INTERVALS_S: Final = {True: (540, 660), False: (3300, 3900)}  # ignition on / off
RAW_TRANSPORT_S: Final = (300, 420)
MAX_RELOCATION_KM: Final = 400.0  # further sites in the same zone are never trucked to

NIGHT_WORK_SHARE: Final = 0.4  # generators and light towers on night work (road works, ...)
P_WORK_ROUND_CLOCK: Final = 0.97  # a night/24-7 machine's odds of working on a given day
OPERATORS_PER_CUSTOMER: Final = 8  # operators per customer for access control (keys, cards)
ACCESS_TYPES: Final = ("KEY_CARD", "DIGITAL_KEY", "KEYPAD_USE", "ROLLING_PIN")


@dataclass(frozen=True, slots=True)
class Behaviour:
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


KIN = Behaviour(0.75, 0.10, 0.02, (7.0, 16.0), False, 600, 1, 0.0, (0, 0), 0.3, 3, 40, 0, 0.03)
BEHAVIOUR: Final[Mapping[str, Behaviour]] = {
    "excavator": Behaviour(0.8, 0.12, 0.02, (7.0, 16.5), True, 35, 14, 0.2, (0.35, 0.9),
                            0.05, 2.0, 30, 0.25, 0.02),
    "wheel loader": Behaviour(0.8, 0.12, 0.02, (6.5, 16.5), True, 30, 12, 0.2, (0.3, 0.85),
                               0.6, 8.0, 70, 0.25, 0.02),
    "telehandler": Behaviour(0.75, 0.10, 0.02, (7.0, 16.0), True, 12, 8, 0.35, (0.2, 0.7),
                              0.5, 6.0, 60, 0.15, 0.03),
    "scissor lift": Behaviour(0.7, 0.08, 0.01, (7.0, 16.0), True, 5, 8, 0.4, (0.3, 0.9),
                               0.3, 1.5, 25, 0.08, 0.03),
    "generator": Behaviour(0.75, 0.15, 0.05, (6.5, 17.5), False, 90, 15, 0.05, (0.25, 0.85),
                            0.0, 0.0, 1, 0.12, 0.015),
    "compressor": Behaviour(0.6, 0.08, 0.01, (7.0, 16.0), True, 40, 10, 0.15, (0.4, 0.9),
                             0.0, 0.0, 2, 0.1, 0.02),
    "light tower": Behaviour(0.6, 0.10, 0.02, (16.5, 21.5), False, 300, 5, 0.02, (0.8, 0.95),
                              0.0, 0.0, 1, 0.05, 0.02),
}


def schedule(m: Machine, rkey: int) -> str:
    """A machine's working hours: its site's, or night work for some generators/towers."""
    if m.home_site.hours == "24/7":
        return "night" if m.type == "light tower" else "24/7"
    if m.type in ("generator", "light tower") and \
            uniform01(mix(rkey, P_NIGHT)) < NIGHT_WORK_SHARE:
        return "night"
    return "day"


def round_clock_periods(schedule: str, rng: random.Random) -> list[tuple[float, float]]:
    """Local-hour working periods of a night or 24/7 day (shift changes at ~06 and ~18)."""
    if schedule == "night":
        return [(0.0, 6.5 + rng.uniform(-0.3, 0.3)), (19.0 + rng.uniform(-0.3, 0.3), 24.0)]
    h1 = 6.0 + rng.uniform(-0.4, 0.2)
    h2 = 18.0 + rng.uniform(-0.4, 0.2)
    return [(0.0, h1), (h1 + rng.uniform(0.3, 0.6), h2), (h2 + rng.uniform(0.3, 0.6), 24.0)]

