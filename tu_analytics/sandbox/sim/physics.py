"""The physics of a day: activity blocks become contiguous segments with counter rates.

Diesel engines burn fuel by load (a bowser visit refills a low tank at a segment start) and
use DEF at load; electric lifts drain their battery at work, cut out when flat, and charge
when plugged in after the shift; hour counters, distance and generator energy accumulate
while the engine runs. Every rate is constant within a segment, so counters never decrease.
"""

from __future__ import annotations

import random
from typing import Final

from .model import (
    CHARGE_PCT_H,
    CHARGER_EFF,
    CHARGING,
    CHG,
    DEF,
    DEF_PER_L,
    DIS,
    FI,
    FL,
    FT,
    H_MS,
    IDL,
    IDLE,
    KM,
    KWH,
    MOV,
    N_COUNTERS,
    OFF,
    ON,
    PLUG_IN,
    PLUGGED,
    RUN,
    SOC,
    TKM,
    TRANSPORT,
    WORK,
    WRK,
    ZERO_RATES,
    Seg,
    State,
    Unit,
)

__all__ = ["integrate"]

Span = tuple[int, int, int, float]  # (t0, t1, state, load)
_MIN_SOC: Final = 8.0  # a lift cuts out at this state of charge


class _Day:
    """What changes while a day is integrated (counters, input changes, battery, site)."""

    __slots__ = ("c", "changes1", "changes2", "cycles", "dead", "first_engine", "plug_decided",
                 "plugged", "prev_on", "prev_work", "site")

    def __init__(self, s0: State) -> None:
        self.c = list(s0.c)
        self.changes1, self.changes2 = s0.changes1, s0.changes2
        self.cycles, self.plugged = s0.cycles, s0.plugged
        self.site = s0.site
        self.prev_on = self.prev_work = False
        self.first_engine = True
        self.dead = False  # electric: battery ran flat today
        self.plug_decided = False

    def seg(self, t0: int, t1: int, st: int, load: float, r: list[float]) -> Seg:
        sg = Seg(t0, t1, st, load, self.c, r, self.site)
        sg.changes1, sg.changes2, sg.cycles = self.changes1, self.changes2, self.cycles
        return sg


def integrate(u: Unit, rng: random.Random, d0: int, d1: int, s0: State, blocks: list[Span],
              shift_end: int, site_to: int, keep_segs: bool) -> tuple[list[Seg], State]:
    """Turn activity blocks into contiguous segments with counters, refuels, charging."""
    electric = u.kind == "electric"
    kin = u.kind == "kin"
    day = _Day(s0)
    segs: list[Seg] = []
    queue = list(reversed(_spans(blocks, d0, d1)))
    while queue:
        t0, t1, st, load = queue.pop()
        if t1 <= t0:
            continue
        if electric:
            st, t1, load = _lift_state(day, rng, queue, (t0, t1, st, load), d0 < shift_end <= t0)
        _count_changes(day, st)
        if not (ON[st] or electric or st == TRANSPORT) or kin:
            # Nothing accumulates (diesel engine off, Kin tags): no vector arithmetic.
            if keep_segs:
                segs.append(day.seg(t0, t1, st, load, ZERO_RATES))
            if st == TRANSPORT:
                day.site = site_to
            continue
        r, t1, load = _rates(u, day, rng, queue, t0, t1, st, load)
        if keep_segs:
            sg = day.seg(t0, t1, st, load, r)
            if st == TRANSPORT:
                sg.speed = r[TKM] * H_MS
            segs.append(sg)
        if st == TRANSPORT:
            day.site = site_to
        _advance(u, day, r, t1 - t0)
    end = State(site=site_to, c=day.c, changes1=day.changes1, changes2=day.changes2,
                cycles=day.cycles, plugged=day.plugged, spot_day=s0.spot_day)
    return segs, end


def _spans(blocks: list[Span], d0: int, d1: int) -> list[Span]:
    """Contiguous (t0, t1, state, load) covering the day: OFF between the blocks."""
    blocks.sort()
    spans: list[Span] = []
    t = d0
    for blk in blocks:
        if blk[0] > t:
            spans.append((t, blk[0], OFF, 0.0))
        spans.append(blk)
        t = blk[1]
    if t < d1:
        spans.append((t, d1, OFF, 0.0))
    return spans


def _lift_state(day: _Day, rng: random.Random, queue: list[Span], span: Span,
                after_shift: bool) -> tuple[int, int, float]:
    """An electric lift's (state, end, load) for a span: flat battery, plugging in, charging
    or plugged."""
    t0, t1, st, load = span
    if day.dead and st in (IDLE, WORK):
        st, load = OFF, 0.0
    if st == PLUG_IN:
        day.plugged = True
        day.cycles += 1
        st = OFF
    if st == OFF and day.plugged:
        st = CHARGING if day.c[SOC] < 100.0 else PLUGGED
    elif st == OFF and not day.plug_decided and after_shift:
        # End of shift: the crew plugs it in (nearly always when low).
        day.plug_decided = True
        if rng.random() < (0.97 if (day.c[SOC] < 50.0 or day.dead) else 0.8):
            plug = t0 + int(rng.uniform(0, 20) * 60_000)
            if plug < t1:
                queue.append((plug, t1, PLUG_IN, 0.0))
                t1 = plug
    elif st in (IDLE, WORK):
        day.plugged = False
    return st, t1, load


