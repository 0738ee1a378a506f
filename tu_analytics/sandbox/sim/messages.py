"""A machine-day's messages: when they are measured and received, where the machine is, and
what each Machine Insights message carries (a random, state-dependent subset of insights).

Message times follow the state (every 1-2 min working, ~5 min idle, 30-60 min heartbeats off,
an immediate message at ignition/work changes). Content draws come from the (machine, day)
message stream in a fixed order, so the content is a pure function of the plan.

Delivery (see ``SimConfig``) draws from its own (machine, day) stream, so the shares change
when and how often a message arrives, never what it says: a receipt delay of seconds (about
``LATE_SHARE`` minutes to hours late one by one), a coverage outage holding back a stretch of
the day until the backlog uploads, a Kafka timestamp moved back (disorder), a second delivery
(duplicate). The schema version follows the first delivery; a duplicate repeats its bytes.
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
from .config import LATE_SHARE, MAX_DELAY_MS, NORMAL_DELAY_CAP_MS, SimConfig
from .faults import fault_messages
from .geo import geohash, offset_m
from .insights import can_messages, key_use
from .model import CHARGING, H_MS, IDLE, ON, TRANSPORT, WORK, Ctx, Msg, Plan, Seg, Unit
from .rand import P_DELIVERY, P_MSG, day_rng
from .raw import raw_payload

__all__ = ["MessageEnv", "day_messages", "timeline"]

Entry = tuple[int, Any, int | None]  # (field index, value, measurement ms) of an insight


@dataclass(frozen=True, slots=True)
class MessageEnv:
    """What messages need beyond the machine and its plan."""

    v2_from_ms: int | None  # insights delivered from here on use schema version 2
    v3_from_ms: int | None  # ... and from here on version 3
    index: Mapping[str, int]  # insights field name -> index (schema order)
    operators: Mapping[str, list[tuple[str, str]]]  # customer -> (operator id, key id)
    config: SimConfig

    def version(self, delivered: int) -> int:
        if self.v3_from_ms is not None and delivered >= self.v3_from_ms:
            return 3
        return 2 if self.v2_from_ms is not None and delivered >= self.v2_from_ms else 1


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
    post = _Delivery(day_rng(u.rkey, P_DELIVERY, plan.day), env.config, plan)
    for n, (t, fmt, si, event) in enumerate(times):
        sg = plan.segs[si]
        sends = post.deliveries(t)
        receipt = sends[0][0]
        lat, lon = _position(ctx, sg, t)
        if sg.st == TRANSPORT:
            walk.addr_due = True  # report the new address once it has arrived
        _set_context(ctx, sg, plan, t)
        site = u.m.sites[sg.site]
        if fmt == 1:
            body: Any = raw_payload(ctx, sg, plan, t, event, lat, lon, site, walk.key_id)
            version = 1
        else:
            version = env.version(receipt)
            body = _insights(ctx, env.index, walk, (t, event, lat, lon), site, version)
            fc = faults.get(n)
            if fc:
                body.append((env.index["FaultCodes"], fc, None))
            if version >= 2 and u.lamps and rng.random() < (0.3 if ctx.on else 0.1):
                lit = {f.lamp for raised, cleared, f in plan.faults if raised <= t < cleared}
                body += [(li, lamp in lit, t) for li, lamp in u.lamps]
        for delivered, kafka_ts in sends:
            yield (delivered, u.m.index, t, fmt, version, body, kafka_ts)


class _Delivery:
    """When a machine-day's messages reach the platform (one random stream per day)."""

    __slots__ = ("cfg", "outage", "p_any", "rng")

    def __init__(self, rng: random.Random, cfg: SimConfig, plan: Plan) -> None:
        self.rng, self.cfg = rng, cfg
        self.p_any = cfg.disorder_share + cfg.duplicate_share
        self.outage: tuple[int, int] | None = None
        if rng.random() < 8.0 * cfg.late_share:  # mean outage 3 h: ~late_share of the day
            o0 = plan.d0 + int(rng.uniform(0, plan.d1 - plan.d0))
            self.outage = (o0, o0 + int(rng.uniform(1.0, 5.0) * H_MS))

    def deliveries(self, t: int) -> tuple[tuple[int, int], ...]:
        """(delivery ms, Kafka timestamp ms) of the message measured at ``t``: one, or two
        for a duplicate. (One draw picks plain, disordered or duplicated: rare, exclusive.)"""
        rng = self.rng
        first = min(t + MAX_DELAY_MS, self._arrival(t))
        u = rng.random()
        if u >= self.p_any:
            return ((first, first),)
        if u < self.cfg.disorder_share:  # a parallel writer stamps it a bit earlier
            back = int(math.exp(rng.uniform(math.log(2_000), math.log(180_000))))
            return ((first, max(t, first - back)),)
        # The device resends: the acknowledgement was lost.
        again = min(t + MAX_DELAY_MS, first + int(rng.uniform(5_000, 600_000)))
        if again > first:  # (equal delivery times would make the merge compare bodies)
            return ((first, first), (again, again))
        return ((first, first),)

    def _arrival(self, t: int) -> int:
        rng = self.rng
        if self.outage is not None and self.outage[0] <= t < self.outage[1]:
            return self.outage[1] + int(rng.uniform(1_000, 300_000))  # the backlog uploads
        if rng.random() < LATE_SHARE:
            return t + int(math.exp(rng.uniform(math.log(120_000), math.log(MAX_DELAY_MS))))
        return t + min(NORMAL_DELAY_CAP_MS, 400 + int(rng.expovariate(1 / 2500.0)))


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
    _sensors(c, index, entries, t, version)
    return entries


def _platform(c: Ctx) -> float:
    """A lift's platform height: raised often at work, sometimes idle, stowed otherwise."""
    top = c.u.m.spec.platform_m
    if c.st == WORK:
        return c.rng.uniform(0.3, 1.0) * top if c.rng.random() < 0.65 else 0.0
    if c.st == IDLE:
        return c.rng.uniform(0.3, 1.0) * top if c.rng.random() < 0.4 else 0.0
    return 0.0


def _sensors(c: Ctx, index: Mapping[str, int], entries: list[Entry], t: int,
             version: int) -> None:
    """CAN messages (diesel, not light towers) and a compressor's advanced sensors."""
    u, rng, z = c.u, c.rng, c.z
    if u.kind == "diesel" and u.m.type != "light tower" and c.on and rng.random() < 0.04:
        entries.append((index["CANMessages"], can_messages(c, t, version), None))
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
