"""Linking a chat to an institution with a one-time code, then asking for its status."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from db.imports import import_report, import_roster, import_status
from db.models import ChatAccount, Escalation, Institution, LinkCode, Prefecture
from db.seed import ensure_prefecture
from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.linking import (
    ALPHABET,
    HOW_TO_LINK,
    end_of_day,
    expire_unused_codes,
    hash_code,
    issue_code,
    new_code,
    normalise_code,
    revoke_links,
    valid_through,
)
from handlers.messages import Inbound
from handlers.texts import WELCOME
from tests.conftest import NOW, update_prefecture

SAMPLES = Path(__file__).resolve().parent.parent / "docs" / "samples"


def said(text: str, user: str = "clerk-1") -> Inbound:
    return Inbound("demo", user, text=text, tenant="26")


async def load_samples(ctx: Context) -> None:
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
        await import_status(session, SAMPLES / "status.csv", "26", NOW)
        await import_report(session, SAMPLES / "report.csv", "26")


async def code_for(ctx: Context, inst_code: str, pref: str = "26", days: int = 120) -> str:
    async with ctx.session() as session:
        inst = (await session.exec(select(Institution).where(
            Institution.prefecture_code == pref, Institution.code == inst_code))).one()
        code, _ = await issue_code(session, inst, NOW, days)
        await session.commit()
    return code


def test_codes_are_typeable_and_strong() -> None:
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in list(codes)[:50]:
        raw = code.replace("-", "")
        assert len(raw) == 10 and not set(raw) & set("0O1IL")
        assert normalise_code(code.lower()) == raw
        assert normalise_code("".join(chr(ord(c) + 0xFEE0) for c in raw)) == raw  # full-width
    assert len(ALPHABET) ** 10 >= 2 ** 40
    assert normalise_code("ABCDE-FGHJ0") is None
    assert len(hash_code(code)) == 64 and code not in hash_code(code)


async def test_unlinked_user_is_told_how_to_link_and_sees_nothing(ctx: Context) -> None:
    await load_samples(ctx)
    [reply] = await dispatch(said("報告状況"), ctx)
    assert "連携コード" in reply.text
    assert "さくら" not in reply.text and "2610001" not in reply.text


async def test_link_then_status_shows_deadline_reason_and_judgement(ctx: Context) -> None:
    await load_samples(ctx)
    code = await code_for(ctx, "2610001")
    [linked] = await dispatch(said(f"連携 {code.lower()}"), ctx)
    assert "さくら内科クリニック" in linked.text and "完了" in linked.text
    [status] = await dispatch(said("/status"), ctx)
    # The status is the last file the prefecture imported, not G-MIS live: it says when.
    assert "報告状況：差し戻し（11月24日 10時時点の都道府県の記録）" in status.text
    assert "訪問診療の件数が未入力" in status.text and "再提出" in status.text
    # Not every clinic reports in G-MIS: a paper reporter is told how its correction goes.
    assert "紙の調査票で報告した場合は、都道府県からの連絡" in status.text
    assert "2027年3月31日" in status.text and "あと127日" in status.text
    assert "1号機能：あり" in status.text and "（ロ）入退院時の支援：なし" in status.text
    async with ctx.session() as session:
        stored = (await session.exec(select(LinkCode))).one()
    assert stored.used_at is not None and code.replace("-", "") not in stored.code_hash


async def test_code_is_single_use_but_several_staff_may_link(ctx: Context) -> None:
    await load_samples(ctx)
    code = await code_for(ctx, "2610002")
    [first] = await dispatch(said(f"連携 {code}", user="a"), ctx)
    [reuse] = await dispatch(said(f"連携 {code}", user="b"), ctx)
    # Said to be used (no try toward the lockout), never whose it was.
    assert "完了" in first.text and "すでに使用済み" in reuse.text and "みなみ" not in reuse.text
    [second] = await dispatch(said(f"連携 {await code_for(ctx, '2610002')}", user="b"), ctx)
    assert "完了" in second.text
    [status] = await dispatch(said("報告状況", user="b"), ctx)
    assert "確認済（体制あり）" in status.text and "公表" in status.text
    assert "1号機能：あり" in status.text  # the sample report agrees with the confirmation


async def test_a_code_pasted_alone_or_run_into_the_keyword_links(ctx: Context) -> None:
    """Clerks paste the code as the letter prints it; it was sent to staff as a question."""
    await load_samples(ctx)
    bare = await code_for(ctx, "2610002")
    [first] = await dispatch(said(bare, user="a"), ctx)
    joined = (await code_for(ctx, "2610002")).replace("-", "")
    [second] = await dispatch(said(f"連携{joined}", user="b"), ctx)
    assert "完了" in first.text and "完了" in second.text
    [wrong] = await dispatch(said("ABCDE-FGHJK", user="c"), ctx)  # a wrong code is a try
    assert "確認できませんでした" in wrong.text
    for pasted in ("「{}」", "コード：{}です", "連携コードは{}です", "連携 {} お願いします",
                   "てがみのコード {}", "案内に書いてあるコードは{}です"):
        code = (await code_for(ctx, "2610002")).replace("-", "–")  # an en dash, as pasted
        [linked] = await dispatch(said(pasted.format(code), user="d"), ctx)
        assert "完了" in linked.text, pasted


async def test_ten_ordinary_characters_are_no_try_at_a_code(ctx: Context) -> None:
    """Any ten letters and digits of the code alphabet once counted as a failed code: five
    such messages locked the real code out for an hour."""
    await load_samples(ctx)
    for text in ("update data", "2345678923", "ASDFGHJKZX", "MERRY XMAS 2", "9876543298"):
        [reply] = await dispatch(said(text, user="e"), ctx)
        assert "連携コードを確認できませんでした" not in reply.text, text
    # A question about a code that quotes one is answered about codes: no try either.
    [about] = await dispatch(said("連携コードABCDE-FGHJKが使えません。期限切れでしょうか",
                                  user="e"), ctx)
    assert about.meta["action"] == "link_help" and "再発行" in about.text
    [linked] = await dispatch(said(f"連携 {await code_for(ctx, '2610002')}", user="e"), ctx)
    assert "完了" in linked.text


async def test_expired_wrong_and_foreign_codes_get_the_same_answer(ctx: Context) -> None:
    await load_samples(ctx)
    expired = await code_for(ctx, "2610001", days=-1)
    replies = [
        (await dispatch(said(f"連携 {text}"), ctx))[0].text
        for text in (expired, "ABCDE-FGHJK", "'; DROP TABLE linkcode; --")
    ]
    assert len(set(replies)) == 1 and "確認できませんでした" in replies[0]
    # Words after 連携 are a question about the code, and no try toward the lockout.
    for _ in range(5):
        [about] = await dispatch(said("連携コード　まだ届いていません", user="clerk-2"), ctx)
        assert about.text.startswith("連携コードは、都道府県から届く案内")
    [linked] = await dispatch(said(f"連携 {await code_for(ctx, '2610002')}", user="clerk-2"), ctx)
    assert "完了" in linked.text


async def test_a_letters_code_still_links_after_the_last_reminder(ctx: Context) -> None:
    """Codes issued in November for a 3/31 deadline had expired 120 days later (3/24) while
    督促 ran into May to clinics holding them: they now cover the last 督促 and two weeks."""
    await load_samples(ctx)
    async with ctx.session() as session:
        day, last = await valid_through(session, "26", NOW, 120)
        inst = (await session.exec(select(Institution).where(
            Institution.code == "2610001"))).one()
        code, expires = await issue_code(session, inst, NOW, 120, expires=end_of_day(day))
        await session.commit()
    assert last is not None and last.tag == "2027-03-31:D+56"  # the cadence's last 督促
    assert day == date(2027, 6, 9) and expires.isoformat() == "2027-06-10T00:00:00+09:00"
    late = replace(ctx, clock=lambda: expires - timedelta(minutes=1))
    [linked] = await dispatch(said(f"連携 {code}"), late)
    assert "完了" in linked.text
    async with ctx.session() as session:  # issued after the season: the days rule alone
        assert await valid_through(session, "26", expires, 120) == (
            (expires + timedelta(days=120)).date(), None)


async def test_five_failures_lock_the_account_for_an_hour(ctx: Context) -> None:
    await load_samples(ctx)
    good = await code_for(ctx, "2610001")
    for _ in range(5):
        await dispatch(said("連携 ABCDE-FGHJK"), ctx)
    [locked] = await dispatch(said(f"連携 {good}"), ctx)
    assert "1時間" in locked.text
    later = replace(ctx, clock=lambda: NOW + timedelta(hours=1, minutes=1))
    [ok] = await dispatch(said(f"連携 {good}"), later)
    assert "完了" in ok.text


@pytest.mark.parametrize(("inst", "expected"), [
    ("2610003", "特定機能病院"), ("2610004", "歯科医療機関"), ("2610005", "休院")])
async def test_exempt_institutions_are_told_why(ctx: Context, inst: str, expected: str) -> None:
    await load_samples(ctx)
    async with ctx.session() as session:
        row = (await session.exec(select(Institution).where(Institution.code == inst))).one()
        code, _ = await issue_code(session, row, NOW, 120)
        await session.commit()
    await dispatch(said(f"連携 {code}"), ctx)
    [reply] = await dispatch(said("報告状況"), ctx)
    assert "対象外" in reply.text and expected in reply.text


async def test_overdue_deadline_and_unreported_next_step(ctx: Context) -> None:
    await load_samples(ctx)
    async with ctx.session() as session:
        pref = await session.get(Prefecture, "26")
        assert pref is not None
        pref.period_end = date(2026, 11, 20)
        session.add(pref)
        await session.commit()
        inst = (await session.exec(select(Institution).where(Institution.code == "2610001"))).one()
        inst.status = "未報告"
        session.add(inst)
        await session.commit()
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [reply] = await dispatch(said("報告状況"), ctx)
    assert "期限を4日過ぎています" in reply.text and "「報告」ボタン" in reply.text
    # A clerk who pressed 「報告」 after that file is not told they did not.
    assert "この記録より後に「報告」ボタンを押した場合は" in reply.text


async def test_link_in_one_prefecture_never_reads_another(ctx: Context) -> None:
    await load_samples(ctx)
    async with ctx.session() as session:
        await ensure_prefecture(session, "13", NOW.date(), "")
        session.add(Institution(prefecture_code="13", code="1310001", name="東京の秘密医院",
                                kind="clinic", status="確認済", confirmation="体制なし"))
        await session.commit()
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    async with ctx.session() as session:
        account = (await session.exec(select(ChatAccount))).one()
        tokyo = (await session.exec(select(Institution).where(
            Institution.prefecture_code == "13"))).one()
        account.institution_id = tokyo.id  # a corrupted link must still not leak across
        session.add(account)
        await session.commit()
    [reply] = await dispatch(said("報告状況"), ctx)
    assert "東京の秘密医院" not in reply.text and "体制なし" not in reply.text


async def test_deep_link_start_with_a_code_links_and_greets(ctx: Context) -> None:
    """t.me/<bot>?start=CODE arrives as `/start CODE`: the first message links the chat."""
    await load_samples(ctx)
    code = await code_for(ctx, "2610002")
    linked, welcome = await dispatch(said(f"/start {code}", user="qr"), ctx)
    assert "完了" in linked.text and welcome.text == WELCOME
    [status] = await dispatch(said("報告状況", user="qr"), ctx)
    assert "確認済（体制あり）" in status.text
    bad, _ = await dispatch(said("/start ABCDE-FGHJK", user="other"), ctx)
    assert "確認できませんでした" in bad.text  # counted as a failed attempt, like /link
    for plain in ("/start", "/start hello"):  # not a code: the usual greeting only
        [greeting] = await dispatch(said(plain, user="other"), ctx)
        assert greeting.text == WELCOME
    async with ctx.session() as session:
        rows = (await session.exec(select(ChatAccount).order_by(ChatAccount.id))).all()
    assert [(r.external_user_id, r.institution_id is not None) for r in rows] == [
        ("qr", True), ("other", False)]


async def test_the_lockout_lasts_an_hour_from_the_fifth_failure(ctx: Context) -> None:
    await load_samples(ctx)
    good = await code_for(ctx, "2610001")
    replies = []
    for minutes in (0, 10, 20, 30, 40):  # five failures spread over 40 minutes
        at = replace(ctx, clock=lambda m=minutes: NOW + timedelta(minutes=m))
        replies += await dispatch(said("連携 ABCDE-FGHJK"), at)
    # The fourth says the next failure locks; the fifth says it has locked.
    assert ["あと1回失敗すると" in r.text for r in replies] == [False, False, False, True, False]
    assert "1時間ほど連携を受け付けられません" in replies[-1].text
    still = replace(ctx, clock=lambda: NOW + timedelta(minutes=40 + 59))
    assert "1時間" in (await dispatch(said(f"連携 {good}"), still))[0].text
    after = replace(ctx, clock=lambda: NOW + timedelta(minutes=40 + 61))
    assert "完了" in (await dispatch(said(f"連携 {good}"), after))[0].text


async def test_staff_revoke_unlinks_only_their_own_institution(ctx: Context) -> None:
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    unused = await code_for(ctx, "2610001")  # a second letter, never used
    async with ctx.session() as session:
        assert await revoke_links(session, "13", "2610001", NOW) is None  # another prefecture
        assert await revoke_links(session, "26", "2610001", NOW) == (1, 1)
    [reply] = await dispatch(said("報告状況"), ctx)
    assert "連携" in reply.text and "さくら内科" not in reply.text
    [late] = await dispatch(said(f"連携 {unused}", user="other"), ctx)
    assert "確認できませんでした" in late.text


async def test_a_new_code_ends_the_unused_one_and_a_relink_says_what_changed(
        ctx: Context) -> None:
    """A lost or leaked letter must stop working once a new one is issued; and a chat that
    links to another institution is told so, not moved silently."""
    await load_samples(ctx)
    old = await code_for(ctx, "2610001")
    async with ctx.session() as session:
        inst = (await session.exec(select(Institution).where(
            Institution.code == "2610001"))).one()
        assert await expire_unused_codes(session, [inst.id], NOW) == 1  # type: ignore[list-item]
        await session.commit()
    [stale] = await dispatch(said(f"連携 {old}"), ctx)
    assert "確認できませんでした" in stale.text
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [linked] = await dispatch(said("連携"), ctx)
    assert "さくら内科クリニック 様と連携済み" in linked.text
    [moved] = await dispatch(said(f"連携 {await code_for(ctx, '2610002')}"), ctx)
    assert "みなみ総合病院 様との連携が完了" in moved.text
    assert "さくら内科クリニック 様との連携は解除" in moved.text


@pytest.mark.parametrize(("status", "label", "expected"), [
    ("報告済", "報告済（都道府県の確認待ち）", "内容（体制の有無）を確認しています"),
    ("紙受付", "紙報告受付（代理入力待ち）", "代理入力を進めています")])
async def test_reported_and_paper_statuses_say_what_happens_next(
        ctx: Context, status: str, label: str, expected: str) -> None:
    await load_samples(ctx)
    async with ctx.session() as session:
        inst = (await session.exec(select(Institution).where(
            Institution.code == "2610001"))).one()
        inst.status = status
        session.add(inst)
        await session.commit()
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [reply] = await dispatch(said("報告状況"), ctx)
    assert f"報告状況：{label}" in reply.text and expected in reply.text


async def test_with_a_key_codes_are_stored_keyed_and_old_codes_still_work(ctx: Context) -> None:
    """LINK_CODE_KEY: the stored hash is an HMAC (useless without the key); a code printed
    before the key was configured still links; a code hashed with another key does not."""
    await load_samples(ctx)
    key = b"prefecture-secret"
    keyed = replace(ctx, config=replace(ctx.config, link_code_key=key))
    async with ctx.session() as session:
        inst = (await session.exec(select(Institution).where(
            Institution.code == "2610001"))).one()
        new, _ = await issue_code(session, inst, NOW, 120, key)
        old, _ = await issue_code(session, inst, NOW, 120)
        other, _ = await issue_code(session, inst, NOW, 120, b"another-key")
        await session.commit()
        stored = set((await session.exec(select(LinkCode.code_hash))).all())
    assert hash_code(new, key) in stored and hash_code(new) not in stored
    assert "prefecture-secret" not in repr(keyed.config)  # the secret never reaches a log
    assert "完了" in (await dispatch(said(f"連携 {new}", "clerk-a"), keyed))[0].text
    assert "完了" in (await dispatch(said(f"連携 {old}", "clerk-b"), keyed))[0].text
    assert "完了" not in (await dispatch(said(f"連携 {other}", "clerk-c"), keyed))[0].text
    assert "完了" not in (await dispatch(said(f"連携 {new}", "clerk-d"), ctx))[0].text


async def set_period(ctx: Context, code: str, start: date | None, end: date | None) -> None:
    async with ctx.session() as session:
        pref = await session.get(Prefecture, code) or Prefecture(code=code, name="東京都")
        pref.period_start, pref.period_end = start, end
        session.add(pref)
        await session.commit()


async def test_an_answer_about_when_to_report_adds_the_linked_prefectures_own_period(
        ctx: Context) -> None:
    """The knowledge base can only say "1月1日〜3月31日, or as your prefecture sets"; for a
    linked clinic the chat knows the prefecture and adds its period, and only to such
    answers. An unlinked user gets none: the bot's default prefecture may not be theirs."""
    await load_samples(ctx)
    await set_period(ctx, "26", date(2027, 1, 13), date(2027, 2, 26))
    [unlinked] = await dispatch(said("締め切りっていつ", user="visitor"), ctx)
    assert unlinked.meta["entry_id"] == "schedule-reporting-period"
    assert "報告期限：" not in unlinked.text and "京都府" not in unlinked.text
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [kyoto] = await dispatch(said("締め切りっていつ"), ctx)
    assert "受付開始：2027年1月13日（京都府）" in kyoto.text
    assert "報告期限：2027年2月26日（京都府）　あと94日です。" in kyoto.text
    [other] = await dispatch(said("紙で報告できますか"), ctx)
    assert other.meta["action"] == "answer" and "報告期限：" not in other.text

    await set_period(ctx, "13", None, date(2027, 3, 5))
    async with ctx.session() as session:
        session.add(Institution(prefecture_code="13", code="1310001", name="都内クリニック",
                                kind="clinic", status="未報告"))
        await session.commit()
    await dispatch(said(f"連携 {await code_for(ctx, '1310001', pref='13')}", user="tokyo"), ctx)
    [tokyo] = await dispatch(said("締め切りっていつ", user="tokyo"), ctx)
    assert "報告期限：2027年3月5日（東京都）" in tokyo.text and "京都府" not in tokyo.text


