"""Hourly VN_AQI of the air stations, kept up to date from the engine's hourly windows.

Every time a 1 h window of an AQI pollutant is (re)evaluated, that hour's AQI is recomputed
from the engine's valid hourly means (a late reading can change it, like any window).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from quantrac.alerts.engine import Engine, WindowEvaluated
from quantrac.aqi.index import HOUR, NOWCAST_HOURS, AqiResult, hourly_aqi, load_table
from quantrac.core.catalog import Catalog
from quantrac.core.registry import Registry
from quantrac.regulations.windows import ONE_HOUR

AQI_UNIT = "µg/m3"


class AqiTracker:
    def __init__(self, registry: Registry, config_dir: Path, catalog: Catalog, tz: tzinfo):
        self.table = load_table(config_dir / "aqi" / "vn_aqi_1459.yaml")
        self.catalog = catalog
        self.tz = tz
        self._factors: dict[tuple[str, str], float | None] = {}
        self.registry = registry

    @property
    def registry(self) -> Registry:
        return self._registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        self._registry = registry
        self._factors = {}  # a station's declared units may have changed

    def _factor(self, station_id: str, param: str) -> float | None:
        key = (station_id, param)
        if key not in self._factors:
            self._factors[key] = self._find_factor(station_id, param)
        return self._factors[key]

    def _find_factor(self, station_id: str, param: str) -> float | None:
        station = self.registry.get(station_id)
        target = self.catalog.unit(AQI_UNIT)
        declared = station.parameters.get(param) if station else None
        if declared is None or target is None:
            return None
        return self.catalog.conversion_factor(declared.unit, target)

    def update(self, windows: list[WindowEvaluated], engine: Engine) -> list[dict[str, Any]]:
        """The AQI rows for every air-station hour these windows touched."""
        pollutants = set(self.table.pollutants)
        touched: set[tuple[str, datetime]] = set()
        for w in windows:
            if w.window.averaging != ONE_HOUR or w.param not in pollutants:
                continue
            state = engine.stations.get(w.station_id)
            if state is None or state.station.kind != "air":
                continue
            # PM's NowCast looks 12 hours back, so an hour also moves the next 11 hours' AQI;
            # only hours already evaluated are recomputed (the future ones will be in turn).
            touched.add((w.station_id, w.window.start))
        rows = []
        for station_id, hour in sorted(touched):
            result = self.hour(engine, station_id, hour)
            if result is not None:
                rows.append(to_row(result))
        return rows

    def hour(self, engine: Engine, station_id: str, hour: datetime) -> AqiResult | None:
        state = engine.stations[station_id]
        means: dict[str, Mapping[datetime, float]] = {}
        starts = [hour - i * HOUR for i in range(NOWCAST_HOURS)]
        for param in self.table.pollutants:
            series = state.series.get(param)
            factor = self._factor(station_id, param)
            if series is None or factor is None:
                continue
            by_hour: dict[datetime, float] = {}
            held = series.windows.hours
            for start in starts:
                if start not in held:
                    continue  # no reading in that hour: no mean
                mean = series.windows.hour(start).mean
                if mean is not None:
                    by_hour[start] = mean * factor
            means[param] = by_hour
        return hourly_aqi(station_id, hour, means, self.table)


def to_row(result: AqiResult) -> dict[str, Any]:
    return {
        "station_id": result.station_id,
        "hour_start": result.start,
        "aqi": result.aqi,
        "category": result.category,
        "dominant": list(result.dominant),
        "sub_indices": result.sub_indices,
        "inputs": {k: round(v, 3) for k, v in result.inputs.items()},
    }
