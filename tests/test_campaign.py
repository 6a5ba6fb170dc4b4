"""Campaigns: planning from status, templates, approval, the pre-send re-check, reports."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest
from sqlmodel import col, select

from bot.campaign_admin import missed_run
from db.models import Campaign, ChatAccount, Institution, Outbox, Prefecture, StatusHistory
from handlers.context import Context
from handlers.rules import EXEMPTIONS, Facility, obligation
from scheduler import campaigns, templates
from scheduler.cadence import CATCH_UP, cycle_runs, settings_for
from scheduler.calendar import JST
from scheduler.outbox import Outcome, _own, claim, dispatch_due
from scheduler.policies import POLICIES
from tests.conftest import DEMO_PREF, NOW, update_prefecture

# NOW is before reporting opens (1月1日), when no 督促 may be planned: the tests that send
# one do it here, on a Wednesday at 10:00 inside the demo period (2027-01-01〜03-31).
IN_PERIOD = datetime(2027, 2, 17, 10, tzinfo=JST)
DEADLINE = date(2027, 3, 31)


async def add_clinics(ctx: Context, statuses: list[str], *, linked: bool = True,
                      prefix: str = "77") -> list[int]:
    """Clinics in the demo prefecture, each with one Telegram chat account when linked."""
    ids = []
    async with ctx.session() as session:
        for i, status in enumerate(statuses):
            inst = Institution(prefecture_code=DEMO_PREF, code=f"{prefix}{i:05d}",
                               name=f"テスト診療所{prefix}{i}", kind="clinic", status=status,
                               return_reason="未入力" if status == "差し戻し" else None)
            session.add(inst)
            await session.flush()
            if linked:
                session.add(ChatAccount(channel="telegram", external_user_id=f"{prefix}{i}",
                                        prefecture_code=DEMO_PREF, institution_id=inst.id,
                                        linked_at=NOW))
            ids.append(inst.id)
        await session.commit()
    return ids  # type: ignore[return-value]


async def outbox_rows(ctx: Context, **filters: object) -> list[Outbox]:
    async with ctx.session() as session:
        stmt = select(Outbox).order_by(col(Outbox.id))
        for name, value in filters.items():
            stmt = stmt.where(getattr(Outbox, name) == value)
        return list((await session.exec(stmt)).all())


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def __call__(self, row: Outbox) -> Outcome:
        self.sent.append(row.recipient)
        return Outcome("sent")


async def run_all(ctx: Context, sender: Recorder, at: object = IN_PERIOD, rounds: int = 5,
                  ) -> None:
    for _ in range(rounds):
        if not await dispatch_due(ctx.sessions, "telegram", sender, at, 100,  # type: ignore[arg-type]
                                  concurrency=8):
            return


async def test_plan_chases_unreported_linked_institutions_only(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告", "差し戻し", "報告済", "確認済", "紙受付"])
    await add_clinics(ctx, ["未報告", "未報告"], linked=False, prefix="88")
    async with ctx.session() as session:
        result = await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-7", IN_PERIOD)
    c = result.campaign
    assert result.created and c.recipients == 2
    # unlinked: the two "88" clinics plus the seeded demo ones still 未報告/差し戻し
    assert c.unlinked == 4
    rows = await outbox_rows(ctx, campaign_id=c.id)
    assert {r.recipient for r in rows} == {"770", "771"}
    assert all(r.status == "held" and r.kind == "campaign" for r in rows)
    assert "テスト診療所770 ご担当者さま" in rows[0].body
    assert "報告期限は" in rows[0].body and "{" not in rows[0].body
    assert "報告期限は2027年3月31日（水）です（あと42日）" in rows[0].body  # from 2/17
    async with ctx.session() as session:  # the same run planned again: nothing new
        again = await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-7", IN_PERIOD)
        csv_text = await campaigns.unlinked_csv(session, c)
    assert not again.created and again.campaign.id == c.id
    assert len(await outbox_rows(ctx)) == 2
    assert "テスト診療所880" in csv_text and "医療機関コード" in csv_text.splitlines()[0]


def refusal(opens: date) -> str:
    return (f"督促は受付開始（{templates.format_deadline(opens)}）より前には送れません。"
            "受付開始後にもう一度計画してください"
            "（受付開始は calendar set --start で変更できます）。")


async def campaign_and_outbox_counts(ctx: Context) -> tuple[int, int]:
    async with ctx.session() as session:
        return (len((await session.exec(select(Campaign))).all()),
                len((await session.exec(select(Outbox))).all()))


async def test_a_dunning_before_reporting_opens_is_refused_and_writes_nothing(
        ctx: Context) -> None:
    """The rule lives in plan(), so the CLI, Slack and the scheduled jobs all get it: no
    clinic is late before 受付開始. What counts is the slot it would go out in."""
    await add_clinics(ctx, ["未報告", "未報告"])
    async with ctx.session() as session:
        with pytest.raises(campaigns.CampaignError) as refused:
            await campaigns.plan(session, DEMO_PREF, "dunning", "t:early", NOW)
        assert str(refused.value) == refusal(date(2027, 1, 1))
        assert await campaign_and_outbox_counts(ctx) == (0, 0)
        annai = await campaigns.plan(session, DEMO_PREF, "annai", "t:annai", NOW)
        assert annai.created and annai.campaign.recipients == 2  # the 案内 goes before it
        later = await campaigns.plan(session, DEMO_PREF, "dunning", "t:later", NOW,
                                     send_at=IN_PERIOD)  # planned now, sent in February
        assert later.created and later.campaign.send_at == IN_PERIOD
        # 12/28 after hours: the next slot is 1/4 (12/29〜1/3 closed), after 1/1
        last_evening = datetime(2026, 12, 28, 18, tzinfo=JST)
        new_year = await campaigns.plan(session, DEMO_PREF, "dunning", "t:ny", last_evening)
        assert new_year.campaign.send_at == datetime(2027, 1, 4, 9, tzinfo=JST)
    assert await campaign_and_outbox_counts(ctx) == (3, 6)


async def test_a_planned_dunning_is_returned_even_after_opening_moved_later(
        ctx: Context) -> None:
    """Idempotence comes first: the same run asked again gets its campaign untouched; only a
    new one is checked against the prefecture's own 受付開始 (here moved to 3/1)."""
    await add_clinics(ctx, ["未報告"])
    async with ctx.session() as session:
        first = await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-42", IN_PERIOD)
    await update_prefecture(ctx, DEMO_PREF, period_start=date(2027, 3, 1))
    async with ctx.session() as session:
        again = await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-42", IN_PERIOD)
        assert not again.created and again.campaign.id == first.campaign.id
        with pytest.raises(campaigns.CampaignError, match="受付開始（2027年3月1日（月））"):
            await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-41",
                                 IN_PERIOD + timedelta(days=1))
    assert await campaign_and_outbox_counts(ctx) == (1, 1)


