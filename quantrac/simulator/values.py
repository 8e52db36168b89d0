"""Deterministic, plausible values for simulated stations. Pure: no clock, no I/O.

Each station kind has one model that produces every parameter it knows for one time step, so
related values can be derived from each other (PM2,5 from PM10, COD from TSS) instead of being
drawn independently. Models work in a fixed reference unit per parameter; values are converted
to the unit the registry declares only at the end.
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from functools import lru_cache

from quantrac.core.catalog import Unit
from quantrac.core.contract import JsonReading, Status
from quantrac.core.registry import Station
from quantrac.core.time import VIETNAM

# Reference units of the models: (dimension, factor to the dimension's base), as in
# config/parameters.yaml. A test checks they still agree with the catalog.
REFERENCE_UNITS: dict[str, tuple[str, float]] = {
    "µg/m3": ("mass_per_m3", 1.0),
    "mg/Nm3": ("mass_per_nm3", 1000.0),
    "mg/L": ("mass_per_volume_liquid", 1.0),
    "m3/h": ("volume_flow", 1.0),
    "°C": ("temperature", 1.0),
    "%": ("fraction", 1.0),
    "kPa": ("pressure", 1000.0),
    "pH": ("ph", 1.0),
    "Pt/Co": ("colour", 1.0),
}

Values = dict[str, tuple[float, str]]  # parameter code -> (value, reference unit id)
DEFAULT_STACK_FLOW_M3H = 80_000.0
DEFAULT_WASTEWATER_M3_PER_DAY = 3_000.0
_MEASURING = Status.MEASURING.code


def local_hour(moment: datetime) -> float:
    """Fractional hour of the day on Vietnamese clocks, which is what drives traffic and shifts."""
    local = moment.astimezone(VIETNAM)
    return local.hour + local.minute / 60 + local.second / 3600


def _peak(hour: float, center: float, width: float) -> float:
    """A bell around ``center`` o'clock that wraps across midnight."""
    distance = (hour - center + 12) % 24 - 12
    return math.exp(-0.5 * (distance / width) ** 2)


def _daily_wave(hour: float, warmest: float) -> float:
    """+1 at ``warmest`` o'clock, -1 twelve hours later: the shape of temperature over a day."""
    return math.cos(2 * math.pi * (hour - warmest) / 24)


def _noisy(rng: random.Random, value: float, relative: float) -> float:
    # Multiplicative noise scales with the level and can never turn a value negative.
    return value * max(0.3, 1.0 + rng.gauss(0.0, relative))


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def air_values(hour: float, rng: random.Random, level: float = 1.0) -> Values:
    # Road traffic peaks at 7–9 h and 17–19 h and drives NO2, CO and much of the dust.
    traffic = 0.45 + 0.75 * _peak(hour, 8.0, 1.1) + 0.65 * _peak(hour, 18.0, 1.2)
    pm10 = _noisy(rng, 65.0 * (0.55 + 0.5 * traffic) * level, 0.15)
    # Fine dust is ~60 % of PM10 and coarse-inclusive TSP ~1.5×, so the sizes stay ordered.
    pm25 = pm10 * _clamp(rng.gauss(0.6, 0.05), 0.45, 0.8)
    tsp = pm10 * _clamp(rng.gauss(1.5, 0.1), 1.2, 1.9)
    # Ozone is photochemical: it follows the sun, peaking in the early afternoon.
    o3 = _noisy(rng, (15.0 + 85.0 * _peak(hour, 14.0, 2.5)) * level, 0.12)
    wave = _daily_wave(hour, warmest=14.5)
    return {
        "PM10": (pm10, "µg/m3"),
        "PM2,5": (pm25, "µg/m3"),
        "TSP": (tsp, "µg/m3"),
        "NO2": (_noisy(rng, 36.0 * traffic * level, 0.15), "µg/m3"),
        "CO": (_noisy(rng, 1300.0 * traffic * level, 0.15), "µg/m3"),
        "SO2": (_noisy(rng, 22.0 * (0.7 + 0.3 * traffic) * level, 0.2), "µg/m3"),
        "O3": (o3, "µg/m3"),
        "Temp": (26.0 + 4.0 * wave + rng.gauss(0.0, 0.3), "°C"),
        # Relative humidity falls as the air warms.
        "RH": (_clamp(78.0 - 14.0 * wave + rng.gauss(0.0, 2.0), 30.0, 100.0), "%"),
    }


def wastewater_values(
    hour: float,
    rng: random.Random,
    *,
    discharge_m3_per_day: float,
    cleaner: bool,
    level: float = 1.0,
) -> Values:
    # Factories run production shifts 6–22 h; the night flow is what the plant still drains.
    shift = 1.0 if 6.0 <= hour < 22.0 else 0.35
    mean_shift = (16 * 1.0 + 8 * 0.35) / 24
    flow = _noisy(rng, discharge_m3_per_day / 24 / mean_shift * shift, 0.08)
    # Column A outfalls treat further; keep them around half of a column B outfall.
    load = (0.8 + 0.2 * shift) * level * (0.5 if cleaner else 1.0)
    tss = _noisy(rng, 32.0 * load, 0.2)
    cod = _noisy(rng, 25.0 * load + 1.9 * tss, 0.08)  # organic matter travels with solids
    nh4 = _noisy(rng, 4.0 * load, 0.2)
    no3 = _noisy(rng, 6.0 * load, 0.2)
    tn = nh4 + no3 + _noisy(rng, 5.0 * load, 0.2)  # total N includes both and organic N
    tp = _noisy(rng, 2.2 * load, 0.2)
    return {
        "Flow": (flow, "m3/h"),
        "Temp": (29.0 + 2.0 * _daily_wave(hour, warmest=15.0) + rng.gauss(0.0, 0.2), "°C"),
        "pH": (_clamp(rng.gauss(7.2, 0.12), 6.9, 7.5), "pH"),
        "TSS": (tss, "mg/L"),
        "COD": (cod, "mg/L"),
        "BOD5": (cod * _clamp(rng.gauss(0.38, 0.03), 0.3, 0.46), "mg/L"),
        "NH4": (nh4, "mg/L"),
        "NO3": (no3, "mg/L"),
        "TN": (tn, "mg/L"),
        "TP": (tp, "mg/L"),
        "PO4": (tp * _clamp(rng.gauss(0.6, 0.05), 0.45, 0.75), "mg/L"),
        "Color": (_noisy(rng, 55.0 * load, 0.15), "Pt/Co"),
    }