async def test_no_period_is_added_once_it_has_passed_or_when_none_is_set(ctx: Context) -> None:
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    await set_period(ctx, "26", date(2026, 1, 1), date(2026, 3, 31))  # last cycle's
    [after] = await dispatch(said("締め切りっていつ"), ctx)
    assert after.meta["entry_id"] == "schedule-reporting-period"
    assert "報告期限：" not in after.text and "過ぎています" not in after.text
    await set_period(ctx, "26", None, None)
    [unset] = await dispatch(said("締め切りっていつ"), ctx)
    assert "報告期限：" not in unset.text


async def test_a_linked_clinics_hand_off_names_its_prefectures_contact(ctx: Context) -> None:
    await load_samples(ctx)
    await update_prefecture(ctx, "26", inquiry_contact="京都府医療政策課（075-000-0000）")
    await dispatch(said("明日の天気は", user="visitor"), ctx)
    [unlinked] = await dispatch(said("担当者に聞く", user="visitor"), ctx)
    # Not linked: the bot's default prefecture may not be theirs, so no contact is named.
    assert "受付番号を添えて都道府県の窓口へ" in unlinked.text
    assert "医療政策課" not in unlinked.text
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    await dispatch(said("今日の天気は"), ctx)
    [receipt] = await dispatch(said("担当者に聞く"), ctx)
    assert "受付番号を添えて京都府医療政策課（075-000-0000）へお問い合わせください" in receipt.text


