"""The send limiter keeps both platform limits, on an injected clock (no real waiting)."""

from __future__ import annotations

import asyncio

import pytest

from scheduler.ratelimit import MAX_IDLE_BUCKETS, RateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.woke: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.woke.append(self.now - 1000.0)


def limiter(t: FakeTime, **kwargs: float) -> RateLimiter:
    return RateLimiter(clock=t.clock, sleep=t.sleep, **kwargs)  # type: ignore[arg-type]


async def send_times(lim: RateLimiter, t: FakeTime, recipients: list[str]) -> list[float]:
    times = []
    for r in recipients:
        await lim.acquire(r)
        times.append(round(t.now - 1000.0, 6))
    return times


async def test_overall_rate_allows_a_burst_then_paces() -> None:
    t = FakeTime()
    lim = limiter(t, rate=25, per_recipient=1)
    times = await send_times(lim, t, [f"chat{i}" for i in range(75)])
    assert times[:25] == [0.0] * 25  # the first second's worth goes at once
    assert times[25] == pytest.approx(0.04)
    assert times[-1] == pytest.approx(50 * 0.04)  # 25 per second after the burst
    assert len([x for x in times if x < 1.0]) <= 25 + 25


async def test_one_recipient_gets_about_one_message_a_second() -> None:
    t = FakeTime()
    lim = limiter(t, rate=25, per_recipient=1, recipient_burst=3)
    times = await send_times(lim, t, ["same"] * 6)
    assert times == pytest.approx([0, 0, 0, 1, 2, 3])


async def test_a_busy_recipient_does_not_slow_the_others() -> None:
    t = FakeTime()
    lim = limiter(t, rate=25, per_recipient=1, recipient_burst=1)
    await lim.acquire("busy")
    assert lim.ready_in("busy") == pytest.approx(1.0)
    assert lim.reserve("other") == 0
    await lim.acquire("busy")
    assert t.now - 1000.0 == pytest.approx(1.0)
    assert lim.reserve("third") == 0


async def test_concurrent_callers_get_distinct_slots() -> None:
    t = FakeTime()
    lim = limiter(t, rate=2, per_recipient=100, burst=1)
    waits = [lim.reserve(f"c{i}") for i in range(4)]
    assert waits == pytest.approx([0, 0.5, 1.0, 1.5])


async def test_retry_after_blocks_one_recipient_or_everyone() -> None:
    t = FakeTime()
    lim = limiter(t, rate=25, per_recipient=1)
    lim.block("flooded", 30)
    assert lim.blocked_for("flooded") == pytest.approx(30)
    assert lim.blocked_for("calm") == 0
    assert lim.reserve("calm") == 0
    assert lim.reserve("flooded") == pytest.approx(30)
    lim.block(None, 5)
    assert lim.blocked_for("calm") == pytest.approx(5)
    t.now += 31
    assert lim.blocked_for("flooded") == 0


async def test_acquire_really_waits_on_the_injected_sleep() -> None:
    t = FakeTime()
    lim = limiter(t, rate=1, per_recipient=1, burst=1, recipient_burst=1)
    await asyncio.gather(*(lim.acquire(f"c{i}") for i in range(3)))
    assert t.woke == pytest.approx([1.0, 2.0])


async def test_memory_stays_bounded_over_a_large_campaign() -> None:
    t = FakeTime()
    lim = limiter(t, rate=1_000_000, per_recipient=1, burst=1_000_000)
    for i in range(MAX_IDLE_BUCKETS + 10):
        lim.reserve(f"c{i}")
    t.now += 10  # every earlier bucket is full again
    lim.reserve("late")
    assert len(lim._recipients) < 20


def test_nonsense_rates_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0)
    with pytest.raises(ValueError):
        RateLimiter(per_recipient=1, recipient_burst=0)
