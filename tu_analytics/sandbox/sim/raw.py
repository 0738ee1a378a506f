"""RAW format messages: the classic unit report row (inputs, counters, position), plus CAN
variables and active CAN faults for diesel machines."""

from __future__ import annotations

from typing import Any, Final

from tu_analytics.sandbox.fleet import Site

from .geo import bearing
from .insights import ambient, batt_v, rpm
from .model import FL, FT, KM, MOV, RUN, TKM, TRANSPORT, WORK, WRK, Ctx, Plan, Seg

__all__ = ["raw_payload"]

# RAW CAN variables: (variable id = J1939 SPN, name, unit)
RAW_CAN_VARS: Final = (
    (190, "Engine Speed", "rpm"),
    (96, "Fuel Level", "%"),
    (110, "Engine Coolant Temperature", "°C"),
    (247, "Engine Total Hours of Operation", "h"),
    (250, "Engine Total Fuel Used", "L"),
)


def raw_payload(c: Ctx, sg: Seg, plan: Plan, t: int, event: bool, lat: float, lon: float,
                site: Site, key_id: str) -> dict[str, Any]:
    """One RAW record of the machine in context ``c`` (draws noise from ``c.rng``)."""
    u = c.u
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
        p["heading"] = bearing(sg.lat0, sg.lon0, sg.lat1, sg.lon1) \
            if sg.st == TRANSPORT else c.rng.randrange(360)
    p["speed"] = round(c.speed, 1)
    p["km"] = round(cc[KM] + cc[TKM], 1)
    p["run1"] = float(round(cc[RUN]))
    p["run2"] = float(round(cc[WRK]))
    p["run3"] = 0.0
    p["run4"] = 0.0
    p["runOdo"] = float(round(cc[MOV]))
    if u.temp_sensors:
        p["temperature1"] = round(ambient(c) + (6.0 if on else 1.0) + 0.3 * c.z(), 1)
        if u.temp_sensors > 1:
            p["temperature2"] = round((82.0 + 6.0 * c.load) if on else ambient(c) + 2.0, 1)
    _io(p, c, sg)
    if u.kind == "diesel":
        _can(p, c, plan, t)
    return p


def _io(p: dict[str, Any], c: Ctx, sg: Seg) -> None:
    """Digital inputs/outputs, analogue inputs, change counters and power."""
    work = sg.st == WORK
    p["input1"] = c.on
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
    p["externalPower"] = batt_v(c)


def _can(p: dict[str, Any], c: Ctx, plan: Plan, t: int) -> None:
    """CAN variables (half the messages while on) and the CAN faults active at ``t``."""
    u, cc = c.u, c.c
    if c.on and c.rng.random() < 0.5:
        values = (rpm(c), round(100.0 * cc[FL] / u.m.spec.tank_l, 1),
                  round(84 + 6 * c.load + 1.5 * c.z(), 1),
                  round(u.eng0 + cc[RUN] / 3600.0, 2), round(cc[FT], 1))
        p["canVariables"] = [
            {"time": t, "variableId": vid, "name": name, "value": f"{v:g}", "uom": uom}
            for (vid, name, uom), v in zip(RAW_CAN_VARS, values, strict=True)]
    active = [(raised, f) for raised, cleared, f in plan.faults
              if raised <= t < cleared and f.spn]
    if active:
        p["canFaults"] = [
            {"time": raised, "spn": f.spn, "fmi": f.fmi, "occurrenceCount": 1,
             "name": f.name, "description": f.description} for raised, f in active]
