"""The campaign scheduler: one leader, calendar runs, catch-up after downtime sends once."""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import select

from db.models import Campaign, CampaignSettings, Outbox, Prefecture
from handlers.context import Context
from scheduler import jobs
from scheduler.calendar import JST
from scheduler.leader import release, try_lead
from tests.conftest import DEMO_PREF, NOW, update_prefecture
from tests.test_campaign import add_clinics
from tests.test_desk_sla import new_escalation

TTL = timedelta(seconds=60)
LATE_MARCH = datetime(2027, 3, 25, 10, tzinfo=JST)  # after D-7 (3/24), before D-3 (3/29)


async def test_only_one_process_holds_the_lease(ctx: Context) -> None:
    async with ctx.session() as session:
        assert await try_lead(session, "s", "A", NOW, TTL)
        assert not await try_lead(session, "s", "B", NOW + timedelta(seconds=30), TTL)
        assert await try_lead(session, "s", "A", NOW + timedelta(seconds=30), TTL)  # renew
        assert not await try_lead(session, "s", "B", NOW + timedelta(seconds=80), TTL)
        assert await try_lead(session, "s", "B", NOW + timedelta(seconds=91), TTL)  # expired
        assert not await try_lead(session, "s", "A", NOW + timedelta(seconds=92), TTL)
        await release(session, "s", "B", NOW + timedelta(seconds=93))
        assert await try_lead(session, "s", "A", NOW + timedelta(seconds=94), TTL)


async def set_deadline(ctx: Context, deadline: date, **cadence: object) -> None:
    async with ctx.session() as session:
        pref = await session.get(Prefecture, DEMO_PREF)
        assert pref is not None
        pref.period_end = deadline
        session.add(pref)
        if cadence:
            session.add(CampaignSettings(prefecture_code=DEMO_PREF, **cadence))  # type: ignore[arg-type]
        await session.commit()


async def all_campaigns(ctx: Context) -> list[Campaign]:
    async with ctx.session() as session:
        return list((await session.exec(select(Campaign))).all())


def install(ctx: Context, now: datetime) -> jobs.Runtime:
    rt = jobs.Runtime(ctx.sessions, lambda: now)
    jobs._runtime.append(rt)
    return rt


