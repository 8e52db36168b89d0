"""Synthetic station fleets for load tests: N stations of one kind around Bắc Giang city
(Bắc Ninh province since 01/07/2025)."""

from __future__ import annotations

import random

from quantrac.core.catalog import Catalog
from quantrac.core.registry import (
    DEFAULT_CADENCE_S,
    DeclaredParameter,
    Registry,
    RegulationRef,
    Station,
)

# The parameter sets the Circular 10/2021 requires of each kind of station, in their usual units.
STANDARD_PARAMETERS: dict[str, list[tuple[str, str]]] = {
    "air": [
        ("PM2,5", "µg/m3"),
        ("PM10", "µg/m3"),
        ("NO2", "µg/m3"),
        ("SO2", "µg/m3"),
        ("CO", "µg/m3"),
        ("O3", "µg/m3"),
        ("Temp", "°C"),
        ("RH", "%"),
    ],
    "wastewater": [
        ("Flow", "m3/h"),
        ("Temp", "°C"),
        ("pH", "pH"),
        ("TSS", "mg/L"),
        ("COD", "mg/L"),
        ("NH4", "mg/L"),
        ("TN", "mg/L"),
        ("TP", "mg/L"),
        ("Color", "Pt/Co"),
    ],
    "emission": [
        ("Flow", "m3/h"),
        ("Temp", "°C"),
        ("P", "kPa"),
        ("O2", "%"),
        ("PM", "mg/Nm3"),
        ("SO2", "mg/Nm3"),
        ("NOx", "mg/Nm3"),
        ("CO", "mg/Nm3"),
    ],
}
_ID_KIND = {"air": "AIR", "wastewater": "WW", "emission": "EM"}
BAC_GIANG = (21.2731, 106.1946)


def _regulation(kind: str, rng: random.Random) -> RegulationRef:
    if kind == "air":
        return RegulationRef("QCVN 05:2023/BTNMT", None, {})
    if kind == "wastewater":
        return RegulationRef(
            "QCVN 40:2011/BTNMT",
            "B",
            {
                "receiving_water": "river",
                "receiving_flow_m3s": 120,
                "discharge_m3_per_day": rng.choice([1000, 2000, 4000, 8000]),
            },
        )
    return RegulationRef(
        "QCVN 19:2009/BTNMT",
        "B",
        {"stack_flow_m3h": rng.choice([40_000, 85_000, 150_000]), "region_class": 3},
    )


def synthetic_registry(count: int, kind: str, catalog: Catalog, seed: int = 0) -> Registry:
    """``count`` stations SIM_AIR_0001 … with the standard parameters, cadence 300 s."""
    if kind not in STANDARD_PARAMETERS:
        raise ValueError(f"kind must be one of {', '.join(STANDARD_PARAMETERS)}, not {kind!r}")
    if count <= 0:
        raise ValueError("count must be positive")
    parameters: dict[str, DeclaredParameter] = {}
    for code, unit_id in STANDARD_PARAMETERS[kind]:
        unit = catalog.unit(unit_id)
        if unit is None or catalog.parameter(code) is None:
            raise ValueError(f"the catalog lacks {code} or {unit_id}")
        parameters[code] = DeclaredParameter(code, unit)
    rng = random.Random(f"fleet:{seed}:{kind}")
    stations = {}
    for number in range(1, count + 1):
        tag = f"{_ID_KIND[kind]}{number:04d}"
        station_id = f"SIM_{_ID_KIND[kind]}_{number:04d}"
        stations[station_id] = Station(
            id=station_id,
            name=f"Trạm mô phỏng {tag}",
            kind=kind,
            facility=f"Cơ sở mô phỏng {number}",
            province="Bắc Ninh",
            lat=round(BAC_GIANG[0] + rng.uniform(-0.08, 0.08), 5),
            lon=round(BAC_GIANG[1] + rng.uniform(-0.12, 0.12), 5),
            cadence_s=DEFAULT_CADENCE_S,
            parameters=dict(parameters),
            regulation=_regulation(kind, rng),
            # TT10 file names allow no '_' inside the station part, so the id cannot serve.
            ftp_name=f"BacNinh_SIM_{tag}",
        )
    return Registry(stations=stations, source=f"<synthetic {count} {kind}>")
