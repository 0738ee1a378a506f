"""The sandbox's static fleet: customers, their sites, and the machines they own.

Everything here is a pure function of the seed: ``build_fleet(7)`` gives the same machines, ids
and serial numbers in every process. Behaviour over time (shifts, fuel, faults) lives in
:mod:`tu_analytics.sandbox.simulator`; this module only says *what* exists and where.

Sites are real places (street addresses and coordinates of real construction/port districts,
rounded); each has an IANA time zone because shifts are simulated in local time, and its
working hours: ``"day"`` (weekday shifts) or ``"24/7"`` (a mine, a tunnel: crews round the clock,
every day). With 24/7 sites in Australia beside the European and US ones, some machines are
working at any UTC hour of any weekday. (The module is long only because of its data tables:
sites and models, one field a line.) A machine
relocates only between sites of its customer that share its home site's time zone, so that a
machine's "working day" is always one local calendar day.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

__all__ = [
    "CUSTOMERS",
    "MACHINE_TYPES",
    "SITES",
    "CustomerSpec",
    "Fleet",
    "Machine",
    "MachineType",
    "ModelSpec",
    "Site",
    "build_fleet",
]

Kind = Literal["diesel", "electric", "kin"]
SiteHours = Literal["day", "24/7"]


@dataclass(frozen=True, slots=True)
class Site:
    key: str
    country: str
    zipcode: str
    city: str
    address: str
    lat: float
    lon: float
    altitude: float  # metres above sea level
    tz: str  # IANA zone; shifts are simulated in this local time
    radius_m: float = 250.0  # machines work within this distance of (lat, lon)
    hours: SiteHours = "day"  # "24/7": crews work round the clock, every day


# Real addresses in construction/harbour districts; coordinates rounded to ~10 m.
SITES: Final[Mapping[str, Site]] = {
    s.key: s
    for s in (
        Site(
            "aalborg",
            "Denmark",
            "9000",
            "Aalborg",
            "Gasværksvej 24",
            57.0481,
            9.9307,
            5,
            "Europe/Copenhagen",
        ),
        Site(
            "aarhus",
            "Denmark",
            "8000",
            "Aarhus C",
            "Mindet 4",
            56.1602,
            10.2237,
            3,
            "Europe/Copenhagen",
        ),
        Site(
            "copenhagen",
            "Denmark",
            "2150",
            "Nordhavn",
            "Sundkrogsgade 21",
            55.7113,
            12.5955,
            2,
            "Europe/Copenhagen",
        ),
        Site(
            "odense",
            "Denmark",
            "5000",
            "Odense C",
            "Havnegade 100",
            55.4135,
            10.3880,
            4,
            "Europe/Copenhagen",
        ),
        Site(
            "hamburg",
            "Germany",
            "20457",
            "Hamburg",
            "Am Sandtorkai 50",
            53.5434,
            9.9880,
            6,
            "Europe/Berlin",
        ),
        Site(
            "berlin",
            "Germany",
            "10557",
            "Berlin",
            "Heidestraße 50",
            52.5330,
            13.3680,
            35,
            "Europe/Berlin",
        ),
        Site(
            "munich",
            "Germany",
            "80335",
            "München",
            "Arnulfstraße 60",
            48.1430,
            11.5470,
            519,
            "Europe/Berlin",
        ),
        Site(
            "london",
            "United Kingdom",
            "SW8 5NQ",
            "London",
            "1 Nine Elms Lane",
            51.4834,
            -0.1300,
            8,
            "Europe/London",
        ),
        Site(
            "birmingham",
            "United Kingdom",
            "B4 7XG",
            "Birmingham",
            "Curzon Street",
            52.4829,
            -1.8864,
            120,
            "Europe/London",
        ),
        Site(
            "manchester",
            "United Kingdom",
            "M16 0BW",
            "Manchester",
            "Pomona Strand",
            53.4676,
            -2.2769,
            30,
            "Europe/London",
        ),
        Site(
            "chicago",
            "United States",
            "60607",
            "Chicago",
            "1200 S Canal St",
            41.8667,
            -87.6393,
            181,
            "America/Chicago",
        ),
        Site(
            "dallas",
            "United States",
            "75219",
            "Dallas",
            "2500 Victory Ave",
            32.7877,
            -96.8103,
            140,
            "America/Chicago",
        ),
        Site(
            "houston",
            "United States",
            "77010",
            "Houston",
            "1001 Avenida de las Americas",
            29.7522,
            -95.3590,
            15,
            "America/Chicago",
        ),
        Site(
            "denver",
            "United States",
            "80202",
            "Denver",
            "1701 Wynkoop St",
            39.7531,
            -104.9999,
            1600,
            "America/Denver",
        ),
        # Round-the-clock sites: an iron-ore mine in the Pilbara and a motorway tunnel dig.
        Site(
            "newman",
            "Australia",
            "6753",
            "Newman",
            "Mount Whaleback Mine",
            -23.3640,
            119.6720,
            560,
            "Australia/Perth",
            radius_m=900.0,
            hours="24/7",
        ),
        Site(
            "rozelle",
            "Australia",
            "2039",
            "Rozelle",
            "Rozelle Interchange, City West Link",
            -33.8640,
            151.1710,
            12,
            "Australia/Sydney",
            hours="24/7",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    oem: str
    model: str
    wmi: str  # 3-letter manufacturer code used as the start of the PIN
    tank_l: float = 0.0  # fuel tank; 0 for electric / Kin
    idle_lph: float = 0.0  # fuel burn at idle
    max_lph: float = 0.0  # fuel burn at 100 % load
    def_tank_l: float = 0.0  # 0 = no SCR / DEF system
    rated_kw: float = 0.0  # generators: electrical output; others: engine power
    volts: float = 24.0  # electrical system (lifts: traction pack)
    battery_kwh: float = 0.0  # electric lifts: usable pack energy
    platform_m: float = 0.0  # lifts/telehandlers: max platform/boom height
    max_speed_kmh: float = 0.0  # travel speed when driving on site


@dataclass(frozen=True, slots=True)
class MachineType:
    key: str
    prefix: str  # EquipmentID prefix, e.g. "EX" -> "EX-014"
    kind: Kind
    models: tuple[ModelSpec, ...]
    wheeled: bool = False  # has a CAN odometer (TotalVehicleDistance)


_M = ModelSpec
MACHINE_TYPES: Final[Mapping[str, MachineType]] = {
    t.key: t
    for t in (
        MachineType(
            "excavator",
            "EX",
            "diesel",
            (
                _M("Caterpillar", "320", "CAT", 345, 3.5, 24, 41, 129, max_speed_kmh=5.5),
                _M("Caterpillar", "308 CR", "CAT", 132, 1.6, 9, 0, 52, 12, max_speed_kmh=5.1),
                _M("Komatsu", "PC210LC-11", "KMT", 400, 3.2, 23, 46, 123, max_speed_kmh=5.5),
                _M("Komatsu", "PC138US-11", "KMT", 200, 2.2, 14, 20, 72, max_speed_kmh=5.5),
                _M("Volvo CE", "EC220E", "VCE", 320, 3.4, 22, 40, 129, max_speed_kmh=5.3),
                _M("Volvo CE", "ECR88D", "VCE", 140, 1.5, 9, 0, 55, max_speed_kmh=4.9),
                _M("JCB", "220X LC", "JCB", 370, 3.0, 21, 35, 129, max_speed_kmh=5.5),
                _M("Doosan", "DX225LC-7", "DHI", 400, 3.3, 22, 47, 124, max_speed_kmh=5.5),
            ),
        ),
        MachineType(
            "wheel loader",
            "WL",
            "diesel",
            (
                _M("Caterpillar", "950 GC", "CAT", 322, 4.0, 30, 23, 168, max_speed_kmh=38),
                _M("Komatsu", "WA380-8", "KMT", 300, 3.6, 26, 38, 144, max_speed_kmh=36),
                _M("Volvo CE", "L90H", "VCE", 214, 3.2, 22, 37, 128, max_speed_kmh=37),
                _M("Volvo CE", "L120H", "VCE", 270, 3.8, 28, 37, 164, max_speed_kmh=38),
                _M("JCB", "457 ZX", "JCB", 340, 4.0, 29, 40, 173, max_speed_kmh=40),
            ),
            wheeled=True,
        ),
        MachineType(
            "telehandler",
            "TH",
            "diesel",
            (
                _M(
                    "JCB",
                    "540-140 Hi Viz",
                    "JCB",
                    150,
                    1.8,
                    12,
                    20,
                    81,
                    12,
                    platform_m=14,
                    max_speed_kmh=32,
                ),
                _M(
                    "JCB",
                    "535-95",
                    "JCB",
                    150,
                    1.7,
                    11,
                    20,
                    81,
                    12,
                    platform_m=9.5,
                    max_speed_kmh=32,
                ),
                _M(
                    "Genie",
                    "GTH-5519",
                    "GEN",
                    132,
                    1.5,
                    10,
                    0,
                    55,
                    12,
                    platform_m=5.8,
                    max_speed_kmh=29,
                ),
                _M(
                    "JLG",
                    "1055",
                    "JLG",
                    159,
                    1.8,
                    12,
                    19,
                    74,
                    12,
                    platform_m=13.2,
                    max_speed_kmh=29,
                ),
                _M(
                    "Caterpillar",
                    "TH414D",
                    "CAT",
                    150,
                    1.7,
                    11,
                    19,
                    74,
                    12,
                    platform_m=13.5,
                    max_speed_kmh=30,
                ),
            ),
            wheeled=True,
        ),
        MachineType(
            "scissor lift",
            "SL",
            "electric",
            (
                _M(
                    "Genie",
                    "GS-1930",
                    "GEN",
                    volts=24,
                    battery_kwh=5.4,
                    platform_m=5.8,
                    max_speed_kmh=3.5,
                ),
                _M(
                    "Genie",
                    "GS-3246",
                    "GEN",
                    volts=24,
                    battery_kwh=5.4,
                    platform_m=9.8,
                    max_speed_kmh=3.5,
                ),
                _M(
                    "JLG",
                    "1930ES",
                    "JLG",
                    volts=24,
                    battery_kwh=5.0,
                    platform_m=5.8,
                    max_speed_kmh=4.0,
                ),
                _M(
                    "JLG",
                    "3246ES",
                    "JLG",
                    volts=24,
                    battery_kwh=7.5,
                    platform_m=9.8,
                    max_speed_kmh=3.2,
                ),
                _M(
                    "Skyjack",
                    "SJIII 3219",
                    "SKY",
                    volts=24,
                    battery_kwh=5.4,
                    platform_m=5.8,
                    max_speed_kmh=3.2,
                ),
            ),
        ),
        MachineType(
            "generator",
            "GEN",
            "diesel",
            (
                _M("Atlas Copco", "QAS 60", "ATC", 220, 1.8, 14, 0, 48, 12),
                _M("Atlas Copco", "QAS 150", "ATC", 430, 3.5, 33, 0, 120, 24),
                _M("Generac", "MDG75DF4", "GNR", 416, 2.4, 19, 0, 60, 12),
                _M("Caterpillar", "XQ60", "CAT", 300, 2.0, 15, 0, 48, 12),
                _M("Doosan", "G70", "DPP", 250, 2.0, 16, 0, 56, 12),
            ),
        ),
        MachineType(
            "compressor",
            "CMP",
            "diesel",
            (
                _M("Atlas Copco", "XAS 88", "ATC", 90, 1.5, 8, 0, 37, 12),
                _M("Atlas Copco", "XATS 138", "ATC", 135, 2.2, 13, 0, 55, 12),
                _M("Doosan", "P185WDO", "DPP", 95, 1.6, 8.5, 0, 36, 12),
                _M("Sullair", "185", "SUL", 114, 1.7, 9, 0, 36, 12),
            ),
        ),
        MachineType(
            "light tower",
            "LT",
            "diesel",
            (
                _M("Generac", "MLT6SMD", "GNR", 114, 0.5, 1.4, 0, 6, 12),
                _M("Atlas Copco", "HiLight V5+", "ATC", 120, 0.5, 1.2, 0, 5, 12),
                _M("Doosan", "LSC", "DPP", 114, 0.5, 1.3, 0, 6, 12),
            ),
        ),
        MachineType(
            "plate compactor",
            "PC",
            "kin",
            (
                _M("Wacker Neuson", "BPU 3050A", "WNC"),
                _M("Bomag", "BPR 35/60 D", "BOM"),
                _M("Ammann", "APR 3020", "AMN"),
            ),
        ),
        MachineType(
            "trench rammer",
            "TR",
            "kin",
            (
                _M("Wacker Neuson", "BS60-4As", "WNC"),
                _M("Ammann", "ACR 60", "AMN"),
            ),
        ),
        MachineType(
            "submersible pump",
            "PMP",
            "kin",
            (
                _M("Atlas Copco", "WEDA D30N", "ATC"),
                _M("Tsurumi", "KTV2-50", "TSU"),
            ),
        ),
        MachineType(
            "cut-off saw",
            "SAW",
            "kin",
            (
                _M("Husqvarna", "K 770", "HUS"),
                _M("Stihl", "TS 420", "STI"),
            ),
        ),
    )
}

# Share of a customer's machines per type when a CustomerSpec gives none.
DEFAULT_TYPE_MIX: Final[Mapping[str, float]] = {
    "excavator": 0.17,
    "wheel loader": 0.10,
    "telehandler": 0.12,
    "scissor lift": 0.18,
    "generator": 0.09,
    "compressor": 0.07,
    "light tower": 0.07,
    "plate compactor": 0.06,
    "trench rammer": 0.05,
    "submersible pump": 0.05,
    "cut-off saw": 0.04,
}


@dataclass(frozen=True, slots=True)
class CustomerSpec:
    name: str
    machines: int
    sites: tuple[str, ...]  # keys of SITES
    type_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TYPE_MIX))


CUSTOMERS: Final[tuple[CustomerSpec, ...]] = (
    CustomerSpec(
        "acme-rentals", 36, ("aalborg", "aarhus", "copenhagen", "odense", "hamburg", "berlin")
    ),
    CustomerSpec(
        "northwind-build", 28, ("london", "birmingham", "manchester", "chicago", "dallas")
    ),
    CustomerSpec(
        "southern-cross-mining",
        12,
        ("newman", "rozelle"),
        {
            "excavator": 0.25,
            "wheel loader": 0.25,
            "generator": 0.15,
            "light tower": 0.15,
            "compressor": 0.1,
            "telehandler": 0.1,
        },
    ),
)


@dataclass(frozen=True, slots=True)
class Machine:
    index: int  # position in Fleet.machines; stable for a given seed and customer list
    machine_id: str  # Trackunit MachineId (uuid5, deterministic); for Kin: the asset id
    unit_id: int | None  # classic UnitId; None for Kin tags (no classic unit)
    serial_number: str  # machine serial; equals the PIN (as the published format says)
    pin: str
    telematic_serial: str  # Trackunit device / Kin tag serial
    customer: str
    type: str
    kind: Kind
    oem: str
    model: str
    spec: ModelSpec
    equipment_id: str  # the customer's own name for it, e.g. "EX-014"
    external_ref: str  # the customer's asset register number
    home_site: Site
    sites: tuple[Site, ...]  # where it can be relocated to (same time zone as home)
    install_ms: int  # telematics unit fitted (epoch ms)
    hours_at_install: float  # engine hour meter when the unit was fitted
    wheeled: bool

    @property
    def kin(self) -> bool:
        return self.kind == "kin"


@dataclass(frozen=True, slots=True)
class Fleet:
    seed: int
    customers: tuple[str, ...]
    machines: tuple[Machine, ...]

    def of(self, customer: str) -> tuple[Machine, ...]:
        return tuple(m for m in self.machines if m.customer == customer)

    def counts(self) -> dict[str, dict[str, int]]:
        """Machines per customer and type (for reports and docs)."""
        out: dict[str, dict[str, int]] = {}
        for m in self.machines:
            per = out.setdefault(m.customer, {})
            per[m.type] = per.get(m.type, 0) + 1
        return out


_NAMESPACE: Final = uuid.UUID("5a1d0b6e-7c3f-4d59-9f0e-3b8f2a6c1e47")
# Units were fitted between 2021 and late 2024, i.e. before the simulator's default epoch.
_INSTALL_FROM: Final = datetime(2021, 1, 1, tzinfo=UTC).timestamp()
_INSTALL_SPAN: Final = 3.8 * 365 * 86400
_PIN_CHARS: Final = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # ISO 10261 avoids I, O, Q


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    # Not for security: a reproducible stream per (seed, customer, machine).
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311


def _apportion(total: int, mix: Mapping[str, float]) -> list[tuple[str, int]]:
    """Largest-remainder split of ``total`` by the weights in ``mix`` (deterministic)."""
    weights = {k: w for k, w in mix.items() if w > 0}
    s = sum(weights.values())
    if total <= 0 or s <= 0:
        return []
    exact = {k: total * w / s for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    rest = total - sum(counts.values())
    for k in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[:rest]:
        counts[k] += 1
    return [(k, counts[k]) for k in weights if counts[k]]


def _pin(rng: random.Random, spec: ModelSpec) -> str:
    """17-character ISO 10261-style PIN: manufacturer, model code, check char, serial."""
    code = "".join(c for c in spec.model.upper() if c.isalnum())
    code = (code.replace("I", "1").replace("O", "0").replace("Q", "0") + "000000")[:6]
    check = rng.choice(_PIN_CHARS)
    serial = "".join(rng.choice("0123456789") for _ in range(7))
    return f"{spec.wmi}{code}{check}{serial}"


def _machine(rng: random.Random, seed: int, cust: CustomerSpec, mtype: MachineType, n: int,
             sites: list[Site], site_weights: list[float], index: int) -> Machine:
    """The ``n``-th machine of type ``mtype`` of a customer (draws from ``rng`` in order)."""
    equipment_id = f"{mtype.prefix}-{n:03d}"
    spec = rng.choice(mtype.models)
    # Bias toward the first sites: a customer's main yard has most machines.
    home = rng.choices(sites, weights=site_weights)[0]
    pool = tuple(s for s in sites if s.tz == home.tz)
    pin = _pin(rng, spec)
    kin = mtype.kind == "kin"
    install_s = _INSTALL_FROM + rng.uniform(0.0, _INSTALL_SPAN)
    return Machine(
        index=index,
        machine_id=str(uuid.uuid5(_NAMESPACE, f"{seed}/{cust.name}/{equipment_id}")),
        unit_id=None if kin else rng.randrange(3_000_000, 3_999_999),
        serial_number=pin,
        pin=pin,
        telematic_serial=(
            f"K{rng.randrange(10_000_000, 99_999_999)}"
            if kin
            else str(rng.randrange(1_100_000, 2_999_999))
        ),
        customer=cust.name,
        type=mtype.key,
        kind=mtype.kind,
        oem=spec.oem,
        model=spec.model,
        spec=spec,
        equipment_id=equipment_id,
        external_ref=f"{cust.name.split('-')[0][:4].upper()}-{rng.randrange(10**5):05d}",
        home_site=home,
        sites=pool,
        install_ms=int(install_s) * 1000,
        hours_at_install=0.0 if kin else round(rng.uniform(0, 4500), 1),
        wheeled=mtype.wheeled,
    )


def build_fleet(seed: int = 7, customers: Sequence[CustomerSpec] | None = None) -> Fleet:
    """The fleet for ``seed``: ``customers`` defaults to :data:`CUSTOMERS` (76 machines)."""
    specs = tuple(CUSTOMERS if customers is None else customers)
    if not specs:
        raise ValueError("a fleet needs at least one customer")
    if len({c.name for c in specs}) != len(specs):
        raise ValueError("customer names must be unique")
    machines: list[Machine] = []
    for cust in specs:
        unknown_sites = [s for s in cust.sites if s not in SITES]
        if unknown_sites or not cust.sites:
            raise ValueError(f"{cust.name}: unknown or no sites {unknown_sites}")
        unknown_types = [t for t in cust.type_mix if t not in MACHINE_TYPES]
        if unknown_types:
            raise ValueError(f"{cust.name}: unknown machine types {unknown_types}")
        sites = [SITES[s] for s in cust.sites]
        site_weights = [1 / (1 + 0.35 * i) for i in range(len(sites))]
        counters: dict[str, int] = {}
        for type_key, count in _apportion(cust.machines, cust.type_mix):
            mtype = MACHINE_TYPES[type_key]
            for _ in range(count):
                rng = _rng("machine", seed, cust.name, type_key, counters.get(mtype.prefix, 0))
                counters[mtype.prefix] = n = counters.get(mtype.prefix, 0) + 1
                machines.append(
                    _machine(rng, seed, cust, mtype, n, sites, site_weights, len(machines)))
    return Fleet(seed=seed, customers=tuple(c.name for c in specs), machines=tuple(machines))
