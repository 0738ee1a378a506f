"""Faults: the fault catalogues per machine kind, when faults are raised and cleared in a day,
and which messages report them (the raise with ``datetimeCleared`` null, later the clear)."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Final

from .model import ON, Plan, Seg, Unit

__all__ = ["DIESEL_FAULTS", "EMISSION_FAULTS", "LIFT_FAULTS", "Fault", "draw_faults",
           "fault_messages"]


@dataclass(frozen=True, slots=True)
class Fault:
    code: str  # CodeIdentifier: "SPN-FMI" for CAN, free text otherwise
    spn: int  # 0 when not a CAN fault
    fmi: int
    name: str
    description: str
    severity: str  # "0".."100"
    source: str  # CAN source address, or the reporting controller
    lamp: str  # which v2 lamp it lights: amber / red / mil / protect


def _can(spn: int, fmi: int, name: str, text: str, sev: int, sa: int, lamp: str) -> Fault:
    return Fault(f"{spn}-{fmi}", spn, fmi, name, f"{name} - {text}", str(sev), str(sa), lamp)


_BELOW = "Data valid but below normal operating range"
_ABOVE = "Data valid but above normal operating range"
DIESEL_FAULTS: Final = (
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
EMISSION_FAULTS: Final = (
    _can(1761, 17, "Aftertreatment 1 Diesel Exhaust Fluid Tank Volume",
         f"{_BELOW} - Least severe level", 35, 61, "mil"),
    _can(3364, 18, "Aftertreatment 1 Diesel Exhaust Fluid Tank 1 Quality",
         f"{_BELOW} - Moderately severe level", 60, 61, "mil"),
    _can(3719, 16, "Aftertreatment 1 Diesel Particulate Filter Soot Load Percent",
         f"{_ABOVE} - Moderately severe level", 55, 61, "mil"),
    _can(5246, 0, "Aftertreatment SCR Operator Inducement Severity",
         f"{_ABOVE} - Most severe level", 80, 61, "red"),
)
LIFT_FAULTS: Final = (
    Fault("Tilt alarm", 0, 0, "Tilt alarm",
           "Machine tilted beyond limit; lift and drive disabled", "70", "Platform controller",
           "red"),
    Fault("Platform overload", 0, 0, "Platform overload",
           "Load sensing: platform overloaded; lift disabled", "80", "Platform controller",
           "red"),
    Fault("Low battery cutout", 0, 0, "Low battery cutout",
           "Battery voltage low; lift function cut out", "50", "Ground controller", "amber"),
    Fault("Charger fault", 0, 0, "Charger fault",
           "Battery charger reported an internal fault", "40", "Charger", "amber"),
)



def draw_faults(u: Unit, rng: random.Random, segs: list[Seg],
                d1: int) -> list[tuple[int, int, Fault]]:
    """A day's faults (raised, cleared, fault): a Poisson count, raised while the engine runs."""
    on = [(sg.t0, sg.t1) for sg in segs if ON[sg.st]]
    total = sum(t1 - t0 for t0, t1 in on)
    if not on or total <= 0 or u.b.fault_rate <= 0:
        return []
    # Poisson count (Knuth): small rates, a handful of draws.
    n, p, limit = 0, rng.random(), math.exp(-u.b.fault_rate)
    while p > limit:
        n += 1
        p *= rng.random()
    out: list[tuple[int, int, Fault]] = []
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


def fault_messages(plan: Plan, times: list[tuple[int, int, int, bool]]
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

