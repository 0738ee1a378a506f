"""What the simulator derives once per machine: traits (utilisation, sensors, keys), counters
at the epoch, the insights it reports, and the payload parts that never change."""

from __future__ import annotations

import random
from typing import Any

from tu_analytics.sandbox.fleet import Machine

from .behaviour import ACCESS_TYPES, BEHAVIOUR, KIN, OPERATORS_PER_CUSTOMER, schedule
from .calendar import Calendar
from .faults import DIESEL_FAULTS, EMISSION_FAULTS, LIFT_FAULTS
from .geo import stable_uuid
from .insights import candidates, lamps
from .model import (
    CHARGER_EFF,
    CHG,
    DAY_MS,
    DEF,
    DIS,
    FI,
    FL,
    FT,
    IDL,
    KM,
    KWH,
    MOV,
    N_COUNTERS,
    RUN,
    SOC,
    TKM,
    WRK,
    State,
    Unit,
)
from .rand import day_rng, stable_key
from .sparse import SparseRecordWriter

__all__ = ["build_unit", "operators"]


def operators(seed: int, customer: str) -> list[tuple[str, str]]:
    """(operator id, key id) of a customer's operators, for access-control messages."""
    return [(stable_uuid(seed, customer, "operator", i), stable_uuid(seed, customer, "key", i))
            for i in range(OPERATORS_PER_CUSTOMER)]


def build_unit(m: Machine, seed: int, epoch_ms: int, cal: Calendar,
               writer: SparseRecordWriter) -> Unit:
    """The static unit of machine ``m`` under simulator ``seed`` (draws in a fixed order)."""
    u = Unit()
    u.rkey = stable_key(seed, m.machine_id)
    rng = day_rng(u.rkey, 0)
    u.m = m
    u.kind = m.kind
    u.b = KIN if m.kind == "kin" else BEHAVIOUR[m.type]
    u.tz = cal.zone(m.home_site.tz)
    _traits(u, m, rng)
    u.epoch_day = cal.local_day(epoch_ms, u.tz)
    u.schedule = schedule(m, u.rkey)
    u.init = _initial_state(u, m, rng, epoch_ms)
    u.cands = candidates(u, writer.index)
    u.lamps = lamps(u, writer.index)
    u.fault_pool = (LIFT_FAULTS if m.kind == "electric" else
                    DIESEL_FAULTS + (EMISSION_FAULTS if u.has_def else ()))
    _static_payloads(u, m, writer)
    return u


def _traits(u: Unit, m: Machine, rng: random.Random) -> None:
    spec = m.spec
    u.util = rng.uniform(0.65, 1.0)
    u.rich = m.oem in ("Caterpillar", "Komatsu", "Volvo CE")
    u.hyd = m.type in ("excavator", "wheel loader", "telehandler")
    u.has_def = spec.def_tank_l > 0
    u.access = m.type in ("excavator", "wheel loader", "telehandler") and rng.random() < 0.5
    u.access_type = rng.choice(ACCESS_TYPES)
    u.volts = spec.volts
    u.idle_rpm = rng.choice((750.0, 800.0, 900.0, 1000.0))
    u.drain = rng.uniform(14.0, 20.0)
    # Generators watch enclosure and coolant; some other units have a cab sensor.
    u.temp_sensors = 2 if m.type == "generator" else 1 if rng.random() < 0.3 else 0


def _initial_state(u: Unit, m: Machine, rng: random.Random, epoch_ms: int) -> State:
    """Counters at the epoch: hours since install at this machine's typical usage."""
    spec = m.spec
    years = max(0.0, (epoch_ms - m.install_ms) / (365.25 * DAY_MS))
    run_h = years * 1100.0 * u.util * rng.uniform(0.8, 1.2) if m.kind != "kin" else 0.0
    idle_share = rng.uniform(0.15, 0.3)
    u.h0 = m.hours_at_install
    u.eng0 = m.hours_at_install + round(rng.uniform(0.0, 40.0), 1)  # ECU vs telematics offset
    u.idle0 = m.hours_at_install * idle_share
    u.prod0 = m.hours_at_install - u.idle0
    u.move0 = u.prod0 * u.b.move_share
    c = [0.0] * N_COUNTERS
    c[RUN] = run_h * 3600.0
    c[IDL] = c[RUN] * idle_share
    c[WRK] = c[RUN] - c[IDL]
    c[MOV] = c[WRK] * u.b.move_share
    c[KM] = (m.hours_at_install * (1 - idle_share) + run_h) * u.b.move_share * u.b.work_speed
    c[TKM] = years * rng.uniform(200, 900)
    hours = m.hours_at_install + run_h
    if m.kind == "diesel":
        mean_lph = spec.idle_lph + (spec.max_lph - spec.idle_lph) * 0.5
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
        cycles = int(hours * 0.45)
        c[CHG] = cycles * spec.battery_kwh * 0.6 / CHARGER_EFF
        c[DIS] = cycles * spec.battery_kwh * 0.6
        u.co2_0 = m.hours_at_install * 0.45 * spec.battery_kwh * 0.6 / CHARGER_EFF * 0.2
    starts = int(hours * 1.6) * 2
    return State(site=m.sites.index(m.home_site), c=c, changes1=starts,
                 changes2=int(starts * 1.8), cycles=cycles, plugged=False,
                 spot_day=u.epoch_day - 1)


def _static_payloads(u: Unit, m: Machine, writer: SparseRecordWriter) -> None:
    header = {"UnitInstallDateTime": m.install_ms, "OEMName": m.oem, "Model": m.model,
              "EquipmentID": m.equipment_id, "SerialNumber": m.serial_number, "PIN": m.pin}
    meta: dict[str, Any] = {"TelematicSerialNumber": m.telematic_serial,
                            "MachineId": m.machine_id}
    if m.unit_id is not None:
        meta["UnitId"] = m.unit_id
    meta["ExternalReferenceNumber"] = m.external_ref
    u.hdr = writer.preencode("EquipmentHeader", header)
    u.meta = writer.preencode("Metadata", meta)
    u.key = m.machine_id.encode()
    u.raw_static = {"unitId": m.unit_id, "serialNumber": m.telematic_serial,
                    "machineId": m.machine_id} if m.unit_id is not None else {
                    "serialNumber": m.telematic_serial, "machineId": m.machine_id}