async def test_asked_whom_to_ask_a_linked_clinic_gets_its_own_desk(ctx: Context) -> None:
    await load_samples(ctx)
    await update_prefecture(ctx, "26", inquiry_contact="京都府医療政策課（075-000-0000）")
    question = "県の担当の電話番号を教えて"
    [unlinked] = await dispatch(said(question, user="visitor"), ctx)
    assert unlinked.meta["entry_id"] == "contact-system-questions"
    assert "医療政策課" not in unlinked.text  # the default prefecture may not be theirs
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [linked] = await dispatch(said(question), ctx)
    assert "【京都府の担当窓口】京都府医療政策課（075-000-0000）" in linked.text


async def test_did_my_report_go_in_shows_a_linked_clinics_own_status(ctx: Context) -> None:
    """The answer about the 「報告」 button is general; a linked clerk also sees what the
    prefecture's record says about her own report, and from when."""
    await load_samples(ctx)
    question = "報告ボタンを押したのに未報告のままです"
    [unlinked] = await dispatch(said(question, user="visitor"), ctx)
    assert unlinked.meta["entry_id"] == "method-press-report-button"
    assert "報告状況：" not in unlinked.text
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [linked] = await dispatch(said(question), ctx)
    assert ("【さくら内科クリニック】報告状況：差し戻し（11月24日 10時時点の都道府県の記録）"
            in linked.text)