def _count_changes(day: _Day, st: int) -> None:
    on, work = ON[st], st == WORK
    if on != day.prev_on:
        day.changes1 += 1
    if work != day.prev_work:
        day.changes2 += 1
    day.prev_on, day.prev_work = on, work


def _rates(u: Unit, day: _Day, rng: random.Random, queue: list[Span], t0: int, t1: int,
           st: int, load: float) -> tuple[list[float], int, float]:
    """Counter rates per ms of a span; may end the span early (flat battery, full charge)."""
    r = [0.0] * N_COUNTERS
    on = ON[st]
    if st == TRANSPORT:
        dur = t1 - t0
        r[TKM] = load / dur if dur else 0.0  # load carries the distance here
        load = 0.0
    elif u.kind == "diesel" and on:
        _diesel(u, day, rng, st, load, t1 - t0, r)
    elif u.kind == "electric":
        t1 = _battery(u, day, queue, t0, t1, st, load, r)
    if on:
        _engine(u, st, load, r)
    return r, t1, load


def _diesel(u: Unit, day: _Day, rng: random.Random, st: int, load: float, dur: int,
            r: list[float]) -> None:
    spec = u.m.spec
    lph = spec.idle_lph if st == IDLE else spec.idle_lph + (spec.max_lph - spec.idle_lph) * load
    burn = lph * dur / H_MS
    tank = spec.tank_l
    c = day.c
    # (copies: the list may be the start values of the previous segment)
    if c[FL] - burn < 0.06 * tank or (day.first_engine and c[FL] < 0.4 * tank):
        c = day.c = c.copy()
        c[FL] = tank * rng.uniform(0.9, 1.0)  # fuel bowser visit
    if u.has_def:
        def_use = burn * DEF_PER_L * (1.0 if st == WORK else 0.2) / spec.def_tank_l * 100
        if c[DEF] - def_use < 10.0 or (day.first_engine and c[DEF] < 30.0):
            c = day.c = c.copy()
            c[DEF] = rng.uniform(95.0, 100.0)
        r[DEF] = -def_use / dur
    day.first_engine = False
    r[FT] = lph / H_MS
    r[FL] = -r[FT]
    if st == IDLE:
        r[FI] = r[FT]


def _battery(u: Unit, day: _Day, queue: list[Span], t0: int, t1: int, st: int, load: float,
             r: list[float]) -> int:
    spec = u.m.spec
    soc = day.c[SOC]
    if st == WORK:
        drain = u.drain * (0.6 + 0.6 * load)
        if soc - drain * (t1 - t0) / H_MS < _MIN_SOC:
            # Flat battery: the lift cuts out; the rest of the shift is off.
            t_dead = t0 + max(60_000, int((soc - _MIN_SOC) / drain * H_MS))
            if t_dead < t1:
                queue.append((t_dead, t1, OFF, 0.0))
                t1 = t_dead
            day.dead = True
    else:
        drain = 1.5 if st == IDLE else 0.05 if st == OFF else 0.0
    r[SOC] = -drain / H_MS
    r[DIS] = spec.battery_kwh * drain / 100.0 / H_MS
    if st == CHARGING:
        full_at = t0 + int((100.0 - soc) / CHARGE_PCT_H * H_MS) + 1
        if full_at < t1:
            queue.append((full_at, t1, OFF, 0.0))  # becomes PLUGGED
            t1 = full_at
        r[SOC] = CHARGE_PCT_H / H_MS
        r[CHG] = spec.battery_kwh * CHARGE_PCT_H / 100.0 / CHARGER_EFF / H_MS
    return t1


def _engine(u: Unit, st: int, load: float, r: list[float]) -> None:
    b = u.b
    r[RUN] = 0.001
    if st == WORK:
        r[WRK] = 0.001
        r[MOV] = 0.001 * b.move_share
        r[KM] = b.move_share * b.work_speed / H_MS
        if u.m.type == "generator":
            r[KWH] = u.m.spec.rated_kw * load / H_MS
    else:
        r[IDL] = 0.001


def _advance(u: Unit, day: _Day, r: list[float], dur: int) -> None:
    # A new list: the segment keeps the old one as its start values.
    c = day.c = [x + dx * dur for x, dx in zip(day.c, r, strict=True)]
    if u.kind == "electric":
        c[SOC] = min(100.0, max(0.0, c[SOC]))
    elif u.kind == "diesel":
        c[FL] = max(0.0, c[FL])
