"""Machine Insights content: what each insight reads off the machine at a message (getters),
which insights each kind of machine reports and how often, CAN messages and key usage.

A getter takes the message context (``Ctx``) and returns the value, or None to leave the
insight out of that message.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, Final

from .model import (
    CHARGE_PCT_H,
    CHARGING,
    CHG,
    CO2_PER_KWH,
    CO2_PER_L,
    DEF,
    DIS,
    FI,
    FL,
    FT,
    IDL,
    IDLE,
    KM,
    KWH,
    MOV,
    PLUGGED,
    RUN,
    SOC,
    WORK,
    WRK,
    Ctx,
    Unit,
)

__all__ = ["GETTERS", "SHORT_UNITS", "V2_LAMPS", "ambient", "batt_v", "can_messages",
           "candidates", "catalogue_units", "key_use", "lamps", "rpm"]

# Stream unit strings are short forms (S1: "km", "volt"); words in the catalogue.
SHORT_UNITS: Final[Mapping[str, str]] = {
    "kilometres": "km", "kilometres per hour": "km/h", "litres": "l", "litres per hour": "l/h",
    "percent": "%", "degrees Celsius": "°C", "kilopascal": "kPa", "revolutions per minute": "rpm",
    "kilogram": "kg", "kilowatt-hours": "kWh", "volt": "volt", "ampere": "A", "watt": "W",
    "hertz": "Hz", "seconds": "s", "metres": "m", "g-force": "g", "degrees": "deg",
    "volt-ampere": "VA", "volt-ampere reactive": "var", "count": "count",
}


def catalogue_units() -> dict[str, str | None]:
    text = resources.files("tu_analytics.formats").joinpath("machine_insights.csv").read_text(
        encoding="utf-8")
    out: dict[str, str | None] = {}
    for row in csv.DictReader(text.splitlines()):
        unit = row["unit"]
        out[row["name"]] = SHORT_UNITS.get(unit, unit) if row["value_type"] in (
            "double", "count") and unit and unit != "not applicable" else None
    return out



def _minutes(h: float) -> float:
    # Trackunit's hour counters have one-minute resolution (whole minutes as hours).
    return math.floor(h * 60.0) / 60.0


def _fuel_rate(c: Ctx) -> float:
    s = c.u.m.spec
    if c.st == WORK:
        return s.idle_lph + (s.max_lph - s.idle_lph) * c.load
    return s.idle_lph if c.st == IDLE else 0.0


def ambient(c: Ctx) -> float:
    lat = c.u.m.home_site.lat
    season = -math.cos(2 * math.pi * (c.doy - 20) / 365.0)
    mean = 16.0 - 0.25 * (lat - 30.0) + (9.0 - 0.1 * (lat - 30.0)) * season
    return mean + 4.0 * math.sin(2 * math.pi * (c.local_h - 9.0) / 24.0)


def batt_v(c: Ctx) -> float:
    u = c.u
    if u.kind == "electric":
        if c.st == CHARGING:
            v = 27.6
        else:
            v = 23.0 + 2.6 * c.c[SOC] / 100.0 - (0.8 * c.load if c.st == WORK else 0.0)
        return round(v + 0.04 * c.z(), 2)
    return round(u.volts * (1.155 if c.on else 1.05) + 0.04 * c.z(), 2)


def rpm(c: Ctx) -> float:
    if c.st == WORK:
        return float(round(1350 + 550 * c.load + 35 * c.z()))
    return float(round(c.u.idle_rpm + 10 * c.z()))


def _gps_speed(c: Ctx) -> float:
    return round(c.speed, 1)


def _soot(c: Ctx) -> float:
    frac = ((c.u.eng0 + c.c[RUN] / 3600.0) / 40.0) % 1.0
    return round(5.0 + 80.0 * frac, 1)


def _regen_state(c: Ctx) -> str:
    frac = ((c.u.eng0 + c.c[RUN] / 3600.0) / 40.0) % 1.0
    if frac > 0.97:
        return "REGENERATION_NEEDED"
    return "ACTIVE" if frac < 0.01 else "NOT_ACTIVE"


def _ac_power_w(c: Ctx) -> float:
    kw = c.u.m.spec.rated_kw * (c.load if c.st == WORK else 0.02)
    return round(kw * 1000.0 * (1 + 0.01 * c.z()), 0)


def _us(c: Ctx) -> bool:
    return c.u.m.home_site.country == "United States"


def _ac_volts(c: Ctx) -> float:
    return round((480.0 if _us(c) else 400.0) + 1.5 * c.z(), 1)


def _ac_current(c: Ctx) -> float:
    v = 480.0 if _us(c) else 400.0
    kw = c.u.m.spec.rated_kw * (c.load if c.st == WORK else 0.02)
    return round(kw * 1000.0 / (math.sqrt(3) * v * 0.9) * (1 + 0.01 * c.z()), 1)


def _batt_current(c: Ctx) -> float:
    st = c.st
    if st == WORK:
        return round(-(40 + 110 * c.load) + 4 * c.z(), 1)
    if st == IDLE:
        return round(-8 + 1 * c.z(), 1)
    if st == CHARGING:
        return round(30 + 1.5 * c.z(), 1)
    return 0.4 if st == PLUGGED else -0.2


def _remaining_run_s(c: Ctx) -> float | None:
    if not c.on:
        return None
    drain = c.u.drain * (0.6 + 0.6 * c.load) if c.st == WORK else 1.5
    return round(c.c[SOC] / drain * 3600.0, 0)


def _remaining_charge_s(c: Ctx) -> float | None:
    if c.st == CHARGING:
        return round((100.0 - c.c[SOC]) / CHARGE_PCT_H * 3600.0, 0)
    return 0.0 if c.st == PLUGGED else None


def _wheel_speed(c: Ctx) -> float:
    return round(c.speed, 1) if c.st == WORK else 0.0


def _g(getters: dict[str, Callable[[Ctx], Any]]) -> dict[str, Callable[[Ctx], Any]]:
    return getters


GETTERS: Final = _g({
    "CumulativeOperatingHours": lambda c: _minutes(c.u.h0 + c.c[RUN] / 3600.0),
    "CumulativeEngineHours": lambda c: _minutes(c.u.eng0 + c.c[RUN] / 3600.0),
    "CumulativeIdleHours": lambda c: _minutes(c.u.idle0 + c.c[IDL] / 3600.0),
    "CumulativeProductiveHours": lambda c: _minutes(c.u.prod0 + c.c[WRK] / 3600.0),
    "CumulativeMovingHours": lambda c: _minutes(c.u.move0 + c.c[MOV] / 3600.0),
    "EngineTotalFuelUsed": lambda c: round(c.c[FT], 1),
    "EngineTotalIdleFuelUsed": lambda c: round(c.c[FI], 1),
    "CumulativeCO2Emissions": lambda c: round(
        c.c[FT] * CO2_PER_L if c.u.kind == "diesel" else c.u.co2_0 + c.c[CHG] * CO2_PER_KWH, 1),
    "FuelLevel": lambda c: round(min(100.0, max(0.0, 100.0 * c.c[FL] / c.u.m.spec.tank_l)), 1),
    "FuelTankCapacity": lambda c: float(c.u.m.spec.tank_l),
    "EngineFuelRate": lambda c: round(_fuel_rate(c) * (1 + 0.03 * c.z()), 2),
    "EngineSpeed": rpm,
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
    "EngineIntakeManifoldTemperature": lambda c: round(ambient(c) + 18 + 2 * c.z(), 1),
    "BarometricPressure": lambda c: round(
        101.3 - c.u.m.home_site.altitude / 120.0 + 0.3 * c.z(), 1),
    "EngineStatus": lambda c: c.on,
    "OperationStatus": lambda c: c.st == WORK,
    "BatteryPotential": batt_v,
    "AmbientAirTemperature": lambda c: round(ambient(c) + 0.5 * c.z(), 1),
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
        ambient(c) + (9 if c.st == CHARGING else 4 if c.on else 1) + 0.5 * c.z(), 1),
    "PlatformHeight": lambda c: round(c.plat, 2),
    "PlatformElevated": lambda c: c.plat > 0.2,
    "PlatformStowed": lambda c: c.plat == 0.0,
})

# (insight, chance in a message while the engine/key is on, chance otherwise)
DIESEL_CORE: Final = (
    ("CumulativeOperatingHours", 0.55, 0.7), ("CumulativeIdleHours", 0.45, 0.5),
    ("CumulativeEngineHours", 0.25, 0.3), ("EngineTotalFuelUsed", 0.45, 0.5),
    ("EngineTotalIdleFuelUsed", 0.3, 0.35), ("CumulativeCO2Emissions", 0.15, 0.2),
    ("FuelLevel", 0.65, 0.6), ("FuelTankCapacity", 0.02, 0.02), ("EngineFuelRate", 0.75, 0.0),
    ("EngineSpeed", 0.7, 0.0), ("EngineCoolantTemperature", 0.5, 0.0),
    ("EngineOilPressure", 0.3, 0.0), ("EnginePercentLoadAtCurrentSpeed", 0.45, 0.0),
    ("EngineStatus", 0.5, 0.3), ("OperationStatus", 0.35, 0.3), ("BatteryPotential", 0.4, 0.6),
    ("AmbientAirTemperature", 0.15, 0.1), ("Speed", 0.3, 0.15),
)
LIGHT_TOWER: Final = (
    ("CumulativeOperatingHours", 0.6, 0.7), ("EngineTotalFuelUsed", 0.3, 0.3),
    ("FuelLevel", 0.7, 0.6), ("EngineFuelRate", 0.6, 0.0), ("EngineStatus", 0.5, 0.3),
    ("OperationStatus", 0.4, 0.3), ("BatteryPotential", 0.5, 0.6),
)
RICH: Final = (
    ("CumulativeProductiveHours", 0.25, 0.3), ("EngineOilTemperature", 0.25, 0.0),
    ("ActualEnginePercentTorque", 0.2, 0.0), ("EngineIntakeManifoldTemperature", 0.1, 0.0),
    ("BarometricPressure", 0.05, 0.0),
)
WITH_DEF: Final = (
    ("AfterTreatmentDieselExhaustFluidTankLevel", 0.45, 0.3),
    ("AfterTreatmentDieselParticulateFilterSootLoadPercent", 0.15, 0.0),
    ("AfterTreatmentDieselParticulateFilterActiveRegenerationState", 0.05, 0.0),
)
HYDRAULIC: Final = (("HydraulicTemperature", 0.3, 0.0), ("HydraulicOilLevel", 0.05, 0.05))
WHEELED: Final = (
    ("CumulativeMovingHours", 0.25, 0.3), ("TotalVehicleDistance", 0.45, 0.4),
    ("WheelBasedVehicleSpeed", 0.3, 0.0), ("TransmissionOilTemperature", 0.15, 0.0),
)
GENERATOR: Final = (
    ("GeneratorTotalKwHoursExport", 0.55, 0.5), ("AcTotalActivePower", 0.55, 0.0),
    ("AcAverageFrequency", 0.35, 0.0), ("AcAveragePhaseToPhaseRmsVoltage", 0.35, 0.0),
    ("AcAverageRmsCurrent", 0.35, 0.0), ("AcTotalRelativeLoadPercentage", 0.35, 0.0),
    ("AcTotalPowerFactor", 0.1, 0.0),
)
LIFT: Final = (
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
V2_LAMPS: Final = ("AmberWarningLamp", "MalfunctionIndicatorLamp", "ProtectLamp", "RedStopLamp")
LAMP_KIND: Final = {"AmberWarningLamp": "amber", "MalfunctionIndicatorLamp": "mil",
                     "ProtectLamp": "protect", "RedStopLamp": "red"}



def candidates(u: Unit, index: Mapping[str, int]) -> list[tuple[int, float, float,
                                                               Callable[[Ctx], Any]]]:
    """(field index, chance when on, chance when off, getter) of the insights ``u`` reports,
    in schema order."""
    m = u.m
    spec_list: list[tuple[str, float, float]] = []
    if m.kind == "diesel":
        if m.type == "light tower":
            spec_list += LIGHT_TOWER
        else:
            spec_list += DIESEL_CORE
            spec_list += RICH if u.rich else ()
            spec_list += WITH_DEF if u.has_def else ()
            spec_list += HYDRAULIC if u.hyd else ()
            spec_list += WHEELED if m.wheeled else ()
            spec_list += GENERATOR if m.type == "generator" else ()
    elif m.kind == "electric":
        spec_list += LIFT
    return sorted((index[n], p_on, p_off, GETTERS[n]) for n, p_on, p_off in spec_list)


def lamps(u: Unit, index: Mapping[str, int]) -> list[tuple[int, str]]:
    """(field index, lamp colour) of the v2 warning lamps, for diesel machines."""
    return [(index[n], LAMP_KIND[n]) for n in V2_LAMPS] if u.kind == "diesel" else []


def key_use(op: str, key: str, u: Unit, operation: str, ok: bool, t: int) -> dict[str, Any]:
    return {"OperatorId": op, "KeyId": key, "Operation": operation,
            "AccessType": u.access_type, "Success": ok, "datetime": t}


_CAN: Final = "com.trackunit.streaming."  # CanMessageValues branches by full name


def can_messages(c: Ctx, t: int, version: int) -> list[dict[str, Any]]:
    """A diesel machine's raw CAN captures: engine speed (min/max), fuel level (value), fuel
    used (accumulated); from schema v2, where ``ParsedValue`` may be a string, the gear too.
    ``CanMessageValues`` is a tagged union value: (branch name, record)."""
    v_rpm = rpm(c)
    raw_rpm = int(v_rpm / 0.125)
    fuel = round(100.0 * c.c[FL] / c.u.m.spec.tank_l, 1)
    used = round(_fuel_rate(c) * 120.0 / 3600.0, 3)
    out = [
        {"datetime": t, "UnitOfMeasurement": "rpm", "VariableId": 190,
         "VariableName": "Engine Speed", "ParsedValue": v_rpm,
         "CanMessageValues": (_CAN + "CanMessageMinMax", {"MinValue": v_rpm - 60.0,
                                                          "MaxValue": v_rpm + 110.0}),
         "CanMessageData": {"CanId": 0x0CF00400, "SourceAddress": 0,
                            "BinaryValue": bytes((0xF0, 0x7D, 0x7D, raw_rpm & 0xFF,
                                                  (raw_rpm >> 8) & 0xFF, 0, 0xF0, 0x7D)),
                            "Counter": 1200, "CapturingPeriod": 120, "CanType": "Can A"}},
        {"datetime": t, "UnitOfMeasurement": "%", "VariableId": 96,
         "VariableName": "Fuel Level", "ParsedValue": fuel,
         "CanMessageValues": (_CAN + "CanMessageValue", {"value": fuel}),
         "CanMessageData": {"CanId": 0x18FEFC17, "SourceAddress": 23, "Counter": 12,
                            "CapturingPeriod": 120, "CanType": "Can A"}},
        {"datetime": t, "UnitOfMeasurement": "L", "VariableId": 183,
         "VariableName": "Engine Fuel Used In Period", "ParsedValue": used,
         "CanMessageValues": (_CAN + "CanMessageAccumulated", {"value": used}),
         "CanMessageData": {"CanId": 0x18FEF200, "SourceAddress": 0, "Counter": 1200,
                            "CapturingPeriod": 120, "CanType": "Can A"}},
    ]
    if version >= 2:  # a state-type variable: ParsedValue as a string
        gear = "N" if c.speed <= 0.0 else str(min(4, 1 + int(c.speed / 8.0)))
        out.append({"datetime": t, "UnitOfMeasurement": "", "VariableId": 523,
                    "VariableName": "Transmission Current Gear", "ParsedValue": gear,
                    "CanMessageData": {"CanId": 0x18F00503, "SourceAddress": 3, "Counter": 60,
                                       "CapturingPeriod": 120, "CanType": "Can B"}})
    return out