def emission_values(
    hour: float, rng: random.Random, *, stack_flow_m3h: float, level: float = 1.0
) -> Values:
    # Boilers and kilns run around the clock with a slightly higher load in the day shift.
    load = 0.92 + 0.08 * (1.0 if 6.0 <= hour < 22.0 else 0.0)
    o2 = _clamp(rng.gauss(8.0, 0.7), 6.0, 10.0)
    # Less excess air means less complete combustion: CO rises as O2 falls.
    co = _clamp(_noisy(rng, 150.0 * (1.0 + 0.25 * (8.0 - o2)) * level, 0.15), 50.0, 300.0)
    return {
        "Flow": (_noisy(rng, stack_flow_m3h * load, 0.04), "m3/h"),
        "Temp": (_clamp(rng.gauss(140.0, 6.0), 120.0, 160.0), "°C"),
        "P": (rng.gauss(101.3, 0.3), "kPa"),
        "O2": (o2, "%"),
        "PM": (_clamp(_noisy(rng, 65.0 * level, 0.2), 30.0, 120.0), "mg/Nm3"),
        "SO2": (_clamp(_noisy(rng, 220.0 * load * level, 0.18), 100.0, 400.0), "mg/Nm3"),
        "NOx": (_clamp(_noisy(rng, 340.0 * load * level, 0.18), 150.0, 600.0), "mg/Nm3"),
        "CO": (co, "mg/Nm3"),
    }


def _coefficient(station: Station | None, key: str, default: float) -> float:
    if station is None or station.regulation is None:
        return default
    value = station.regulation.coefficients.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def kind_values(
    kind: str,
    moment: datetime,
    rng: random.Random,
    *,
    station: Station | None = None,
    level: float = 1.0,
) -> Values:
    """Every parameter the kind's model knows, for one time step, in reference units."""
    hour = local_hour(moment)
    if kind == "air":
        return air_values(hour, rng, level)
    if kind == "wastewater":
        cleaner = (
            station is not None
            and station.regulation is not None
            and (station.regulation.column or "").upper() == "A"
        )
        discharge = _coefficient(station, "discharge_m3_per_day", DEFAULT_WASTEWATER_M3_PER_DAY)
        return wastewater_values(
            hour, rng, discharge_m3_per_day=discharge, cleaner=cleaner, level=level
        )
    if kind == "emission":
        flow = _coefficient(station, "stack_flow_m3h", DEFAULT_STACK_FLOW_M3H)
        return emission_values(hour, rng, stack_flow_m3h=flow, level=level)
    raise ValueError(f"unknown station kind {kind!r}")


def round_sensibly(value: float) -> float:
    """Datalogger-like precision: 85234 m3/h, 142.3 °C, 7.21 pH, 0.352 mg/L.

    At most 6 significant digits, so the TT10 ``%g`` formatting (6 digits) stays exact.
    """
    magnitude = abs(value)
    if magnitude >= 1000:
        return float(round(value, min(0, 5 - math.floor(math.log10(magnitude)))))
    if magnitude >= 100:
        return round(value, 1)
    if magnitude >= 1:
        return round(value, 2)
    return round(value, 3)


def convert(value: float, reference_unit: str, unit: Unit) -> float:
    dimension, factor = REFERENCE_UNITS[reference_unit]
    if dimension != unit.dimension:
        raise ValueError(f"cannot express a {reference_unit} value in {unit.id}")
    return value * factor / unit.factor


@lru_cache(maxsize=4096)
def _day_level(seed: int, station_id: str, local_day: int) -> float:
    # Some days are dirtier than others (weather, production); stable for a station and day.
    return _clamp(
        random.Random(f"{seed}:{station_id}:day:{local_day}").lognormvariate(0, 0.15), 0.7, 1.4
    )


def message_rng(seed: int, station_id: str, moment: datetime) -> random.Random:
    """The random stream of one message: depends only on seed, station and measured time."""
    return random.Random(f"{seed}:{station_id}:{int(moment.timestamp())}")


def station_readings(station: Station, moment: datetime, seed: int) -> list[JsonReading]:
    """One message's readings: every declared parameter, in its declared unit, status "00"."""
    rng = message_rng(seed, station.id, moment)
    local_day = moment.astimezone(VIETNAM).toordinal()
    level = _day_level(seed, station.id, local_day)
    model = kind_values(station.kind, moment, rng, station=station, level=level)
    readings = []
    for code, declared in station.parameters.items():
        if code in model and REFERENCE_UNITS[model[code][1]][0] == declared.unit.dimension:
            value = convert(*model[code], declared.unit)
        else:
            # A parameter the kind's model does not know (wind, metals …): a steady positive
            # value in its declared unit still exercises the whole ingest path.
            value = _noisy(rng, 1.0, 0.1)
        readings.append(
            JsonReading(
                param=code, value=round_sensibly(value), unit=declared.unit.id, status=_MEASURING
            )
        )
    return readings
