"""Per-station rate limit on the station's own clock. Pure: the caller passes the time.

What is limited is the rate at which a station *sends*, measured by the time its messages carry
(the message's ``time``, else its newest reading's), not the rate at which they reach us. So a
backlog the broker queued while quantrac was stopped, replayed at full speed after the restart,
is never rate limited: its messages carry the times they were sent, minutes apart. What is
limited is a datalogger sending the same instant over and over, or far more messages per second
of its own time than any real station does. Messages with no readings (junk: bad syntax, wrong
shape, no time) are not counted: they are rejected for what they are, and a flood of them
cannot use up the budget of the station's real readings.

Each station has a count per window of ``window_s`` seconds of its own time; a window admits
``rate × window_s + burst`` messages. Windows are kept per station in arrival order, at most
``max_windows`` of them (older ones are forgotten: they only ever admit more).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class RateLimiter:
    rate: float  # messages per second of the station's own time, sustained; 0 turns it off
    burst: float  # messages admitted in one window beyond the sustained rate
    window_s: float = 60.0
    max_windows: int = 1440
    _windows: dict[str, OrderedDict[int, int]] = field(default_factory=dict)

    @property
    def per_window(self) -> int:
        return math.floor(self.rate * self.window_s + self.burst)

    def allow(self, key: str, sent_at: float) -> bool:
        """Count a message the station sent at ``sent_at`` (epoch seconds of its own clock)."""
        if self.rate <= 0:
            return True
        windows = self._windows.get(key)
        if windows is None:
            windows = self._windows[key] = OrderedDict()
        index = math.floor(sent_at / self.window_s)
        count = windows.get(index, 0)
        if count >= self.per_window:
            return False
        windows[index] = count + 1
        if len(windows) > self.max_windows:
            windows.popitem(last=False)
        return True
