"""A prefecture's campaign calendar for one reporting cycle, as a list of dated runs.

案内 on a configured date (default 11/10) before the deadline; 督促 at D-30, D-14, D-7,
D-3 and D-1 and then every 7 days after the deadline (8 times by default). Each run is
moved to the next allowed sending slot (business day, sending hours); a reminder that
would land after the deadline is dropped, and runs that land on the same slot collapse
into the later one. Tags name a run stably ("2027-03-31:D-7") so a schedule that fires
twice, or again after a restart, plans one campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import CampaignSettings
from scheduler.calendar import slot_on

# A run missed longer ago than this is not sent late: a 案内 or 督促 weeks after its date
# would arrive out of the blue. The scheduler (jobs.sync_jobs) and `calendar show` both
# read it from here.
CATCH_UP = timedelta(days=14)


async def settings_for(session: AsyncSession, code: str) -> CampaignSettings:
    """The prefecture's cadence, or the defaults when it has none."""
    return await session.get(CampaignSettings, code) or CampaignSettings(prefecture_code=code)


@dataclass(frozen=True)
class Run:
    kind: str  # annai | dunning
    tag: str
    day: date  # the nominal day before shifting to a slot
    at: datetime  # the first allowed moment to send


def annai_day(settings: CampaignSettings, deadline: date) -> date:
    """The configured month/day falling last before the deadline (November for a March one)."""
    candidate = date(deadline.year, settings.annai_month, settings.annai_day)
    if candidate >= deadline:
        candidate = date(deadline.year - 1, settings.annai_month, settings.annai_day)
    return candidate


def cycle_runs(settings: CampaignSettings, deadline: date, start_hour: int = 9,
               end_hour: int = 17) -> list[Run]:
    """Every run of the cycle that ends on `deadline`, in time order."""
    nominal = [("annai", "annai", annai_day(settings, deadline))]
    nominal += [("dunning", f"D-{n}", deadline - timedelta(days=n))
                for n in sorted(set(settings.reminder_days), reverse=True) if n > 0]
    every = max(1, settings.after_deadline_every_days)
    nominal += [("dunning", f"D+{k * every}", deadline + timedelta(days=k * every))
                for k in range(1, settings.after_deadline_count + 1)]
    runs: dict[datetime, Run] = {}
    for kind, label, day in nominal:
        at = slot_on(day, start_hour, end_hour)
        if label.startswith("D-") and at.date() > deadline:
            continue  # a reminder before the deadline must not arrive after it
        runs[at] = Run(kind, f"{deadline.isoformat()}:{label}", day, at)  # later label wins
    return sorted(runs.values(), key=lambda r: r.at)


def period_opens(start: date | None, deadline: date) -> date:
    """The day reporting opens: the prefecture's own 受付開始, else 1月1日 of the deadline's
    year (the statutory start)."""
    return start or date(deadline.year, 1, 1)


def early_reminders(settings: CampaignSettings, deadline: date, opens: date,
                    start_hour: int = 9, end_hour: int = 17) -> list[tuple[int, date]]:
    """(days before the deadline, day it is sent) of each 督促 that would go out before
    reporting opens: it would chase clinics that cannot report yet (and a past one would
    show as sent). Each offset on its own, even where cycle_runs would merge two."""
    sends = [(n, slot_on(deadline - timedelta(days=n), start_hour, end_hour).date())
             for n in sorted(set(settings.reminder_days), reverse=True) if n > 0]
    return [(n, day) for n, day in sends if day < opens]


def due_run(runs: list[Run], now: datetime) -> Run | None:
    """The latest run whose slot has come: after downtime, only it is sent, once."""
    due = [r for r in runs if r.at <= now]
    return due[-1] if due else None


def too_late(run: Run, now: datetime) -> bool:
    """True when `run`'s slot passed more than CATCH_UP ago: the scheduler no longer plans
    it, so only a campaign planned by hand sends it."""
    return now - run.at > CATCH_UP
