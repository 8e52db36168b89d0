"""Alert notifications: MQTT, signed webhooks and e-mail, routed, retried and escalated.

See docs/notifications.md. The pieces: ``base`` (Channel protocol, retries), one module per
channel (``mqtt``, ``webhook``, ``mail``), ``notifier`` (routing, metrics), ``outbox``
(delivery from ``alert_events`` by cursor), ``escalation`` (pure due-logic) and ``config``
(the ``notifications:`` section).
"""

from quantrac.alerts.notify.base import (
    Channel,
    DeliveryError,
    RetryPolicy,
    deliver_with_retries,
    encode_event,
)
from quantrac.alerts.notify.config import (
    EmailChannelConfig,
    MqttChannelConfig,
    NotificationConfig,
    WebhookChannelConfig,
    build_channels,
    parse_notification_config,
)
from quantrac.alerts.notify.escalation import (
    DueEscalation,
    EscalationRule,
    OpenAlert,
    due_escalations,
    next_escalation_at,
)
from quantrac.alerts.notify.mail import (
    EmailChannel,
    Security,
    build_message,
    email_body,
    email_subject,
)
from quantrac.alerts.notify.mqtt import MqttChannel
from quantrac.alerts.notify.notifier import NotifyMetrics, Outcome, Route, route
from quantrac.alerts.notify.webhook import WebhookChannel, sign, verify_signature

__all__ = [
    "Channel",
    "DeliveryError",
    "DueEscalation",
    "EmailChannel",
    "EmailChannelConfig",
    "EscalationRule",
    "MqttChannel",
    "MqttChannelConfig",
    "NotificationConfig",
    "NotifyMetrics",
    "OpenAlert",
    "Outcome",
    "RetryPolicy",
    "Route",
    "Security",
    "WebhookChannel",
    "WebhookChannelConfig",
    "build_channels",
    "build_message",
    "deliver_with_retries",
    "due_escalations",
    "email_body",
    "email_subject",
    "encode_event",
    "next_escalation_at",
    "parse_notification_config",
    "route",
    "sign",
    "verify_signature",
]