@pytest.mark.parametrize(("inst", "record"), [("2610004", "記録では報告の対象外です"),
                                              ("2610002", "記録では報告はすでに届いています")])
async def test_a_reminder_question_from_a_clinic_that_is_done_reads_its_record_first(
        ctx: Context, inst: str, record: str) -> None:
    """The general 督促 answer says "enter it and press 報告"; a dental clinic or one whose
    report is confirmed must not be told that without what its own record says."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, inst)}"), ctx)
    [reply] = await dispatch(said("督促メールが届いたけどどうしたらいい？"), ctx)
    assert reply.meta["entry_id"] == "reminder-what-to-do"
    first, _, rest = reply.text.partition("以下は一般的なご案内です。")
    assert record in first and "行き違い" in first and "都道府県にお知らせください" in first
    assert "「報告」ボタン" in rest and "あと" not in rest  # no countdown for a clinic done


async def test_a_clerk_asks_for_her_status_in_her_own_words(ctx: Context) -> None:
    await load_samples(ctx)
    [unlinked] = await dispatch(said("うちの報告どうなってますか？", user="visitor"), ctx)
    assert unlinked.meta["action"] == "status_unlinked"  # how to link, nothing else
    [others] = await dispatch(said("報告ができていない場合は？", user="visitor"), ctx)
    assert others.meta["action"] != "status_unlinked"  # about reporting, not her record
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    for words in ("うちの報告どうなってますか？", "提出できてますか",
                  "差し戻しの理由をもう一度教えて", "次は何をすればいいですか", "あと何日ですか",
                  "なんでさしもどされたの", "うちはもうおわってる？", "なにがのこってる",
                  "ほうこくおわったかかくにんしたい", "ほうこくおわった？",
                  "だしたかどうかわからん", "うちのじょうきょうおしえて",
                  "いつまでに直せばいいですか", "どこを直せばいい？",
                  # A user test: these had got a general answer, or 院内掲示 and ACP buttons.
                  "うちの報告って出せてる？", "次に何をすればいいの", "状況おしえて"):
        [reply] = await dispatch(said(words), ctx)
        assert reply.meta["action"] == "status", words
        assert "修正の理由：2号機能（ハ）の訪問診療の件数が未入力です" in reply.text
    # A second question after it is not swallowed by the card.
    replies = await dispatch(said("いつまでに提出すればいい？G-MISのIDがわからない"), ctx)
    assert replies[0].meta["action"] != "status"
    await dispatch(said("報告状況"), ctx)
    [deadline] = await dispatch(said("いつまで？"), ctx)  # under the card: its deadline
    assert deadline.meta["action"] == "status" and "報告期限：" in deadline.text
    for question in ("報告ができていない場合はどうなりますか",
                     "提出が完了してから内容を修正できますか",
                     "他の医療機関の報告ってどうなってますか", "あと何日で公表されますか"):
        [reply] = await dispatch(said(question), ctx)  # questions, not her card
        assert reply.meta["action"] != "status", question


@pytest.mark.parametrize("question", ["連携コードってどこに書いてありますか",
                                      "連携コードなくしました"])
async def test_a_question_about_the_link_code_is_answered_not_searched(
        ctx: Context, question: str) -> None:
    [reply] = await dispatch(said(question), ctx)
    assert reply.text.startswith("連携コードは、都道府県から届く案内") and "再発行" in reply.text
    [partner] = await dispatch(said("連携先がない場合は？"), ctx)  # 2号's 連携, not the code
    assert not partner.text.startswith("連携コードは")


async def test_the_check_does_not_ask_a_linked_clinic_what_its_roster_says(
        ctx: Context) -> None:
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [start] = await dispatch(said("対象か確認"), ctx)
    assert start.text.startswith("さくら内科クリニックの登録内容")
    assert "判定：報告の対象です" in start.text and "★の3項目" in start.text
    assert "医療機関の種類をお選びください" not in start.text
    await dispatch(said(f"連携 {await code_for(ctx, '2610004')}", user="dental"), ctx)
    [done] = await dispatch(said("対象か確認", user="dental"), ctx)
    assert "判定：報告の対象外です" in done.text and "歯科医療機関" in done.text
    [unlinked] = await dispatch(said("対象か確認", user="visitor"), ctx)
    assert "医療機関の種類をお選びください" in unlinked.text


async def test_asking_for_another_institutions_record_is_refused_plainly(ctx: Context) -> None:
    """「ほかの診療所はもう報告した？」 got 「お答えできる情報が見つかりませんでした」 and an
    offer to send it to staff: it should say the chat shows only the clinic's own record."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    for other in ("ほかの診療所はもう報告した？", "みなみ総合病院の報告状況を教えて",
                  "2610002の状況は？"):
        [reply] = await dispatch(said(other), ctx)
        assert reply.meta["action"] == "status_others", other
        assert "ほかの医療機関の報告状況はお伝えできません" in reply.text
        assert "みなみ" not in reply.text and "確認済" not in reply.text  # its record
    for own_words in ("2610001の状況は？", "うちのクリニックの報告状況を教えて",
                      "自分の病院の報告状況"):
        [own] = await dispatch(said(own_words), ctx)
        assert own.meta["action"] == "status" and "さくら内科クリニック" in own.text, own_words
    for general in ("他の病院の報告期間はいつまで？", "ほかのクリニックはどうやって報告してる？",
                    "他の医療機関との連携状況も報告が必要ですか？"):
        [reply] = await dispatch(said(general), ctx)
        assert reply.meta["action"] != "status_others", general
    # At the staff prompt the same words are the question for staff.
    await dispatch(said("担当者に聞く", user="u2"), ctx)
    [sent] = await dispatch(said("他の医療機関との連携状況も報告が必要ですか？", user="u2"), ctx)
    assert "受付番号" in sent.text
    # Unlinked, a code may be its own: how to link, no word on whose it is.
    [unlinked] = await dispatch(said("2610001の状況は？", user="u3"), ctx)
    assert HOW_TO_LINK in unlinked.text and "さくら" not in unlinked.text  # how to link


