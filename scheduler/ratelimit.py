"""A channel-neutral send limiter: an overall rate and a per-recipient rate.

Chat platforms throttle bots twice: across all chats (Telegram: about 30 messages a second)
and per chat (about one a second). Both limits are kept as GCRA token buckets ("virtual
scheduling"): each bucket remembers the earliest time the next send fits, so concurrent
callers reserve slots in order and nobody polls. A 429 from the platform blocks just the
recipient it names (or everyone), for exactly the time the platform asked.

The clock and the sleep are injected so tests run without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

MAX_IDLE_BUCKETS = 10_000  # recipients remembered before idle ones are forgotten


@dataclass
class _Bucket:
    interval: float  # seconds between sends at the sustained rate
    tolerance: float  # how far ahead of schedule a burst may run
    next_free: float = 0.0  # theoretical arrival time of the next send

    def earliest(self, now: float) -> float:
        return max(now, self.next_free - self.tolerance)

    def take(self, at: float) -> None:
        self.next_free = max(self.next_free, at) + self.interval

    def idle(self, now: float) -> bool:
        return self.next_free <= now


def _bucket(rate: float, burst: int) -> _Bucket:
    if rate <= 0 or burst < 1:
        raise ValueError("rate must be positive and burst at least 1")
    interval = 1.0 / rate
    return _Bucket(interval, (burst - 1) * interval)


class RateLimiter:
    """`await acquire(recipient)` returns when a message to `recipient` may be sent."""

    def __init__(
        self, rate: float = 25.0, per_recipient: float = 1.0, *, burst: int | None = None,
        recipient_burst: int = 3, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._overall = _bucket(rate, burst or max(1, int(rate)))
        self._recipient_rate, self._recipient_burst = per_recipient, recipient_burst
        _bucket(per_recipient, recipient_burst)  # validate once, early
        self._recipients: dict[str, _Bucket] = {}
        self._blocked_until: dict[str | None, float] = {}
        self._clock, self._sleep = clock, sleep

    def ready_in(self, recipient: str) -> float:
        """Seconds until `recipient` may get a message, counting its own limit and blocks."""
        now = self._clock()
        bucket = self._recipients.get(recipient)
        at = max(bucket.earliest(now) if bucket else now, self._blocked_until.get(None, now),
                 self._blocked_until.get(recipient, now))
        return at - now

    def reserve(self, recipient: str) -> float:
        """Book the next free slot for `recipient`; returns how long to wait for it."""
        now = self._clock()
        bucket = self._recipients.get(recipient)
        if bucket is None:
            self._forget_idle(now)
            bucket = self._recipients[recipient] = _bucket(self._recipient_rate,
                                                           self._recipient_burst)
        at = max(self._overall.earliest(now), bucket.earliest(now),
                 self._blocked_until.get(None, now), self._blocked_until.get(recipient, now))
        self._overall.take(at)
        bucket.take(at)
        return at - now

    async def acquire(self, recipient: str) -> None:
        """Wait for the recipient first, then book an overall slot: a recipient that must wait
        does not hold back everyone else's sends."""
        while (wait := self.ready_in(recipient)) > 0:
            await self._sleep(wait)
        wait = self.reserve(recipient)
        if wait > 0:
            await self._sleep(wait)

    def block(self, recipient: str | None, seconds: float) -> None:
        """Honour a platform's "retry after": no sends to `recipient` (None: anyone) for now."""
        until = self._clock() + max(0.0, seconds)
        self._blocked_until[recipient] = max(self._blocked_until.get(recipient, 0.0), until)

    def blocked_for(self, recipient: str) -> float:
        """Seconds until a block on `recipient` (or on everyone) ends; 0 when not blocked."""
        now = self._clock()
        until = max(now, self._blocked_until.get(None, now),
                    self._blocked_until.get(recipient, now))
        return until - now

    def _forget_idle(self, now: float) -> None:
        """Keep memory bounded on campaigns to 100k recipients: drop buckets that are full."""
        if len(self._recipients) < MAX_IDLE_BUCKETS:
            return
        for key in [k for k, b in self._recipients.items() if b.idle(now)]:
            del self._recipients[key]
        for blocked in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[blocked]
