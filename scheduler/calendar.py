"""The business calendar every timer in the bot shares: staff-desk SLAs and campaign sends.

A business day is a weekday that is neither a Japanese national holiday (jpholiday) nor in
the year-end break 12/29–1/3, which is not a national holiday but when offices are closed.
Sending windows are whole hours in JST (default 9:00–17:00); anything due outside a window
waits for the next allowed slot.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import jpholiday

JST = ZoneInfo("Asia/Tokyo")
OPENS, CLOSES = time(9), time(17)
# The widest window any prefecture may set: nothing is sent at night, whatever is stored.
DAY_STARTS, DAY_ENDS = 7, 21
MAX_DAYS = 400  # spans longer than this are counted up to here
MAX_SEARCH = 30  # the longest run of closed days (Golden Week + weekend) is far shorter


class HasHours(Protocol):
    send_start_hour: int
    send_end_hour: int


def sending_hours(pref: HasHours | None) -> tuple[int, int]:
    """A prefecture's sending window, within the daytime limits; the default one for a
    prefecture not set up yet (or with a window that the limits leave empty)."""
    if pref is None:
        return OPENS.hour, CLOSES.hour
    start, end = max(pref.send_start_hour, DAY_STARTS), min(pref.send_end_hour, DAY_ENDS)
    return (start, end) if start < end else (OPENS.hour, CLOSES.hour)


def is_business_day(day: date) -> bool:
    if day.weekday() >= 5 or jpholiday.is_holiday(day):
        return False
    return not ((day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3))


def next_business_day(day: date, *, include: bool = True) -> date:
    """`day` itself when it is a business day (and `include`), else the next one."""
    candidate = day if include else day + timedelta(days=1)
    for _ in range(MAX_SEARCH):
        if is_business_day(candidate):
            return candidate
        candidate += timedelta(days=1)
    raise ValueError(f"no business day within {MAX_SEARCH} days of {day}")


def add_business_days(day: date, count: int) -> date:
    """The `count`-th business day after `day` (count ≥ 0; 0 means `day` or the next)."""
    if count <= 0:
        return next_business_day(day)
    for _ in range(count):
        day = next_business_day(day, include=False)
    return day


def business_hours_between(start: datetime, end: datetime) -> float:
    """Office hours (9:00–17:00 JST on business days) elapsed between two aware datetimes."""
    start, end = start.astimezone(JST), end.astimezone(JST)
    if end <= start:
        return 0.0
    total = 0.0
    day = start.date()
    last = min(end.date(), day + timedelta(days=MAX_DAYS))
    while day <= last:
        if is_business_day(day):
            opens = datetime.combine(day, OPENS, JST)
            closes = datetime.combine(day, CLOSES, JST)
            overlap = min(end, closes) - max(start, opens)
            total += max(0.0, overlap.total_seconds() / 3600)
        day += timedelta(days=1)
    return total


def in_window(at: datetime, start_hour: int = 9, end_hour: int = 17) -> bool:
    """True when `at` is inside a sending window: a business day, start ≤ hour < end."""
    local = at.astimezone(JST)
    return is_business_day(local.date()) and start_hour <= local.hour < end_hour


def next_slot(at: datetime, start_hour: int = 9, end_hour: int = 17) -> datetime:
    """`at` itself when sending is allowed then, else the start of the next window (JST)."""
    if not 0 <= start_hour < end_hour <= 24:
        raise ValueError(f"sending hours need 0 ≤ start < end ≤ 24: {start_hour}–{end_hour}")
    if in_window(at, start_hour, end_hour):
        return at
    local = at.astimezone(JST)
    day = local.date()
    if not (is_business_day(day) and local.hour < start_hour):
        day = next_business_day(day, include=False)
    return datetime.combine(day, time(start_hour), JST)


def slot_on(day: date, start_hour: int = 9, end_hour: int = 17) -> datetime:
    """The first allowed moment on or after the start of `day`'s window."""
    return next_slot(datetime.combine(day, time(start_hour), JST), start_hour, end_hour)
