"""The campaign scheduler: APScheduler 3 (AsyncIOScheduler) with its SQLAlchemy job store in
our database (a sibling file on SQLite: db.engine.job_store_url), run by whichever process
holds the lease (scheduler.leader).

Jobs come from each prefecture's calendar (scheduler.cadence): one date job per run
("run:26:2027-03-31:D-7"), a weekday job for the 差し戻し sweep, and one that closes
finished campaigns. The staff desk adds, for each prefecture with a Slack channel, the
9:00 JST digest on business days and a sweep that reminds unclaimed escalations. Job
functions are module-level and take ids only; they find the process's database and clock
through the runtime the scheduler installs when it starts.

Downtime: date jobs keep `misfire_grace_time` of a week, so runs missed while the process
was down fire late — and a run that finds a later run of its cycle already due does nothing
(superseded), so a restart sends what was missed once. The weekday sweep uses `coalesce`.
Start-up adds missing jobs without `replace_existing` (that would drop missed runs) and
reschedules only those whose date changed in the calendar.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.engine import job_store_url
from db.models import CampaignSettings, Prefecture
from handlers.desk_digest import enqueue_digest
from handlers.desk_sla import remind_unclaimed
from scheduler import campaigns
from scheduler.cadence import CATCH_UP, Run, cycle_runs, due_run, settings_for, too_late
from scheduler.calendar import JST, is_business_day, sending_hours
from scheduler.leader import release, try_lead
from scheduler.tasks import cancel_and_wait

logger = logging.getLogger(__name__)
LEASE_NAME = "campaign-scheduler"
# A stored run job found late on start-up fires within the same window; a shorter grace
# would drop it as misfired, and sync_jobs re-adds only runs the store no longer holds.
MISFIRE_GRACE = int(CATCH_UP.total_seconds())
DIGEST_HOUR = 9  # JST, business days
SLA_EVERY_MINUTES = 15


@dataclass(frozen=True)
class Runtime:
    sessions: Callable[[], AsyncSession]
    clock: Callable[[], datetime]
    on_queued: Callable[[], None] = lambda: None
    sla_hours: float = 4.0  # business hours an escalation may stay unclaimed


_runtime: list[Runtime] = []  # the one runtime of this process, installed by start()


def runtime() -> Runtime:
    if not _runtime:
        raise RuntimeError("the campaign scheduler is not running in this process")
    return _runtime[-1]


# ---- job functions (module level, ids only) ------------------------------------------


async def fire_run(prefecture_code: str, kind: str, tag: str) -> int | None:
    """A calendar run is due: plan its campaign unless a later run supersedes it."""
    rt = runtime()
    now = rt.clock()
    async with rt.sessions() as session:
        pref = await session.get(Prefecture, prefecture_code)
        cadence = await settings_for(session, prefecture_code)
        if pref is None or pref.period_end is None or not cadence.enabled:
            return None
        due = due_run(cycle_runs(cadence, pref.period_end, *sending_hours(pref)), now)
        if due is None or due.tag != tag:
            logger.info("run %s/%s not sent: superseded by %s", prefecture_code, tag,
                        due.tag if due else "nothing due yet")
            return None
        if (done := await campaigns.find_run(session, prefecture_code, kind, tag)) and (
                done.run_tag != tag):
            logger.info("run %s/%s not sent: this cycle's 案内 is campaign %s (%s)",
                        prefecture_code, tag, done.id, done.run_tag)
            return None
        try:
            result = await campaigns.plan(session, prefecture_code, kind, tag, now)
        except campaigns.CampaignError as exc:  # e.g. a 督促 slot before 受付開始
            # Raising would only log a traceback (and a restart would add the run again):
            # skip it, and say why for the operator.
            logger.warning("run %s/%s not planned: %s", prefecture_code, tag, exc)
            return None
        if result.created:
            await _next_step(session, result.campaign, cadence, now)
    rt.on_queued()
    return result.campaign.id


async def sweep_returned(prefecture_code: str) -> int | None:
    """Daily: chase 差し戻し not resubmitted after N business days."""
    rt = runtime()
    now = rt.clock()
    async with rt.sessions() as session:
        cadence = await settings_for(session, prefecture_code)
        if not cadence.enabled:
            return None
        result = await campaigns.plan_returned(session, prefecture_code, now,
                                               cadence.returned_after_business_days)
        if result is None or not result.created:
            return None
        await _next_step(session, result.campaign, cadence, now)
    rt.on_queued()
    return result.campaign.id


async def finish_campaigns() -> list[int]:
    rt = runtime()
    async with rt.sessions() as session:
        done = await campaigns.finish_done(session, rt.clock())
    if done:
        rt.on_queued()
    return done


async def send_digest(prefecture_code: str) -> bool:
    """9:00 JST: the staff desk's daily digest, on business days only (once a day)."""
    rt = runtime()
    now = rt.clock()
    if not is_business_day(now.astimezone(JST).date()):
        return False
    queued = await enqueue_digest(rt.sessions, prefecture_code, now)
    if queued:
        rt.on_queued()
    return queued