async def test_going_back_in_the_check_never_overrides_the_roster(ctx: Context) -> None:
    """戻る at the first question after the roster's answers had asked 「休院していましたか」
    again, so a tap could contradict what the prefecture registered."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [start] = await dispatch(said("対象か確認"), ctx)
    assert "戻る" not in [b.label for b in start.buttons]
    [typed] = await dispatch(said("戻る"), ctx)
    assert "登録内容から判定しているため" in typed.text and "★の3項目" in typed.text
    assert "戻る" not in [b.label for b in typed.buttons]
    confirm = next(b for b in typed.buttons if b.label == "確認する")
    [posting] = await dispatch(Inbound("demo", "clerk-1", text=confirm.label,
                                       payload=confirm.payload, tenant="26"), ctx)
    assert "院内に掲示" in posting.text and "戻る" in [b.label for b in posting.buttons]
    [fact] = await dispatch(said("うちは休院していました"), ctx)  # the roster says otherwise
    assert "登録内容から判定しています" in fact.text and "院内に掲示" in fact.text
    back = next(b for b in posting.buttons if b.label == "戻る")
    [again] = await dispatch(Inbound("demo", "clerk-1", text=back.label, payload=back.payload,
                                     tenant="26"), ctx)
    assert "★の3項目" in again.text and "戻る" not in [b.label for b in again.buttons]


async def test_staff_never_see_what_was_said_under_an_earlier_link(ctx: Context) -> None:
    """Relinked to a 東京都 clinic, a chat's escalation goes to 東京都 without the 京都府
    clinic's status reply or the link codes typed before."""
    await load_samples(ctx)
    first = await code_for(ctx, "2610001")
    await dispatch(said(f"連携 {first}"), ctx)
    await dispatch(said("報告状況"), ctx)
    await set_period(ctx, "13", None, None)
    async with ctx.session() as session:
        session.add(Institution(prefecture_code="13", code="1310002", name="都内医院",
                                kind="clinic", status="未報告"))
        await session.commit()
    second = await code_for(ctx, "1310002", pref="13")
    await dispatch(said(f"連携 {second}"), ctx)
    await dispatch(said("今日の天気は"), ctx)
    await dispatch(said("担当者に聞く"), ctx)
    async with ctx.session() as session:
        [esc] = (await session.exec(select(Escalation))).all()
    shown = " ".join(f"{h['q']} {h['a']}" for h in esc.context["history"])
    assert esc.prefecture_code == "13" and "今日の天気は" in shown
    assert "さくら内科" not in shown and "報告状況" not in shown
    assert first not in shown and second not in shown


