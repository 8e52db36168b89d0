"""Open alerts as a Prometheus gauge, read from the alerts table when /metrics is scraped.

Alertmanager pages on it (``quantrac_alerts_open{kind="exceedance",severity="critical"} > 0``);
every kind and severity is always exported, zero included, so a rule never sees a gap.
"""

from __future__ import annotations

import logging
import weakref

import psycopg
from prometheus_client import CollectorRegistry, Gauge
from psycopg_pool import AsyncConnectionPool

from quantrac.alerts import store
from quantrac.alerts.model import Kind, Severity

log = logging.getLogger(__name__)


_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, OpenAlertsGauge] = weakref.WeakKeyDictionary()


class OpenAlertsGauge:
    @classmethod
    def of(cls, registry: CollectorRegistry) -> OpenAlertsGauge:
        """The one gauge of a registry (a metric name registers once per registry)."""
        gauge = _GAUGES.get(registry)
        if gauge is None:
            gauge = _GAUGES[registry] = cls(registry)
        return gauge

    def __init__(self, registry: CollectorRegistry):
        self.gauge = Gauge(
            "quantrac_alerts_open",
            "Alerts open or acknowledged (not resolved), by kind and severity",
            ["kind", "severity"],
            registry=registry,
        )
        for kind in Kind:
            for severity in Severity:
                self.gauge.labels(kind.value, severity.value).set(0)

    async def refresh(self, pool: AsyncConnectionPool) -> None:
        try:
            async with pool.connection() as conn:
                counts = await store.open_alert_counts(conn)
        except psycopg.Error as exc:
            # The last figures stay; the database gauge of ingest says what is wrong.
            log.warning("open alerts not counted: %s", exc, extra={"event": "metrics"})
            return
        for kind in Kind:
            for severity in Severity:
                self.gauge.labels(kind.value, severity.value).set(
                    counts.get((kind.value, severity.value), 0)
                )