async def remind_escalations() -> int:
    """Every few minutes: remind each prefecture's unclaimed escalations in their threads
    (each escalation and level once, so running often is harmless)."""
    rt = runtime()
    now = rt.clock()
    async with rt.sessions() as session:
        codes = (await session.exec(select(Prefecture.code).where(
            col(Prefecture.slack_channel).is_not(None)))).all()
    queued = 0
    for code in codes:
        queued += await remind_unclaimed(rt.sessions, code, now, rt.sla_hours)
    if queued:
        rt.on_queued()
    return queued


async def _next_step(session: AsyncSession, campaign: campaigns.Campaign,
                     cadence: CampaignSettings, now: datetime) -> None:
    if campaign.recipients == 0 and campaign.unlinked == 0:
        return
    if cadence.auto_send:
        await campaigns.approve(session, campaign, "auto", now)
    else:
        await campaigns.request_preview(session, campaign, now)


# ---- keeping the job store in line with the calendars ---------------------------------


async def sync_jobs(scheduler: AsyncIOScheduler, session: AsyncSession, now: datetime) -> int:
    """Add missing jobs, move changed ones, drop stale ones; returns how many were added.
    Reads everything first and ends the transaction before the (synchronous) job store
    writes, so the two connections never wait on each other (SQLite)."""
    dated: list[tuple[str, datetime | None, tuple[str, str, str]]] = []
    sweeps: list[tuple[str, int]] = []
    desks = list((await session.exec(select(Prefecture.code).where(
        col(Prefecture.slack_channel).is_not(None)))).all())
    prefs = (await session.exec(select(Prefecture).where(
        col(Prefecture.period_end).is_not(None)))).all()
    for pref in prefs:
        cadence = await settings_for(session, pref.code)
        if not cadence.enabled:
            continue
        assert pref.period_end is not None
        runs = cycle_runs(cadence, pref.period_end, *sending_hours(pref))
        due = due_run(runs, now)
        for run in runs:
            late = (run is due and not too_late(run, now)
                    and await campaigns.find_run(session, pref.code, run.kind, run.tag) is None)
            if (run.at > now or late) and not _refused(pref, run, now):
                dated.append((f"run:{pref.code}:{run.tag}", None if run.at <= now else run.at,
                              (pref.code, run.kind, run.tag)))
        sweeps.append((pref.code, sending_hours(pref)[0]))
    await session.commit()
    added = sum(_ensure_date_job(scheduler, job_id, at, args) for job_id, at, args in dated)
    for code, hour in sweeps:
        if scheduler.get_job(f"returned:{code}") is None:
            scheduler.add_job(sweep_returned, "cron", id=f"returned:{code}", args=(code,),
                              day_of_week="mon-fri", hour=hour, minute=5, timezone=JST,
                              coalesce=True, misfire_grace_time=8 * 3600)
            added += 1
    if scheduler.get_job("finish") is None:
        scheduler.add_job(finish_campaigns, "interval", id="finish", minutes=1, coalesce=True)
    added += _ensure_desk_jobs(scheduler, desks)
    wanted = ({"finish", "sla"} | {j for j, _, _ in dated} | {f"returned:{c}" for c, _ in sweeps}
              | {f"digest:{c}" for c in desks})
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            job.remove()
    return added


def _refused(pref: Prefecture, run: Run, now: datetime) -> bool:
    """A run that campaigns.plan would refuse when it fires (a 督促 before 受付開始, from
    offsets saved before the calendar checked them) gets no job, and a stored one goes:
    it would only fail each time the jobs are synced. A late run fires now, so that is
    the slot checked for it."""
    refusal = campaigns.too_early(pref, run.kind, max(run.at, now))
    if refusal:
        logger.warning("run %s/%s not scheduled: %s", pref.code, run.tag, refusal)
    return refusal is not None


def _ensure_desk_jobs(scheduler: AsyncIOScheduler, desks: list[str]) -> int:
    """The digest per prefecture with a Slack channel, and one SLA sweep for all."""
    added = 0
    for code in desks:
        if scheduler.get_job(f"digest:{code}") is None:
            scheduler.add_job(send_digest, "cron", id=f"digest:{code}", args=(code,),
                              hour=DIGEST_HOUR, minute=0, timezone=JST, coalesce=True,
                              misfire_grace_time=3 * 3600)
            added += 1
    if scheduler.get_job("sla") is None:
        scheduler.add_job(remind_escalations, "interval", id="sla", minutes=SLA_EVERY_MINUTES,
                          coalesce=True)
    return added