async def test_a_question_asked_before_a_relink_is_never_sent_under_the_new_link(
        ctx: Context) -> None:
    """Asked for さくら内科, then relinked to a 東京都 clinic: neither 「担当者に聞く」 nor the
    old 👎 button sends that question to 東京都."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [answer] = await dispatch(said("紙で報告できますか"), ctx)
    down = next(b for b in answer.buttons if b.payload.startswith("fb:down"))
    [sorry] = await dispatch(Inbound("demo", "clerk-1", text=down.label, payload=down.payload,
                                     tenant="26"), ctx)
    await set_period(ctx, "13", None, None)
    async with ctx.session() as session:
        session.add(Institution(prefecture_code="13", code="1310003", name="都内内科",
                                kind="clinic", status="未報告"))
        await session.commit()
    await dispatch(said(f"連携 {await code_for(ctx, '1310003', pref='13')}"), ctx)
    [typed] = await dispatch(said("担当者に聞く"), ctx)
    assert "ご質問を入力" in typed.text
    await dispatch(said("キャンセル"), ctx)
    ask = next(b for b in sorry.buttons if b.payload.startswith("esc:ask"))
    [old_button] = await dispatch(Inbound("demo", "clerk-1", text=ask.label, payload=ask.payload,
                                          tenant="26"), ctx)
    assert "ご質問を入力" in old_button.text
    async with ctx.session() as session:
        assert (await session.exec(select(Escalation))).all() == []


async def test_an_inquiry_asked_under_another_link_is_not_shown_after_relinking(
        ctx: Context) -> None:
    """A chat passed to another institution's clerk must not read the last one's answers."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    await dispatch(said("今日の天気は？"), ctx)
    [first] = await dispatch(Inbound("demo", "clerk-1", text="担当者に聞く", payload="esc:ask",
                                     tenant="26"), ctx)
    assert "受付番号" in first.text
    [mine] = await dispatch(said("さっきの問い合わせはどうなりましたか"), ctx)
    assert "今日の天気" in mine.text
    await dispatch(said(f"連携 {await code_for(ctx, '2610002')}"), ctx)
    [after] = await dispatch(said("さっきの問い合わせはどうなりましたか"), ctx)
    assert "今日の天気" not in after.text and "以前の連携先でお送りいただいた" in after.text
    # By its number too: not 「見つかりませんでした。番号をご確認ください」 (it was sent).
    receipt = first.text.split("受付番号は ")[1].split(" ")[0]
    [numbered] = await dispatch(said(f"{receipt}はどうなりましたか"), ctx)
    assert receipt in numbered.text and "以前の連携先" in numbered.text
    assert "今日の天気" not in numbered.text and "番号をご確認ください" not in numbered.text