async def test_a_superseded_run_sends_nothing_and_a_due_run_once(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告", "未報告"])
    await set_deadline(ctx, date(2027, 3, 31))
    rt = install(ctx, LATE_MARCH)
    try:
        assert await jobs.fire_run(DEMO_PREF, "dunning", "2027-03-31:D-14") is None
        first = await jobs.fire_run(DEMO_PREF, "dunning", "2027-03-31:D-7")
        assert await jobs.fire_run(DEMO_PREF, "dunning", "2027-03-31:D-7") == first
    finally:
        jobs._runtime.remove(rt)
    [campaign] = await all_campaigns(ctx)
    assert campaign.status == "previewed" and campaign.recipients == 2
    async with ctx.session() as session:
        [preview] = (await session.exec(select(Outbox).where(
            Outbox.kind == "campaign_preview"))).all()
    assert preview.channel == "slack" and preview.payload["campaign_id"] == campaign.id


async def test_auto_send_prefectures_skip_the_preview(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告"])
    await set_deadline(ctx, date(2027, 3, 31), auto_send=True)
    rt = install(ctx, LATE_MARCH)
    try:
        await jobs.fire_run(DEMO_PREF, "dunning", "2027-03-31:D-7")
    finally:
        jobs._runtime.remove(rt)
    [campaign] = await all_campaigns(ctx)
    assert campaign.status == "sending" and campaign.approved_by == "auto"


@pytest.mark.parametrize("outage_days", [1, 10])
async def test_downtime_catch_up_fires_once_through_the_persisted_job_store(
        ctx: Context, database_url: str, outage_days: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs for D-14 and D-7 were persisted, then the process was down over both. On start
    the job store still holds them: D-14 is superseded (dropped), D-7 fires late, once
    (misfire grace, as long as the catch-up window: a 10-day outage still sends it); a
    second restart adds no job for it again. Every call of the stored jobs is recorded: the
    store resolves its `scheduler.jobs:fire_run` reference when it loads, so a superseded
    D-14 that ran (and, being superseded, created nothing) would show here too."""
    await add_clinics(ctx, ["未報告"] * 3)
    await set_deadline(ctx, date(2027, 3, 31))
    real_now = datetime.now(UTC)
    first = jobs.CampaignScheduler(ctx.sessions, database_url, lambda: LATE_MARCH,
                                   holder="A", renew_every=3600)
    store = first._build()
    store.start(paused=True)
    for tag, days in (("D-14", outage_days + 5), ("D-7", outage_days)):
        store.add_job(jobs.fire_run, "date", id=f"run:{DEMO_PREF}:2027-03-31:{tag}",
                      run_date=real_now - timedelta(days=days),
                      args=(DEMO_PREF, "dunning", f"2027-03-31:{tag}"),
                      misfire_grace_time=jobs.MISFIRE_GRACE)
    store.shutdown(wait=False)  # "the process went down"

    called: list[str] = []
    original = jobs.fire_run

    @functools.wraps(original)  # same module:name, so jobs added later still serialize
    async def recording(prefecture_code: str, kind: str, tag: str) -> int | None:
        called.append(tag.rsplit(":", 1)[1])
        return await original(prefecture_code, kind, tag)

    monkeypatch.setattr(jobs, "fire_run", recording)
    done: list[JobExecutionEvent] = []
    fired = asyncio.Event()

    def listen(event: JobExecutionEvent) -> None:
        if event.job_id.startswith("run:"):
            done.append(event)
            if event.code != EVENT_JOB_MISSED:
                fired.set()

    build = first._build

    def build_with_listener() -> AsyncIOScheduler:
        scheduler = build()
        scheduler.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        return scheduler

    first._build = build_with_listener  # type: ignore[method-assign]
    await first.start()
    try:
        assert first.scheduler is not None
        async with asyncio.timeout(10):
            await fired.wait()
        # Both were due in the same pass, D-14 first, and asyncio starts tasks in order: had
        # D-14 been run or missed, it would be recorded by the time D-7 has finished.
        assert [(e.job_id.rsplit(":", 1)[1], e.code, e.exception) for e in done] == [
            ("D-7", EVENT_JOB_EXECUTED, None)]
        assert called == ["D-7"]
        ids = {j.id for j in first.scheduler.get_jobs()}
        # Gone from the store, so it cannot fire later; the single campaign below shows it
        # did not fire earlier either.
        assert f"run:{DEMO_PREF}:2027-03-31:D-14" not in ids
        assert f"run:{DEMO_PREF}:2027-03-31:D-3" in ids and f"returned:{DEMO_PREF}" in ids
    finally:
        await first.stop()
    [campaign] = await all_campaigns(ctx)
    assert campaign.run_tag == "2027-03-31:D-7"

    second = jobs.CampaignScheduler(ctx.sessions, database_url, lambda: LATE_MARCH,
                                    holder="B", renew_every=3600)
    await second.start()
    try:
        assert second.leading.is_set() and second.scheduler is not None
        ids = {j.id for j in second.scheduler.get_jobs()}
        assert f"run:{DEMO_PREF}:2027-03-31:D-7" not in ids  # done: not re-added
    finally:
        await second.stop()
    assert len(await all_campaigns(ctx)) == 1


async def test_a_second_process_does_not_schedule_while_the_first_leads(
        ctx: Context, database_url: str) -> None:
    await set_deadline(ctx, date(2027, 3, 31))
    a = jobs.CampaignScheduler(ctx.sessions, database_url, lambda: NOW, holder="A",
                               renew_every=3600)
    b = jobs.CampaignScheduler(ctx.sessions, database_url, lambda: NOW, holder="B",
                               renew_every=3600)
    await a.start()
    await b.start()
    try:
        assert a.scheduler is not None and b.scheduler is None
        await a.stop()
        await b.tick()  # A released the lease on stop: B takes over at its next renewal
        assert b.scheduler is not None
    finally:
        await a.stop()
        await b.stop()


async def map_channel(ctx: Context, channel: str) -> None:
    await update_prefecture(ctx, DEMO_PREF, slack_channel=channel)


async def test_desk_jobs_run_under_the_scheduler_and_follow_a_channel_mapped_later(
        ctx: Context, database_url: str) -> None:
    """The 9:00 JST digest and the SLA sweep are real scheduler jobs; a prefecture mapped
    to Slack while the bot runs gets its digest at the leader's next renewal."""
    s = jobs.CampaignScheduler(ctx.sessions, database_url, lambda: NOW, holder="A",
                               renew_every=3600)
    await s.start()
    try:
        assert s.scheduler is not None
        ids = {j.id for j in s.scheduler.get_jobs()}
        assert "sla" in ids and f"digest:{DEMO_PREF}" not in ids  # no Slack channel yet
        await map_channel(ctx, "C0KYOTO")
        await s.tick()
        digest = s.scheduler.get_job(f"digest:{DEMO_PREF}")
        assert digest is not None
        at = digest.next_run_time.astimezone(JST)
        assert (at.hour, at.minute) == (9, 0)
    finally:
        await s.stop()


async def test_digest_job_skips_holidays_and_queues_once_on_a_business_day(
        ctx: Context) -> None:
    await map_channel(ctx, "C0KYOTO")
    holiday = datetime(2026, 11, 23, 9, tzinfo=JST)  # 勤労感謝の日
    workday = datetime(2026, 11, 24, 9, tzinfo=JST)
    for now, queued in ((holiday, False), (workday, True), (workday, False)):
        rt = install(ctx, now)
        try:
            assert await jobs.send_digest(DEMO_PREF) is queued
        finally:
            jobs._runtime.remove(rt)
    async with ctx.session() as session:
        [row] = (await session.exec(select(Outbox).where(Outbox.kind == "digest"))).all()
    assert row.recipient == "C0KYOTO" and "2026-11-24" in row.idempotency_key


async def test_sla_job_reminds_an_unclaimed_escalation_in_its_thread(ctx: Context) -> None:

    await map_channel(ctx, "C0KYOTO")
    created = datetime(2026, 11, 24, 9, tzinfo=JST)
    await new_escalation(ctx, "u-sla", created)
    for hour, expected in ((12, 0), (14, 1), (15, 0)):  # 4 business hours by default
        rt = install(ctx, created.replace(hour=hour))
        try:
            assert await jobs.remind_escalations() == expected
        finally:
            jobs._runtime.remove(rt)


EARLY_OPENING = date(2027, 2, 1)  # the prefecture's own 受付開始
D70_SLOT = datetime(2027, 1, 20, 9, tzinfo=JST)  # D-70 of 3/31: a Wednesday, before it


async def early_reminder_saved(ctx: Context) -> None:
    """督促 offsets stored before `calendar set` checked them against 受付開始: D-70 falls
    before the prefecture's opening on 2/1, D-30 and D-7 after it."""
    await set_deadline(ctx, date(2027, 3, 31), reminder_days=[70, 30, 7])
    await update_prefecture(ctx, DEMO_PREF, period_start=EARLY_OPENING)


async def test_a_scheduled_dunning_before_opening_is_skipped_with_a_warning(
        ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """The job neither raises (a traceback for nothing) nor plans: plan() refuses it, and
    the warning says why in the words staff see."""
    await add_clinics(ctx, ["未報告"])
    await early_reminder_saved(ctx)
    rt = install(ctx, D70_SLOT + timedelta(hours=1))
    try:
        with caplog.at_level(logging.WARNING, logger="scheduler.jobs"):
            assert await jobs.fire_run(DEMO_PREF, "dunning", "2027-03-31:D-70") is None
    finally:
        jobs._runtime.remove(rt)
    assert await all_campaigns(ctx) == []
    async with ctx.session() as session:
        assert (await session.exec(select(Outbox))).all() == []
    [warning] = [r for r in caplog.records if r.name == "scheduler.jobs"]
    assert warning.levelno == logging.WARNING and "2027-03-31:D-70" in warning.getMessage()
    assert "督促は受付開始（2027年2月1日（月））より前には送れません" in warning.getMessage()


async def test_sync_gives_a_dunning_before_opening_no_job_and_drops_a_stored_one(
        ctx: Context) -> None:
    """A job for it would only be refused each time it fires (and be added again at each
    sync while due): none is kept. Missed while down until after opening, it is sent late
    like any missed run, since it would now go out in the period."""
    await early_reminder_saved(ctx)
    scheduler = AsyncIOScheduler(timezone=JST)
    scheduler.start(paused=True)
    d70, d30 = f"run:{DEMO_PREF}:2027-03-31:D-70", f"run:{DEMO_PREF}:2027-03-31:D-30"
    scheduler.add_job(jobs.fire_run, "date", id=d70, run_date=D70_SLOT,
                      args=(DEMO_PREF, "dunning", "2027-03-31:D-70"))  # stored earlier
    try:
        for now, scheduled in ((D70_SLOT - timedelta(days=10), False),  # still to come
                               (D70_SLOT + timedelta(hours=1), False),  # due now
                               (datetime(2027, 2, 2, 10, tzinfo=JST), True)):  # late, after
            async with ctx.session() as session:
                await jobs.sync_jobs(scheduler, session, now)
            ids = {j.id for j in scheduler.get_jobs()}
            assert (d70 in ids) is scheduled and d30 in ids, now
    finally:
        scheduler.shutdown(wait=False)


async def test_a_deadline_set_after_the_annai_went_out_does_not_send_it_again(
        ctx: Context) -> None:
    """The first roster import registers provisional dates; the 案内 goes out; then the
    operator sets the real deadline. The runs' tags name the deadline, so the 案内 run has
    a new tag: it is the same cycle's 案内 all the same, and clinics must not get it twice."""
    await add_clinics(ctx, ["未報告"])
    await set_deadline(ctx, date(2027, 3, 31))
    async with ctx.session() as session:
        cadence = await jobs.settings_for(session, DEMO_PREF)
    [annai] = [r for r in jobs.cycle_runs(cadence, date(2027, 3, 31)) if r.kind == "annai"]
    rt = install(ctx, annai.at + timedelta(hours=1))
    try:
        assert await jobs.fire_run(DEMO_PREF, "annai", annai.tag) is not None
    finally:
        jobs._runtime.remove(rt)
    await set_deadline(ctx, date(2027, 2, 26))  # the real deadline, five days later
    later = annai.at + timedelta(days=5)
    [moved] = [r for r in jobs.cycle_runs(cadence, date(2027, 2, 26)) if r.kind == "annai"]
    assert moved.tag != annai.tag and moved.at == annai.at  # the case at hand
    scheduler = AsyncIOScheduler(timezone=JST)
    scheduler.start(paused=True)
    try:
        async with ctx.session() as session:
            await jobs.sync_jobs(scheduler, session, later)
        assert f"run:{DEMO_PREF}:{moved.tag}" not in {j.id for j in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    rt = install(ctx, later)
    try:  # a job stored before the change fires all the same: it plans nothing either
        assert await jobs.fire_run(DEMO_PREF, "annai", moved.tag) is None
    finally:
        jobs._runtime.remove(rt)
    assert [c.run_tag for c in await all_campaigns(ctx)] == [annai.tag]