async def test_the_campaign_chases_exactly_those_the_chat_check_says_must_report(
        ctx: Context) -> None:
    """One exemption list (handlers.rules.EXEMPTIONS) for the chat's 報告対象 check and the
    campaign's SQL: every combination of flags gets the same verdict from both."""
    flags = list(itertools.product([False, True], repeat=len(EXEMPTIONS)))
    combos = [(kind, f) for kind in ("hospital", "clinic") for f in flags]
    ids = await add_clinics(ctx, ["未報告"] * len(combos), prefix="66")
    async with ctx.session() as session:
        for inst_id, (kind, combo) in zip(ids, combos, strict=True):
            inst = await session.get(Institution, inst_id)
            assert inst is not None
            inst.kind = kind
            for flag, value in zip(EXEMPTIONS, combo, strict=True):
                setattr(inst, flag, value)
            session.add(inst)
        await session.commit()
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:rules", IN_PERIOD)
             ).campaign
    chased = {r.recipient for r in await outbox_rows(ctx, campaign_id=c.id)}
    must = {f"66{i}" for i, (kind, combo) in enumerate(combos)
            if obligation(Facility(kind, **dict(zip(EXEMPTIONS, combo, strict=True))))
            .required}
    assert chased == must and len(must) == 2  # only the one with no exemption, of each kind
    assert chased == {f"66{combos.index((kind, (False,) * len(EXEMPTIONS)))}"
                      for kind in ("hospital", "clinic")}
    assert set(EXEMPTIONS) == {"special_function", "dental", "closed_on_jan1"}