async def test_a_clerk_can_end_or_move_the_chats_link_herself(ctx: Context) -> None:
    """「連携解除したいです」「転職したので連携先を変えたい」 were dead ends, and a wrong new
    code left the old clinic's status showing without a word."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [wrong] = await dispatch(said("連携 HKRT3-9QWXZ"), ctx)
    assert "引き続き さくら内科クリニック 様と連携しています" in wrong.text
    [move] = await dispatch(said("転職したので連携先を変えたい"), ctx)
    assert "新しい医療機関の連携コード" in move.text
    [ask] = await dispatch(said("連携解除したいです"), ctx)
    assert [b.payload for b in ask.buttons] == ["link:unlink", "link:keep"]
    [kept] = await dispatch(Inbound("demo", "clerk-1", text="やめる", payload="link:keep",
                                    tenant="26"), ctx)
    assert "引き続き" in kept.text
    [status] = await dispatch(said("報告状況"), ctx)
    assert "さくら内科クリニック" in status.text
    [done] = await dispatch(Inbound("demo", "clerk-1", text="連携を解除する",
                                    payload="link:unlink", tenant="26"), ctx)
    assert "連携を解除しました" in done.text
    [after] = await dispatch(said("報告状況"), ctx)
    assert "さくら" not in after.text and after.meta["action"] == "status_unlinked"
    [again] = await dispatch(said("連携を解除して"), ctx)
    assert again.text == HOW_TO_LINK  # not linked: how to link


async def test_an_inquiry_is_asked_after_in_more_words_and_cannot_be_withdrawn_silently(
        ctx: Context) -> None:
    receipt = await sent_inquiry(ctx)
    [waiting] = await dispatch(said("さっきの問い合わせ、まだ回答ないですか？"), ctx)
    assert waiting.meta["action"] == "ticket" and receipt in waiting.text
    for withdraw in ("さっきの問い合わせを取り消したい", f"{receipt}の件、取り消せますか"):
        [reply] = await dispatch(said(withdraw), ctx)
        assert f"「{receipt}の補足です。解決したので取り下げます。」" in reply.text, withdraw
    [report] = await dispatch(said("報告内容を取り消したい"), ctx)  # the report, not an inquiry
    assert report.meta["action"] != "ticket"


async def test_an_inquiry_asked_before_linking_is_still_the_chats_after_it(
        ctx: Context) -> None:
    """Ask first, find the letter's code later: after linking, 「さっきの問い合わせ」 had
    answered 「まだありません」 and a 補足 to the receipt was refused."""
    await load_samples(ctx)
    await dispatch(said("今日の天気は？"), ctx)
    [sent] = await dispatch(Inbound("demo", "clerk-1", text="担当者に聞く", payload="esc:ask",
                                    tenant="26"), ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [state] = await dispatch(said("さっきの問い合わせどうなった？"), ctx)
    assert "今日の天気" in state.text
    receipt = sent.text.split("受付番号は ")[1].split(" ")[0]
    [added] = await dispatch(said(f"{receipt}の補足です。午後の天気も知りたいです。"), ctx)
    assert "補足を追加し" in added.text


async def test_a_supplement_right_after_sending_joins_that_inquiry(ctx: Context) -> None:
    """「追記です。…」「すみません、言い忘れましたが…」 name no inquiry; right after one was
    sent they are its, and said out of the blue they are questions like any other."""
    await dispatch(said("今日の天気は？"), ctx)
    await dispatch(Inbound("demo", "clerk-1", text="担当者に聞く", payload="esc:ask",
                           tenant="26"), ctx)
    [added] = await dispatch(said("すみません、言い忘れましたが、紙で報告しています"), ctx)
    assert "補足を追加し" in added.text
    async with ctx.session() as session:
        [esc] = (await session.exec(select(Escalation))).all()
    assert esc.context["supplements"][0]["text"].endswith("紙で報告しています")
    await dispatch(said("報告期間はいつからいつまで"), ctx)
    [later] = await dispatch(said("追記です。G-MISにログインできません"), ctx)
    assert "補足を追加し" not in later.text and later.meta["action"] != "supplement"


@pytest.mark.parametrize("question", [
    "さっきの質問ですが、2号機能の補足資料はどこにありますか",
    "前に質問した件ですが、報告内容を追記したい場合はどうすればいいですか",
    "{receipt}への補足の回答はまだですか",
    "{receipt}の回答ありがとうございました。追伸：報告の期限はいつですか",
])
async def test_a_question_about_supplements_is_not_taken_for_one(ctx: Context,
                                                                 question: str) -> None:
    receipt = await sent_inquiry(ctx)
    [reply] = await dispatch(said(question.format(receipt=receipt)), ctx)
    assert reply.meta["action"] != "supplement" and "補足を追加し" not in reply.text
    async with ctx.session() as session:
        [esc] = (await session.exec(select(Escalation))).all()
    assert "supplements" not in esc.context


async def test_asking_after_a_supplement_is_a_status_question_not_another_supplement(
        ctx: Context) -> None:
    """「Q26-000001 補足 回答まだ？」 was stored as a supplement reading 「回答まだ？」."""
    receipt = await sent_inquiry(ctx)
    await dispatch(said(f"{receipt}の補足です。午後の天気も知りたいです。"), ctx)
    for asked in (f"{receipt} 補足 回答まだ？", f"{receipt}に補足した件、どうなりましたか"):
        [reply] = await dispatch(said(asked), ctx)
        assert reply.meta["action"] == "ticket" and "担当者の確認をお待ちください" in reply.text
    [bare] = await dispatch(said(f"{receipt}の補足"), ctx)  # announces one: asks for it
    assert "補足の内容を" in bare.text
    [esc] = await escalations_of(ctx)
    assert len(esc.context["supplements"]) == 1


async def test_a_short_number_that_is_no_inquiry_of_this_chat_is_read_as_a_question(
        ctx: Context) -> None:
    """「Q15-3の回答は？」 (an item of a Q&A document) got 「受付番号 Q15-000003 は見つかり
    ませんでした」; a short-typed number of the chat's own inquiry still finds it."""
    receipt = await sent_inquiry(ctx)
    [qa_item] = await dispatch(said("Q26-7の回答は？"), ctx)
    assert "Q26-000007" not in qa_item.text and qa_item.meta["action"] != "ticket"
    short = f"Q26-{int(receipt.split('-')[1])}はどうなりましたか"
    [mine] = await dispatch(said(short), ctx)
    assert mine.meta["action"] == "ticket" and receipt in mine.text
    [typed] = await dispatch(said("受付番号Q26-7はどうなりましたか"), ctx)
    assert "Q26-000007" in typed.text and "見つかりませんでした" in typed.text


