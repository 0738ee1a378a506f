"""A machine's day: whether it works, its activity blocks, where it parks, its faults.

``plan_day`` is pure given the machine's static unit, the day's start state and the local
day's bounds: every random draw comes from the (machine, day) plan stream, in a fixed order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import date

from .behaviour import (
    MAX_RELOCATION_KM,
    OPERATORS_PER_CUSTOMER,
    P_WORK_ROUND_CLOCK,
    round_clock_periods,
)
from .faults import Fault, draw_faults
from .geo import haversine_km, offset_m
from .model import H_MS, IDLE, OFF, TRANSPORT, WORK, Plan, Seg, State, Unit
from .physics import integrate
from .rand import P_PLAN, P_RENT, P_SPOT, day_rng, mix, uniform01

__all__ = ["plan_day"]

Block = tuple[int, int, int, float]  # (t0, t1, state, load); TRANSPORT's load is its km
DayInfo = tuple[int, int, int]  # (local midnight, next midnight, 00:00 at the noon offset)


def plan_day(u: Unit, day: int, s0: State, info: DayInfo, with_messages: bool) -> Plan:
    """The plan of ``day`` from its start state ``s0``; segments and faults only when
    ``with_messages`` (chaining start states needs only the end state)."""
    rng = day_rng(u.rkey, P_PLAN, day)
    d0, d1, base = info

    def at(h: float) -> int:
        return min(max(base + int(h * H_MS), d0), d1)

    blocks: list[Block] = []
    if u.schedule != "day":
        works = rng.random() < P_WORK_ROUND_CLOCK
        site_to = s0.site
        if works:
            for a_h, z_h in round_clock_periods(u.schedule, rng):
                fill(blocks, rng, u, at(a_h), at(z_h))
    else:
        works, site_to = _day_shift(u, day, s0, rng, at, blocks)
    shift_end = max((t1 for _, t1, _, _ in blocks), default=d0)
    first_activity = min((t0 for t0, _, _, _ in blocks), default=d1)
    segs, end = integrate(u, rng, d0, d1, s0, blocks, shift_end, site_to, keep_segs=with_messages)
    # A machine parks at one spot; it moves to a new one only on days it works, and only
    # once it starts (no overnight teleports).
    end.spot_day = day if works else s0.spot_day
    faults: list[tuple[int, int, Fault]] = []
    operator = 0
    if with_messages:
        spot_prev = spot(u, s0.spot_day, s0.site)
        spot_today = spot(u, day, site_to) if works else spot_prev
        _place(segs, first_activity, spot_prev, spot_today)
        operator = rng.randrange(OPERATORS_PER_CUSTOMER)
        faults = draw_faults(u, rng, segs, d1)
    return Plan(day, d0, d1, base, segs, faults, operator, end)


def _day_shift(u: Unit, day: int, s0: State, rng: random.Random, at: Callable[[float], int],
               blocks: list[Block]) -> tuple[bool, int]:
    """A day-shift machine's blocks (weekday odds, weeks off rent, lunch, relocations);
    returns (works today, site at the end of the day)."""
    m, b = u.m, u.b
    dd = date.fromordinal(day)
    wd = dd.weekday()
    iso = dd.isocalendar()
    off_rent = uniform01(mix(u.rkey, P_RENT, iso.year, iso.week)) < 0.12
    p_use = (b.p_weekday if wd < 5 else b.p_saturday if wd == 5 else b.p_sunday) * u.util
    works = rng.random() < p_use and not off_rent
    site_from = site_to = s0.site
    if not works:
        return False, site_to
    s_h = b.shift[0] + rng.uniform(-0.4, 0.4)
    e_h = b.shift[1] + rng.uniform(-0.4, 0.6)
    if wd == 5:
        e_h = min(e_h, s_h + 5.0)
    near = [i for i, other in enumerate(m.sites) if i != site_from and
            haversine_km(m.sites[site_from], other) <= MAX_RELOCATION_KM]
    moved = False
    if near and wd < 5 and rng.random() < b.p_reloc:
        site_to = rng.choice(near)
        dist = haversine_km(m.sites[site_from], m.sites[site_to])
        t_h = s_h - 0.75
        arrive = t_h + 0.5 + dist / 55.0
        blocks.append((at(t_h), at(arrive), TRANSPORT, dist))
        s_h = arrive + 0.3
        moved = True
    periods: list[tuple[float, float]] = []
    if m.type == "light tower" and dd.month in (10, 11, 12, 1, 2, 3) and not moved:
        periods.append((5.5 + rng.uniform(-0.3, 0.3), 8.0 + rng.uniform(0.0, 0.5)))
    if b.lunch and s_h < 11.0 and e_h > 13.5:
        l0 = 11.75 + rng.uniform(-0.25, 0.5)
        periods += [(s_h, l0), (l0 + rng.uniform(0.5, 0.75), e_h)]
    elif s_h < e_h - 0.5:
        periods.append((s_h, e_h))
    for a_h, z_h in periods:
        fill(blocks, rng, u, at(a_h), at(z_h))
    return True, site_to


def fill(blocks: list[Block], rng: random.Random, u: Unit, a: int, z: int) -> None:
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


def spot(u: Unit, day: int, site: int) -> tuple[float, float]:
    """Where on the site the machine stands that day (stable within a day)."""
    s = u.m.sites[site]
    h = mix(u.rkey, P_SPOT, day, site)
    r = s.radius_m * 0.8 * math.sqrt(uniform01(h))
    a = 2 * math.pi * uniform01(mix(h, 1))
    return offset_m(s.lat, s.lon, r * math.cos(a), r * math.sin(a))


def _place(segs: list[Seg], first_activity: int, spot_prev: tuple[float, float],
           spot_today: tuple[float, float]) -> None:
    for sg in segs:
        sp = spot_prev if sg.t0 < first_activity else spot_today
        sg.lat0, sg.lon0 = sg.lat1, sg.lon1 = sp
        if sg.st == TRANSPORT:
            sg.lat0, sg.lon0 = spot_prev
            sg.lat1, sg.lon1 = spot_today
