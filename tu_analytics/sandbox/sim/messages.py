"""A machine-day's messages: when they are measured and received, where the machine is, and
what each Machine Insights message carries (a random, state-dependent subset of insights).

Message times follow the state (every 1-2 min working, ~5 min idle, 30-60 min heartbeats off,
an immediate message at ignition/work changes). Each has a receipt delay of seconds; about
``LATE_SHARE`` arrive minutes to hours late. Every draw comes from the (machine, day) message
stream in a fixed order, so the output is a pure function of the plan.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from tu_analytics.sandbox.fleet import Site

from .behaviour import INTERVALS_S, KIN_INTERVALS_S, RAW_INTERVALS_S, RAW_TRANSPORT_S
from .config import LATE_SHARE, MAX_DELAY_MS, NORMAL_DELAY_CAP_MS
from .faults import fault_messages
from .geo import geohash, offset_m
from .insights import can_messages, key_use
from .model import CHARGING, H_MS, IDLE, ON, TRANSPORT, WORK, Ctx, Msg, Plan, Seg, Unit
from .rand import P_MSG, day_rng
from .raw import raw_payload

__all__ = ["MessageEnv", "day_messages", "timeline"]

Entry = tuple[int, Any, int | None]  # (field index, value, measurement ms) of an insight


@dataclass(frozen=True, slots=True)
class MessageEnv:
    """What messages need beyond the machine and its plan."""

    v2_from_ms: int | None  # insights received from here on use schema version 2
    index: Mapping[str, int]  # insights field name -> index (schema order)
    operators: Mapping[str, list[tuple[str, str]]]  # customer -> (operator id, key id)


class _Walk:
    """What carries from one message of a day to the next."""

    __slots__ = ("access_done", "addr_due", "key_id", "op_id")

    def __init__(self, op_id: str, key_id: str) -> None:
        self.addr_due = True
        self.access_done = False
        self.op_id, self.key_id = op_id, key_id


def timeline(u: Unit, plan: Plan, rng: random.Random, raw: bool
             ) -> list[tuple[int, int, int, bool]]:
    """(measure_ms, format, segment index, is-event) for one format's messages of a day."""
    out: list[tuple[int, int, int, bool]] = []
    kin = u.kind == "kin"
    prev_on = prev_work = None
    prev_st = -1
    fmt = 1 if raw else 0
    for i, sg in enumerate(plan.segs):
        st = sg.st
        on, work = ON[st], st == WORK
        event = prev_st >= 0 and (on != prev_on or work != prev_work or
                                  (st != prev_st and st in (TRANSPORT, CHARGING)))
        prev_on, prev_work, prev_st = on, work, st
        if raw:
            lo, hi = RAW_TRANSPORT_S if st == TRANSPORT else RAW_INTERVALS_S[on]
        elif kin:
            lo, hi = KIN_INTERVALS_S[st in (WORK, TRANSPORT)]
        else:
            lo, hi = INTERVALS_S[st]
        t = sg.t0 + int(rng.uniform(1_000, 5_000) if event else rng.uniform(0, hi * 1000))
        ev = event
        while t < sg.t1:
            out.append((t, fmt, i, ev))
            ev = False
            t += int(rng.uniform(lo * 1000, hi * 1000))
    return out


def day_messages(u: Unit, plan: Plan, env: MessageEnv) -> Iterator[Msg]:
    """Every message measured on this machine-day, in measurement order (lazily built)."""
    rng = day_rng(u.rkey, P_MSG, plan.day)
    times = timeline(u, plan, rng, raw=False)
    if u.kind != "kin":
        times += timeline(u, plan, rng, raw=True)
        times.sort()
    if not times:
        return
    faults = fault_messages(plan, times)
    ctx = Ctx(u, rng)
    ctx.doy = date.fromordinal(plan.day).timetuple().tm_yday
    walk = _Walk(*env.operators[u.m.customer][plan.operator])
    v2 = env.v2_from_ms
    for n, (t, fmt, si, event) in enumerate(times):
        sg = plan.segs[si]
        receipt = t + _delay(rng)
        lat, lon = _position(ctx, sg, t)
        if sg.st == TRANSPORT:
            walk.addr_due = True  # report the new address once it has arrived
        _set_context(ctx, sg, plan, t)
        site = u.m.sites[sg.site]
        if fmt == 1:
            yield (receipt, u.m.index, t, 1, 1,
                   raw_payload(ctx, sg, plan, t, event, lat, lon, site, walk.key_id))
            continue
        version = 2 if v2 is not None and receipt >= v2 else 1
        entries = _insights(ctx, env.index, walk, (t, event, lat, lon), site, version)
        fc = faults.get(n)
        if fc:
            entries.append((env.index["FaultCodes"], fc, None))
        if version == 2 and u.lamps and rng.random() < (0.3 if ctx.on else 0.1):
            lit = {f.lamp for raised, cleared, f in plan.faults if raised <= t < cleared}
            entries += [(li, lamp in lit, t) for li, lamp in u.lamps]
        yield (receipt, u.m.index, t, 0, version, entries)


def _delay(rng: random.Random) -> int:
    """Receipt delay: seconds after measurement, ``LATE_SHARE`` minutes to hours late."""
    if rng.random() < LATE_SHARE:
        return int(math.exp(rng.uniform(math.log(120_000), math.log(MAX_DELAY_MS))))
    return min(NORMAL_DELAY_CAP_MS, 400 + int(rng.expovariate(1 / 2500.0)))