@pytest.mark.parametrize("supplement", [
    "{receipt}の補足です。分院は隣の市です。",
    "{ime}の補足です。分院は隣の市です。",  # the hyphen as a kana IME types it
    "お世話になっております。先ほどの質問の補足です。分院は隣の市です。",
    "{receipt} の件で追加です。分院は隣の市です。",
])
async def test_a_supplement_is_found_however_it_is_typed(ctx: Context, supplement: str) -> None:
    await dispatch(said("今日の天気は？"), ctx)
    [sent] = await dispatch(Inbound("demo", "clerk-1", text="担当者に聞く", payload="esc:ask",
                                    tenant="26"), ctx)
    await dispatch(said("報告期間はいつからいつまで"), ctx)  # not right after sending
    receipt = sent.text.split("受付番号は ")[1].split(" ")[0]
    text = supplement.format(receipt=receipt, ime=receipt.replace("-", "ー"))
    [reply] = await dispatch(said(text), ctx)
    assert "補足を追加し" in reply.text


async def test_a_supplement_to_an_inquiry_of_the_old_link_is_sent_not_dropped(
        ctx: Context) -> None:
    """Asked under one link, then relinked: the receipt had got 「見つかりませんでした」 and
    the supplement was lost."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    receipt = await sent_inquiry(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610002')}"), ctx)
    [reply] = await dispatch(said(f"{receipt}の補足です。午後の天気も知りたいです。"), ctx)
    assert "以前の連携先" in reply.text and "新しいお問い合わせとしてお送りしました" in reply.text
    async with ctx.session() as session:
        old, new = (await session.exec(select(Escalation).order_by(Escalation.id))).all()
    assert "supplements" not in old.context and receipt in new.question
    assert new.institution_id != old.institution_id


async def test_a_code_inside_a_question_for_staff_is_not_shown_to_them(ctx: Context) -> None:
    """A code that did not link (typed inside a question) reached the staff card as it was:
    it is a one-time secret."""
    await load_samples(ctx)
    code = await code_for(ctx, "2610002")
    question = f"てがみのコード{code}を入れたらエラーになりました。どうすればいいですか"
    await dispatch(said(question), ctx)
    await dispatch(Inbound("demo", "clerk-1", text="担当者に聞く", payload="esc:ask",
                           tenant="26"), ctx)
    wide = "".join(chr(ord(c) + 0xFEE0) for c in code)  # as a Japanese keyboard types it
    receipt = (await escalations_of(ctx))[0].receipt
    await dispatch(said(f"{receipt}の補足です。コード{wide}も試しました。"), ctx)
    [esc] = await escalations_of(ctx)
    stored = esc.question + json.dumps(esc.context, ensure_ascii=False)
    assert code not in stored and wide not in stored and code.replace("-", "") not in stored
    assert "XXXXX-XXXXX" in esc.question and "XXXXX-XXXXX" in esc.context["supplements"][0]["text"]


async def sent_inquiry(ctx: Context) -> str:
    """clerk-1 asks something the bot cannot answer and sends it to staff: its receipt."""
    await dispatch(said("今日の天気は？"), ctx)
    [sent] = await dispatch(Inbound("demo", "clerk-1", text="担当者に聞く", payload="esc:ask",
                                    tenant="26"), ctx)
    return sent.text.split("受付番号は ")[1].split(" ")[0]


async def escalations_of(ctx: Context) -> list[Escalation]:
    async with ctx.session() as session:
        return list((await session.exec(select(Escalation))).all())


async def test_a_linked_clinic_is_told_its_own_prefecture_has_the_question(ctx: Context) -> None:
    """「都道府県の担当者」 leaves a clerk wondering who; once linked, the receipt names the
    prefecture the question went to. Before linking the bot cannot know it, so it stays
    generic."""
    await load_samples(ctx)
    await dispatch(said("分院を開設予定ですが、今年の報告は本院とまとめられますか", user="u"), ctx)
    [unlinked] = await dispatch(replace(said("担当者に聞く", user="u"), payload="esc:ask"), ctx)
    assert "都道府県の担当者にお問い合わせを送りました" in unlinked.text
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    await dispatch(said("分院を開設予定ですが、今年の報告は本院とまとめられますか"), ctx)
    [linked] = await dispatch(replace(said("担当者に聞く"), payload="esc:ask"), ctx)
    assert "京都府の担当者にお問い合わせを送りました" in linked.text and "受付番号" in linked.text
