"""Prometheus metrics of the ingest path, in a registry of their own (one per service)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from quantrac.core.contract import Reason


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "quantrac_messages_received_total",
            "Payloads received, by source",
            ["source"],
            registry=r,
        )
        self.readings_stored = Counter(
            "quantrac_readings_stored_total", "Readings committed to the database", registry=r
        )
        self.duplicates = Counter(
            "quantrac_readings_duplicate_total",
            "Readings received again with the same value; ignored",
            registry=r,
        )
        self.rejections = Counter(
            "quantrac_rejections_total",
            "Rejected payloads or readings, by reason",
            ["reason"],
            registry=r,
        )
        # Per station and reason, so a vendor's broken logger shows by name. A station the
        # registry does not know is "unknown": an unregistered id never becomes a label.
        self.station_rejections = Counter(
            "quantrac_station_rejections_total",
            "Rejected payloads or readings, by station and reason",
            ["station", "reason"],
            registry=r,
        )
        self.batch_readings = Histogram(
            "quantrac_batch_readings",
            "Readings per committed batch",
            registry=r,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000),
        )
        self.commit_seconds = Histogram(
            "quantrac_batch_commit_seconds",
            "Time to write and commit one batch",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.lag_seconds = Histogram(
            "quantrac_reading_lag_seconds",
            "Received time minus measured time",
            registry=r,
            buckets=(1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400),
        )
        self.last_reading = Gauge(
            "quantrac_station_last_reading_timestamp_seconds",
            "Newest measured time stored per station",
            ["station"],
            registry=r,
        )
        self.pending = Gauge(
            "quantrac_pending_readings", "Readings received and not yet committed", registry=r
        )
        self.broker_up = Gauge(
            "quantrac_broker_connected", "1 while connected to the broker", registry=r
        )
        self.database_up = Gauge(
            "quantrac_database_connected",
            "1 while the last database operation succeeded",
            registry=r,
        )
        self.write_failures = Counter(
            "quantrac_batch_write_failures_total",
            "Batch writes that failed and will be retried",
            registry=r,
        )
        self.stuck_since = Gauge(
            "quantrac_storage_stuck_since_timestamp_seconds",
            "When the current run of failed batch writes began (epoch seconds); 0 while storing",
            registry=r,
        )
        self.acks_failed = Counter(
            "quantrac_acks_failed_total",
            "Acks that could not be published (logged as ack_failed); their data are stored",
            registry=r,
        )
        self.unstorable = Counter(
            "quantrac_unstorable_payloads_total",
            "Payloads the database refused even as a plain rejection record; acknowledged, "
            "logged (event storage_refused_unrecorded), not stored",
            registry=r,
        )
        # Labelled children are cached: .labels() on every call doubles the cost.
        self._rejections = {reason: self.rejections.labels(reason.value) for reason in Reason}
        self._sources: dict[str, Counter] = {}
        self._station_rejections: dict[tuple[str, Reason], Counter] = {}
        self._stations: dict[str, Gauge] = {}
        self._newest: dict[str, float] = {}

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample, e.g. value("quantrac_readings_stored_total")."""
        return self.registry.get_sample_value(name, labels or None) or 0.0

    def message(self, source: str) -> None:
        child = self._sources.get(source)
        if child is None:
            child = self._sources[source] = self.messages.labels(source)
        child.inc()

    def rejected(self, reason: Reason, count: int = 1, station: str | None = None) -> None:
        self._rejections[reason].inc(count)
        if station is None:
            return
        if not station or reason is Reason.STATION_UNKNOWN:
            station = "unknown"
        key = (station, reason)
        child = self._station_rejections.get(key)
        if child is None:
            child = self._station_rejections[key] = self.station_rejections.labels(
                station, reason.value
            )
        child.inc(count)

    def station_reading(self, station_id: str, measured_at: datetime) -> None:
        stamp = measured_at.timestamp()
        if stamp <= self._newest.get(station_id, 0.0):
            return
        self._newest[station_id] = stamp
        child = self._stations.get(station_id)
        if child is None:
            child = self._stations[station_id] = self.last_reading.labels(station_id)
        child.set(stamp)