def _position(c: Ctx, sg: Seg, t: int) -> tuple[float, float]:
    """Where the machine is (rounded lat, lon); sets ``c.speed``."""
    z, st, b = c.z, sg.st, c.u.b
    if st == TRANSPORT:  # on a truck between sites
        f = (t - sg.t0) / max(1, sg.t1 - sg.t0)
        lat = sg.lat0 + (sg.lat1 - sg.lat0) * f + 0.00003 * z()
        lon = sg.lon0 + (sg.lon1 - sg.lon0) * f + 0.00003 * z()
        c.speed = max(0.0, sg.speed * 1.1 + 8 * z()) if 0.05 < f < 0.95 else 0.0
    elif st == WORK:  # moving around the site
        lat, lon = offset_m(sg.lat0, sg.lon0, b.jitter_m * z(), b.jitter_m * z())
        moving = b.work_speed > 0 and c.rng.random() < b.move_share
        c.speed = c.rng.uniform(1.0, 1.6 * b.work_speed) if moving else 0.0
    else:  # parked: GPS noise only
        lat, lon = offset_m(sg.lat0, sg.lon0, 2.0 * z(), 2.0 * z())
        c.speed = 0.0
    return round(lat, 6), round(lon, 6)


def _set_context(c: Ctx, sg: Seg, plan: Plan, t: int) -> None:
    dt = t - sg.t0
    c.c = [a + b * dt for a, b in zip(sg.c0, sg.r, strict=True)]
    c.t, c.st, c.load, c.on = t, sg.st, sg.load, ON[sg.st]
    c.cycles = sg.cycles
    c.local_h = (t - plan.base_ms) / H_MS


def _insights(c: Ctx, index: Mapping[str, int], walk: _Walk,
              at: tuple[int, bool, float, float], site: Site, version: int) -> list[Entry]:
    """The entries of one Machine Insights message, in schema order (faults/lamps after)."""
    t, event, lat, lon = at
    u, rng, z = c.u, c.rng, c.z
    entries: list[Entry] = [(index["EquipmentHeader"], u.hdr, None),
                            (index["Metadata"], u.meta, None)]
    entries.append((index["Location"], {"Latitude": lat, "Longitude": lon,
                                        "Altitude": round(site.altitude + 1.5 * z(), 1),
                                        "AltitudeUnits": "metres", "datetime": t}, None))
    if u.kind == "kin":
        return entries
    if rng.random() < 0.6:
        acc = round(rng.uniform(1.5, 9.0) if c.st != TRANSPORT else rng.uniform(3, 15), 1)
        entries.append((index["LocationMetadata"],
                        {"AccuracyRadius": acc, "HighAccuracy": acc < 10.0}, None))
    if c.st != TRANSPORT and (walk.addr_due or rng.random() < 0.2):
        walk.addr_due = False
        entries.append((index["LocationAddress"], {
            "Country": site.country, "Zipcode": site.zipcode, "City": site.city,
            "Address": site.address, "GeoHash": geohash(lat, lon), "datetime": t}, None))
    if u.access and event and c.on and not walk.access_done:
        walk.access_done = True
        usage = []
        if rng.random() < 0.05:  # a fumbled first attempt
            usage.append(key_use(walk.op_id, walk.key_id, u, "UNLOCK", False, t - 20_000))
        usage.append(key_use(walk.op_id, walk.key_id, u, "UNLOCK", True, t - 2_000))
        entries.append((index["AccessControlKeyUsage"], usage, None))
    if u.kind == "electric":
        c.plat = _platform(c)
    for fi, p_on, p_off, getter in u.cands:
        if rng.random() < (p_on if c.on else p_off):
            v = getter(c)
            if v is not None:
                entries.append((fi, v, t))
    _sensors(c, index, entries, t)
    return entries


def _platform(c: Ctx) -> float:
    """A lift's platform height: raised often at work, sometimes idle, stowed otherwise."""
    top = c.u.m.spec.platform_m
    if c.st == WORK:
        return c.rng.uniform(0.3, 1.0) * top if c.rng.random() < 0.65 else 0.0
    if c.st == IDLE:
        return c.rng.uniform(0.3, 1.0) * top if c.rng.random() < 0.4 else 0.0
    return 0.0


def _sensors(c: Ctx, index: Mapping[str, int], entries: list[Entry], t: int) -> None:
    """CAN messages (diesel, not light towers) and a compressor's advanced sensors."""
    u, rng, z = c.u, c.rng, c.z
    if u.kind == "diesel" and u.m.type != "light tower" and c.on and rng.random() < 0.04:
        entries.append((index["CANMessages"], can_messages(c, t), None))
    if u.m.type == "compressor" and c.on and rng.random() < 0.3:
        loaded = c.st == WORK
        entries.append((index["AdvancedSensors"], [
            {"datetime": t, "UnitOfMeasurement": "bar", "SensorId": 7301,
             "SensorName": "Discharge Pressure",
             "NumericValue": round((7.0 if loaded else 7.6) + 0.15 * z(), 2),
             "Source": "CAN1"},
            {"datetime": t, "SensorId": 7302, "SensorName": "Compressor State",
             "NumericValue": 1.0 if loaded else 0.0,
             "StringValue": "LOADED" if loaded else "UNLOADED", "Source": "CAN1"},
        ], None))