def _ensure_date_job(scheduler: AsyncIOScheduler, job_id: str, at: datetime | None,
                     args: tuple[str, str, str]) -> int:
    job = scheduler.get_job(job_id)
    if job is None:
        scheduler.add_job(fire_run, "date", id=job_id, run_date=at, args=args,
                          misfire_grace_time=MISFIRE_GRACE, coalesce=True)
        return 1
    if at is not None and job.next_run_time is not None and job.next_run_time != at:
        job.reschedule("date", run_date=at)  # the prefecture's calendar changed
    return 0


async def calendars_seen(session: AsyncSession) -> str:
    """A digest of everything the jobs are derived from: each prefecture's period (受付開始
    too: a 督促 before it gets no job), sending hours and Slack channel, and its cadence."""
    prefs = (await session.exec(select(
        Prefecture.code, Prefecture.period_start, Prefecture.period_end,
        Prefecture.send_start_hour,
        Prefecture.send_end_hour, Prefecture.slack_channel).order_by(col(Prefecture.code)))).all()
    cadences = (await session.exec(select(CampaignSettings).order_by(
        col(CampaignSettings.prefecture_code)))).all()
    text = repr([tuple(p) for p in prefs]) + repr([c.model_dump() for c in cadences])
    return hashlib.sha256(text.encode()).hexdigest()


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class CampaignScheduler:
    """Runs in every process; fires schedules only while it holds the lease."""

    def __init__(self, sessions: Callable[[], AsyncSession], database_url: str,
                 clock: Callable[[], datetime], *, on_queued: Callable[[], None] = lambda: None,
                 sla_hours: float = 4.0, holder: str | None = None, lease_ttl: float = 60.0,
                 renew_every: float = 20.0,
                 ) -> None:
        self._rt = Runtime(sessions, clock, on_queued, sla_hours)
        self._url = job_store_url(database_url)
        self._holder = holder or holder_id()
        self._ttl, self._every = timedelta(seconds=lease_ttl), renew_every
        self._task: asyncio.Task[None] | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.leading = asyncio.Event()
        self._seen = ""  # calendars and channels the jobs were last brought in line with

    async def start(self) -> None:
        _runtime.append(self._rt)
        await self.tick()
        self._task = asyncio.create_task(self._loop(), name="campaign-scheduler")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._stop_scheduler()
        async with self._rt.sessions() as session:
            await release(session, LEASE_NAME, self._holder, self._rt.clock())
        if self._rt in _runtime:
            _runtime.remove(self._rt)

    async def tick(self) -> None:
        """Renew or take the lease; start or stop the APScheduler accordingly. While leading,
        bring the jobs in line with the calendars, so a change made with the CLI (`calendar
        set`, `slack-channel`) reaches a running bot within one renewal."""
        async with self._rt.sessions() as session:
            lead = await try_lead(session, LEASE_NAME, self._holder, self._rt.clock(),
                                  self._ttl)
        if lead and self.scheduler is not None:
            async with self._rt.sessions() as session:
                seen = await calendars_seen(session)
                if seen != self._seen:  # the job store is synchronous: touch it only then
                    await sync_jobs(self.scheduler, session, self._rt.clock())
                    self._seen = seen
        elif lead:
            self.scheduler = self._build()
            self.scheduler.start(paused=True)  # no job fires before the store is in line
            async with self._rt.sessions() as session:
                self._seen = await calendars_seen(session)
                added = await sync_jobs(self.scheduler, session, self._rt.clock())
            self.scheduler.resume()
            logger.info("campaign scheduler: leading as %s (%d jobs added)", self._holder,
                        added)
            self.leading.set()
        elif self.scheduler is not None:
            logger.warning("campaign scheduler: lease lost; stopping schedules here")
            self._stop_scheduler()

    def _build(self) -> AsyncIOScheduler:
        store = SQLAlchemyJobStore(url=self._url, engine_options={"pool_pre_ping": True})
        return AsyncIOScheduler(jobstores={"default": store}, timezone=JST,
                                job_defaults={"coalesce": True,
                                              "misfire_grace_time": MISFIRE_GRACE,
                                              "max_instances": 1})

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
            self.leading.clear()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.tick()
            except Exception:  # the database may be away for a moment
                logger.exception("campaign scheduler: lease renewal failed")
