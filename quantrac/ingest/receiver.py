"""From a payload to a committed Item: parse, rate-limit, validate, submit, build feedback.

Shared by the MQTT input and the file drop. It never raises for bad input: whatever a payload
contains ends as stored readings and stored rejections with reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from quantrac.core.catalog import Catalog
from quantrac.core.contract import (
    Feedback,
    ParsedPayload,
    Problem,
    Reading,
    Reason,
    station_from_topic,
)
from quantrac.core.i18n import translate
from quantrac.core.registry import Registry
from quantrac.ingest.clock_hint import LOGGER_ON_UTC, utc_offset_hint
from quantrac.ingest.metrics import IngestMetrics
from quantrac.ingest.payloads import excerpt, parse_payload
from quantrac.ingest.pipeline import Pipeline
from quantrac.ingest.ratelimit import RateLimiter
from quantrac.ingest.storable import storable_key
from quantrac.ingest.validation import TimeLimits, validate
from quantrac.ingest.writer import Item

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Receiver:
    def __init__(
        self,
        pipeline: Pipeline,
        registry: Callable[[], Registry],
        catalog: Catalog,
        metrics: IngestMetrics,
        *,
        limits: TimeLimits,
        max_payload_bytes: int,
        local: tzinfo,
        rate_limiter: RateLimiter,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.pipeline = pipeline
        self.registry = registry
        self.catalog = catalog
        self.metrics = metrics
        self.limits = limits
        self.max_payload_bytes = max_payload_bytes
        self.local = local
        self.rate_limiter = rate_limiter
        self.clock = clock

    def _local_for(self, station_id: str | None) -> tzinfo:
        station = self.registry().get(station_id) if station_id else None
        return station.utc_offset if station and station.utc_offset else self.local

    async def receive_mqtt(self, topic: str, payload: bytes) -> tuple[Item, Feedback]:
        """Store what the message holds; the feedback goes to the topic's station (its
        ``station`` is empty when the topic names none: there is nobody to send it to)."""
        received_at = self.clock()
        self.metrics.message("mqtt")
        topic_station = station_from_topic(topic)
        try:
            if topic_station is None:
                # Without a station in the topic nothing can be checked against the payload's
                # claim, and no ack topic exists: rejected, counted and logged.
                log.warning(
                    "message on a topic without a station rejected",
                    extra={"event": "topic_invalid", "topic": storable_key(topic)},
                )
                parsed = ParsedPayload(
                    "unknown",
                    None,
                    None,
                    None,
                    problems=[
                        Problem(
                            Reason.TOPIC_INVALID,
                            "topic",
                            excerpt(topic, 120),
                            "the topic names no station: publish on stations/{station_id}/data",
                        )
                    ],
                )
            else:
                parsed = parse_payload(
                    payload, max_bytes=self.max_payload_bytes, local=self._local_for(topic_station)
                )
                parsed = self._rate_limited(topic_station, parsed)
            item = self.build_item(
                parsed,
                topic=topic,
                topic_station=topic_station,
                source="mqtt",
                received_at=received_at,
                payload_excerpt=excerpt(payload),
            )
        except Exception as exc:  # a bug must not lose the payload or stall the broker session
            log.exception(
                "unexpected error while reading a payload",
                extra={"event": "internal_error", "topic": storable_key(topic)},
            )
            item = Item(
                received_at,
                topic_station,
                topic,
                "mqtt",
                None,
                excerpt(payload),
                [],
                [
                    Problem(
                        Reason.INTERNAL_ERROR,
                        "payload",
                        excerpt(payload, 80),
                        f"quantrac could not process this payload ({type(exc).__name__});"
                        " it is kept for the operators",
                    )
                ],
            )
            parsed = ParsedPayload("unknown", None, None, None)
        committed = await self.pipeline.submit(item)
        message_time = parsed.time.isoformat() if parsed.time else None
        # Feedback goes back to whoever published: the topic's station, never the payload's claim.
        feedback = Feedback(
            station=topic_station or "",
            seq=parsed.seq,
            time=message_time,
            received_at=received_at,
            accepted=committed.stored,
            duplicates=committed.duplicates,
            problems=[*committed.problems, *committed.conflicts],
            notices=clock_notices(committed.readings, received_at),
        )
        return committed, feedback

    def _rate_limited(self, station_id: str, parsed: ParsedPayload) -> ParsedPayload:
        """The payload, or a rate_limited rejection of it. Counted on the station's own clock
        (quantrac.ingest.ratelimit), and only for messages with readings of a registered station."""
        if not parsed.readings or self.registry().get(station_id) is None:
            return parsed
        sent_at = parsed.time or max(
            (r.time for r in parsed.readings if isinstance(r.time, datetime)), default=None
        )
        if sent_at is None or self.rate_limiter.allow(station_id, sent_at.timestamp()):
            return parsed
        limiter = self.rate_limiter
        return ParsedPayload(
            parsed.format,
            parsed.station,
            parsed.seq,
            parsed.time,
            problems=[
                Problem(
                    Reason.RATE_LIMITED,
                    "payload",
                    f"over {limiter.per_window} messages stamped within {limiter.window_s:g} s",
                    f"more than {limiter.per_window} messages stamped within one "
                    f"{limiter.window_s:g} s window ({limiter.rate:g} per second plus "
                    f"{limiter.burst:g}); send each reading once",
                )
            ],
        )

    def build_item(
        self,
        parsed: ParsedPayload,
        *,
        topic: str,
        topic_station: str | None,
        source: str,
        received_at: datetime,
        payload_excerpt: str,
    ) -> Item:
        registry = self.registry()
        result = validate(
            parsed,
            topic_station=topic_station,
            registry=registry,
            catalog=self.catalog,
            now=received_at,
            limits=self.limits,
        )
        # Stored under the station that published (the topic's), so its rejections and its acks
        # count alike; a payload's other claim shows in the problem's value.
        station_id = result.station.id if result.station else (topic_station or parsed.station)
        item = Item(
            received_at=received_at,
            station_id=station_id,
            topic=topic,
            source=source,
            seq=parsed.seq,
            payload_excerpt=payload_excerpt,
            readings=result.readings,
            problems=result.problems,
            repeated=result.duplicates,
        )
        return item


def clock_notices(readings: list[Reading], received_at: datetime) -> list[dict[str, str]]:
    """Accepted readings whose newest measured time is exactly 7 h behind their arrival: the
    logger is on UTC. Stored as sent (a backlog can be 7 h old too), but the station is told."""
    if not readings:
        return []
    newest = max(r.measured_at for r in readings)
    if utc_offset_hint(newest, received_at) != LOGGER_ON_UTC:
        return []
    return [
        {
            "field": "time",
            "value": newest.isoformat(),
            "rule": "clock_utc_offset",
            "detail": translate("ack.clock.logger_on_utc", "en"),
            "detail_vi": translate("ack.clock.logger_on_utc", "vi"),
            "detail_en": translate("ack.clock.logger_on_utc", "en"),
        }
    ]
