"""Business calendar and per-prefecture cadence, with time injected (never slept)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from bot.campaign_admin import show_calendar
from db.models import CampaignSettings, Prefecture
from scheduler.cadence import (
    CATCH_UP,
    cycle_runs,
    due_run,
    early_reminders,
    period_opens,
    too_late,
)
from scheduler.calendar import (
    JST,
    add_business_days,
    in_window,
    is_business_day,
    next_business_day,
    next_slot,
    sending_hours,
)


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=JST)  # type: ignore[misc]


@pytest.mark.parametrize("day, open_", [
    (date(2026, 11, 23), False),  # 勤労感謝の日
    (date(2026, 11, 24), True),
    (date(2026, 12, 28), True),
    (date(2026, 12, 29), False),  # 年末年始: not a national holiday, but offices are closed
    (date(2027, 1, 3), False),
    (date(2027, 1, 4), True),
    (date(2027, 1, 11), False),  # 成人の日
    (date(2027, 3, 27), False),  # Saturday
])
def test_business_days(day: date, open_: bool) -> None:
    assert is_business_day(day) is open_


def test_business_day_arithmetic_skips_the_year_end_break() -> None:
    assert next_business_day(date(2026, 12, 29)) == date(2027, 1, 4)
    assert add_business_days(date(2026, 12, 25), 3) == date(2027, 1, 5)
    assert add_business_days(date(2026, 11, 20), 1) == date(2026, 11, 24)


@pytest.mark.parametrize("at, expected", [
    (jst(2026, 11, 24, 10, 30), jst(2026, 11, 24, 10, 30)),  # inside: now
    (jst(2026, 11, 24, 8, 59), jst(2026, 11, 24, 9)),  # before opening
    (jst(2026, 11, 24, 17, 0), jst(2026, 11, 25, 9)),  # closing time is outside
    (jst(2026, 11, 21, 12), jst(2026, 11, 24, 9)),  # Saturday → Tuesday (Monday holiday)
    (jst(2026, 12, 28, 18), jst(2027, 1, 4, 9)),  # over the year-end break
])
def test_next_slot(at: datetime, expected: datetime) -> None:
    assert next_slot(at) == expected


def test_sending_hours_are_per_prefecture() -> None:
    assert not in_window(jst(2026, 11, 24, 9, 30), 10, 16)
    assert next_slot(jst(2026, 11, 24, 16, 0), 10, 16) == jst(2026, 11, 25, 10)
    with pytest.raises(ValueError):
        next_slot(jst(2026, 11, 24, 12), 17, 9)


def test_no_stored_window_reaches_into_the_night() -> None:
    """However the hours got into the database (an old version, a hand edit), nothing is
    sent before 7:00 or after 21:00."""
    assert sending_hours(Prefecture(code="26", name="京都府", send_start_hour=0,
                                    send_end_hour=24)) == (7, 21)
    assert sending_hours(Prefecture(code="26", name="京都府", send_start_hour=22,
                                    send_end_hour=23)) == (9, 17)  # empty after the limits
    assert sending_hours(Prefecture(code="26", name="京都府", send_start_hour=8,
                                    send_end_hour=20)) == (8, 20)


def settings(**kw: object) -> CampaignSettings:
    return CampaignSettings(prefecture_code="26", **kw)  # type: ignore[arg-type]


def test_default_cadence_for_a_march_deadline() -> None:
    runs = cycle_runs(settings(), date(2027, 3, 31))
    tags = [r.tag.split(":")[1] for r in runs]
    assert tags[:6] == ["annai", "D-30", "D-14", "D-7", "D-3", "D-1"]
    assert tags[6:] == [f"D+{7 * k}" for k in range(1, 9)]
    assert runs[0].at == jst(2026, 11, 10, 9)  # 案内 in November before the deadline
    d3 = next(r for r in runs if r.tag.endswith("D-3"))
    assert d3.day == date(2027, 3, 28) and d3.at == jst(2027, 3, 29, 9)  # Sunday → Monday
    assert all(is_business_day(r.at.date()) for r in runs)


def test_cadence_follows_each_prefectures_deadline_and_settings() -> None:
    """静岡県 closed on 2027-02-27 (a Saturday); reminders configured as D-21/D-5 only."""
    runs = cycle_runs(settings(reminder_days=[21, 5], after_deadline_count=2,
                               after_deadline_every_days=14, annai_month=11, annai_day=20),
                      date(2027, 2, 27), start_hour=10, end_hour=16)
    assert [r.tag.split(":")[1] for r in runs] == ["annai", "D-21", "D-5", "D+14", "D+28"]
    assert runs[0].at == jst(2026, 11, 20, 10)
    assert runs[1].at == jst(2027, 2, 8, 10)  # 2/6 is a Saturday


def test_a_reminder_never_lands_after_the_deadline() -> None:
    """Deadline Saturday 2027-02-27: D-1 is Friday; a Sunday D-1 before a Monday deadline
    goes out on the deadline morning, and one that would slide past the deadline is dropped."""
    fri = cycle_runs(settings(reminder_days=[1], after_deadline_count=0), date(2027, 2, 27))
    assert fri[-1].at == jst(2027, 2, 26, 9)
    holiday = cycle_runs(settings(reminder_days=[2], after_deadline_count=0),
                         date(2026, 12, 30))  # D-2 = 12/28 is open; D-1 = 12/29 is not
    assert holiday[-1].at == jst(2026, 12, 28, 9)
    dropped = cycle_runs(settings(reminder_days=[1], after_deadline_count=0),
                         date(2026, 12, 31))  # D-1 = 12/30 → next slot 1/4, after it
    assert [r.tag.split(":")[1] for r in dropped] == ["annai"]


def test_runs_on_the_same_slot_collapse_into_the_later_one() -> None:
    """Deadline Monday 2027-01-04: D-3 (1/1) and D-1 (1/3) both wait for 1/4 9:00; one
    message goes then, labelled D-1 (本日が期限)."""
    runs = cycle_runs(settings(reminder_days=[7, 3, 1], after_deadline_count=0),
                      date(2027, 1, 4))
    assert [(r.tag.split(":")[1], r.at) for r in runs[1:]] == [
        ("D-7", jst(2026, 12, 28, 9)), ("D-1", jst(2027, 1, 4, 9))]


def test_after_downtime_only_the_latest_due_run_is_sent() -> None:
    runs = cycle_runs(settings(), date(2027, 3, 31))
    assert due_run(runs, jst(2026, 11, 9, 12)) is None
    assert due_run(runs, jst(2026, 11, 10, 9)).tag.endswith("annai")  # type: ignore[union-attr]
    # down from 3/16 to 3/25 10:00: D-14 (3/17) and D-7 (3/24) were missed; only D-7 goes
    assert due_run(runs, jst(2027, 3, 25, 10)).tag.endswith("D-7")  # type: ignore[union-attr]


def test_reminders_that_would_go_out_before_reporting_opens_are_found() -> None:
    """受付開始 2027-01-13, deadline 2027-02-26: D-45 (1/12) is too early, and so is D-46
    (1/11 is 成人の日, so 1/12); D-44 (1/13) is not. With no start of its own the period
    opens on 1月1日: D-60 (12/28) is early, D-55 (1/2, sent 1/4) is not."""
    deadline = date(2027, 2, 26)
    opens = period_opens(date(2027, 1, 13), deadline)
    early = early_reminders(settings(reminder_days=[7, 44, 45, 46]), deadline, opens)
    assert early == [(46, date(2027, 1, 12)), (45, date(2027, 1, 12))]
    assert period_opens(None, deadline) == date(2027, 1, 1)
    statutory = early_reminders(settings(reminder_days=[60, 55]), deadline,
                                period_opens(None, deadline))
    assert statutory == [(60, date(2026, 12, 28))]


def test_a_run_missed_longer_than_the_catch_up_is_given_up() -> None:
    """The scheduler sends a missed run late for CATCH_UP (14 days), not after: the one rule
    that `calendar show` reads too."""
    annai = cycle_runs(settings(), date(2027, 3, 31))[0]
    assert CATCH_UP == timedelta(days=14)
    assert not too_late(annai, annai.at + CATCH_UP)
    assert too_late(annai, annai.at + CATCH_UP + timedelta(minutes=1))


def test_calendar_show_says_a_given_up_run_is_not_sent_and_how_to_send_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    """An operator test: a 案内 date 30 days back was marked 「← 現在」 though the scheduler
    never plans it. It now says so, and names the manual command."""
    pref = Prefecture(code="26", name="京都府", period_end=date(2027, 3, 31))
    cadence = settings()
    annai = cycle_runs(cadence, date(2027, 3, 31))[0]
    now = annai.at + timedelta(days=30)
    show_calendar(pref, cadence, now, missed=annai)
    out = capsys.readouterr().out
    [line] = [ln for ln in out.splitlines() if "定期報告の案内" in ln]
    assert line.endswith("← 未送信（自動では送りません）") and "← 現在" not in out
    assert ("予定日から14日以上過ぎたため、自動では送りません。送る場合は campaign plan "
            "--prefecture 26 --kind annai で計画し" in out)
    show_calendar(pref, cadence, annai.at + timedelta(days=13), missed=None)  # still sent late
    out = capsys.readouterr().out
    assert "annai  ← 現在" in out and "自動では送りません" not in out