async def test_nothing_leaves_before_approval_then_each_recipient_once(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告"] * 5)
    sender = Recorder()
    async with ctx.session() as session:
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-3", IN_PERIOD)).campaign
    await run_all(ctx, sender)
    assert sender.sent == []
    async with ctx.session() as session:
        assert await campaigns.approve(session, c, "U1", IN_PERIOD) == 5
        assert await campaigns.approve(session, c, "U1", IN_PERIOD) == 0  # a second press
    await run_all(ctx, sender)
    await run_all(ctx, sender, IN_PERIOD + timedelta(hours=1))
    assert sorted(sender.sent) == [f"77{i}" for i in range(5)]
    async with ctx.session() as session:
        assert await campaigns.finish_done(session, IN_PERIOD) == [c.id]
        assert await campaigns.finish_done(session, IN_PERIOD) == []
    [report] = await outbox_rows(ctx, kind="campaign_report")
    assert "送信済み：5件" in report.body and report.channel == "slack"


async def test_an_institution_that_reported_meanwhile_gets_nothing(ctx: Context) -> None:
    ids = await add_clinics(ctx, ["未報告", "未報告", "未報告", "未報告"])
    async with ctx.session() as session:
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-1", IN_PERIOD)).campaign
        await campaigns.approve(session, c, "U1", IN_PERIOD)
        reported = await session.get(Institution, ids[1])
        reported.status = "報告済"  # type: ignore[union-attr]
        account = (await session.exec(select(ChatAccount).where(
            ChatAccount.institution_id == ids[2]))).one()
        account.reachable = False  # blocked the bot after planning
        closed = await session.get(Institution, ids[3])
        closed.closed_on_jan1 = True  # type: ignore[union-attr]  # a roster re-import said 休院
        session.add_all([reported, account, closed])
        await session.commit()
    sender = Recorder()
    await run_all(ctx, sender)
    assert sender.sent == ["770"]
    async with ctx.session() as session:
        numbers = await campaigns.counts(session, c.id)  # type: ignore[arg-type]
    assert numbers == {"sent": 1, "skipped": 3}


async def test_outside_sending_hours_rows_wait_without_using_attempts(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告"])
    async with ctx.session() as session:
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:x", IN_PERIOD)).campaign
        await campaigns.approve(session, c, "U1", IN_PERIOD)
    evening = IN_PERIOD.replace(hour=18)
    sender = Recorder()
    await run_all(ctx, sender, evening)
    [row] = await outbox_rows(ctx, campaign_id=c.id)
    assert sender.sent == [] and row.status == "pending" and row.attempts == 0
    assert row.next_attempt_at.astimezone(JST) == evening.replace(hour=9) + timedelta(days=1)
    await run_all(ctx, sender, row.next_attempt_at)
    assert sender.sent == ["770"]


async def test_approval_outside_hours_starts_at_the_next_slot(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告"])
    saturday = IN_PERIOD.replace(day=20, hour=11)
    async with ctx.session() as session:
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:y", saturday)).campaign
        await campaigns.approve(session, c, "U1", saturday)
    [row] = await outbox_rows(ctx, campaign_id=c.id)
    assert row.next_attempt_at.astimezone(JST) == saturday.replace(day=22, hour=9)  # Monday


async def test_cancel_stops_what_has_not_gone(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告"] * 4)
    async with ctx.session() as session:
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:z", IN_PERIOD)).campaign
        await campaigns.approve(session, c, "U1", IN_PERIOD)
        claimed = await claim(session, "telegram", IN_PERIOD, 1)  # one is already being sent
        assert await campaigns.cancel(session, c, "U2", IN_PERIOD) == 3
        with pytest.raises(campaigns.CampaignError):
            await campaigns.approve(session, c, "U1", IN_PERIOD)
    sender = Recorder()
    await run_all(ctx, sender, IN_PERIOD + timedelta(minutes=5))  # the claimed lease ended
    assert sender.sent == [] and len(claimed) == 1
    async with ctx.session() as session:
        assert await campaigns.counts(session, c.id) == {  # type: ignore[arg-type]
            "cancelled": 3, "skipped": 1}


async def test_a_template_with_an_unknown_placeholder_is_refused_when_saved(
        ctx: Context) -> None:
    async with ctx.session() as session:
        with pytest.raises(templates.TemplateError, match="clinic_name"):
            await templates.save(session, DEMO_PREF, "dunning", "{clinic_name} 様、督促です。")
        with pytest.raises(templates.TemplateError):
            await templates.save(session, DEMO_PREF, "dunning", "期限 {deadline:>10} です")
        with pytest.raises(templates.TemplateError):
            await templates.save(session, DEMO_PREF, "dunning", "期限 {deadline です")
        assert await templates.get_body(session, DEMO_PREF, "dunning") == \
            templates.DEFAULTS["dunning"]
        await templates.save(session, DEMO_PREF, "dunning",
                             "{institution_name}様：期限は{deadline}（{days_left}）です。"
                             "\n{contact}{{注意}}")
    await add_clinics(ctx, ["未報告"])
    async with ctx.session() as session:
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:tpl", IN_PERIOD)).campaign
    [row] = await outbox_rows(ctx, campaign_id=c.id)
    assert row.body.startswith("テスト診療所770様：期限は")
    assert row.body.endswith("です。\n京都府 かかりつけ医機能報告 担当窓口{注意}")
    assert f"（あと{(DEADLINE - IN_PERIOD.date()).days}日）です。" in row.body


@pytest.mark.parametrize(("body", "line", "column", "says"), [
    ("{institution_name} 様\n期限は{deadlin}です。{contact}", 2, None,
     "使えない差し込み項目 {deadlin} があります。{deadline} のことでしょうか。"),
    ("{contact}\n\n期限は{deadline です", 3, 4, "「{」に対応する「}」がありません。"),
    ("{contact}\n期限は {deadline}} です", 2, 15, "「}」に対応する「{」がありません。"),
    ("{contact} {deadline!r}", 1, None, "書式指定は使えません"),
    ("{institution_name} 様\n期限は{deadline}です。", None, None,
     "差し込み項目 {contact}（都道府県の問い合わせ先）がありません。"),
])
def test_a_refused_template_says_where_in_japanese(body: str, line: int | None,
                                                   column: int | None, says: str) -> None:
    """The operator fixes the file from the message alone: its line and column, no Python
    wording ("expected '}'"), and {contact}, which nothing appends, is required."""
    with pytest.raises(templates.TemplateError) as refused:
        templates.validate(body)
    assert (refused.value.line, refused.value.column) == (line, column)
    assert says in refused.value.message and "expected" not in refused.value.message


async def test_returned_reminder_3_business_days_after_and_only_once(ctx: Context) -> None:
    ids = await add_clinics(ctx, ["差し戻し", "差し戻し"])
    returned_on = NOW.astimezone(JST).replace(day=20)  # Friday; 11/23 is a holiday
    async with ctx.session() as session:
        for inst_id in ids:
            session.add(StatusHistory(prefecture_code=DEMO_PREF, institution_id=inst_id,
                                      old_status="報告済", new_status="差し戻し",
                                      source_file="t.csv", changed_at=returned_on))
        await session.commit()
        tue = NOW  # 11/24: only 1 business day later
        assert await campaigns.plan_returned(session, DEMO_PREF, tue, 3) is None
        thu = NOW + timedelta(days=2)  # 11/26: the 3rd business day
        first = await campaigns.plan_returned(session, DEMO_PREF, thu, 3)
        assert first is not None and first.campaign.recipients == 2
        assert await campaigns.plan_returned(session, DEMO_PREF, thu + timedelta(days=1),
                                             3) is None  # already chased


async def claimed_campaign(ctx: Context, key: str) -> tuple[int, list[Outbox]]:
    """One approved campaign to one unreported clinic, its row claimed by a dispatcher."""
    await add_clinics(ctx, ["未報告"])
    async with ctx.session() as session:
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", key, IN_PERIOD)).campaign
        await campaigns.approve(session, c, "U1", IN_PERIOD)
        assert c.id is not None
        return c.id, await claim(session, "telegram", IN_PERIOD, 10)


async def test_a_lapsed_claim_cannot_send_an_at_most_once_row_twice(ctx: Context) -> None:
    """Dispatcher A claims, stalls past its lease; B re-claims and sends; A must not."""
    _, stale = await claimed_campaign(ctx, "t:cas")
    sender = Recorder()
    await run_all(ctx, sender, IN_PERIOD + timedelta(minutes=3))  # B
    assert await _own(ctx.sessions, stale, POLICIES, IN_PERIOD) == []  # A finds it taken
    assert sender.sent == ["770"]


async def test_a_row_in_flight_at_a_crash_is_never_resent(ctx: Context) -> None:
    campaign_id, rows = await claimed_campaign(ctx, "t:crash")
    assert len(await _own(ctx.sessions, rows, POLICIES, IN_PERIOD)) == 1  # ... and it dies
    sender = Recorder()
    await run_all(ctx, sender, IN_PERIOD + timedelta(minutes=10))
    [row] = await outbox_rows(ctx, campaign_id=campaign_id)
    assert sender.sent == [] and row.status == "uncertain"


async def test_campaigns_are_per_prefecture(ctx: Context) -> None:
    await add_clinics(ctx, ["未報告"])
    async with ctx.session() as session:
        session.add(Prefecture(code="13", name="東京都"))
        await session.commit()
        c = (await campaigns.plan(session, "13", "dunning", "t:tokyo", IN_PERIOD)).campaign
        with pytest.raises(campaigns.CampaignError):
            await campaigns.get(session, c.id, DEMO_PREF)  # type: ignore[arg-type]
    assert c.recipients == 0


async def test_a_row_pointing_into_another_prefecture_is_never_sent(ctx: Context) -> None:
    """A damaged or hand-edited outbox row whose campaign or institution belongs to another
    prefecture is skipped with its reason, not sent on the strength of the other's data."""
    await add_clinics(ctx, ["未報告", "未報告", "未報告"])
    async with ctx.session() as session:
        session.add(Prefecture(code="13", name="東京都"))
        await session.flush()
        tokyo_inst = Institution(prefecture_code="13", code="1300001", name="都内診療所",
                                 kind="clinic", status="未報告")
        session.add(tokyo_inst)
        await session.commit()
        tokyo = (await campaigns.plan(session, "13", "dunning", "t:tokyo", IN_PERIOD)
                 ).campaign
        c = (await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-1", IN_PERIOD)).campaign
        await campaigns.approve(session, c, "U1", IN_PERIOD)
        first, second, third = (await session.exec(
            select(Outbox).where(Outbox.campaign_id == c.id).order_by(col(Outbox.id)))).all()
        first.payload = {**first.payload, "campaign_id": tokyo.id}
        second.payload = {**second.payload, "institution_id": tokyo_inst.id}
        session.add_all([first, second])
        await session.commit()
        kept = third.recipient
    sender = Recorder()
    await run_all(ctx, sender)
    assert sender.sent == [kept]
    reasons = {row.recipient: row.last_error for row in await outbox_rows(ctx, status="skipped")}
    assert reasons == {first.recipient: "campaign not found",
                       second.recipient: "institution not found"}


async def test_a_given_up_run_is_missed_until_a_campaign_is_planned_by_hand(
        ctx: Context) -> None:
    """`calendar show` marks the due 案内 as not to be sent only while nothing will send it:
    past CATCH_UP (the scheduler's own rule) and with no campaign of its kind since its date."""
    async with ctx.session() as session:
        pref = await session.get(Prefecture, DEMO_PREF)
        cadence = await settings_for(session, DEMO_PREF)
        assert pref is not None and pref.period_end == DEADLINE
        annai = cycle_runs(cadence, DEADLINE)[0]
        assert await missed_run(session, pref, cadence, annai.at + CATCH_UP) is None
        late = annai.at + CATCH_UP + timedelta(days=1)
        assert await missed_run(session, pref, cadence, late) == annai
        await campaigns.plan(session, DEMO_PREF, "annai", "manual:late", late)
        assert await missed_run(session, pref, cadence, late) is None  # sent by hand


async def test_unsent_names_live_campaigns_with_messages_still_to_send(ctx: Context) -> None:
    """What `calendar set` warns about when the deadline or contact changes: messages were
    rendered at planning. A cancelled campaign or one with nothing left to send is not listed."""
    await add_clinics(ctx, ["未報告", "未報告"])
    async with ctx.session() as session:
        held = (await campaigns.plan(session, DEMO_PREF, "annai", "t:held", NOW)).campaign
        gone = (await campaigns.plan(session, DEMO_PREF, "annai", "t:gone", NOW)).campaign
        await campaigns.cancel(session, gone, "me", NOW)
        sending = (await campaigns.plan(session, DEMO_PREF, "annai", "t:send", NOW)).campaign
        await campaigns.approve(session, sending, "me", NOW)
        assert [(c.id, n) for c, n in await campaigns.unsent(session, DEMO_PREF)] == [
            (held.id, 2), (sending.id, 2)]
        assert await campaigns.unsent(session, "13") == []
