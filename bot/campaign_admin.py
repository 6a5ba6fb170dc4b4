"""Operator commands for campaigns, calendars and templates (`main.py campaign|calendar|
template ...`). Output is for prefecture staff: Japanese, plain text."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.admin import exists_unforced, missing_file, registered
from bot.settings import Settings, secret_given
from bot.slack.sender import NO_CHANNEL, TRANSIENT
from db.csvfile import FileProblem, decode
from db.engine import make_engine, make_sessionmaker
from db.models import Campaign, CampaignSettings, Outbox, Prefecture, desk_channel, utcnow
from db.prefectures import default_period
from scheduler import campaigns, outbox, templates
from scheduler.cadence import (
    CATCH_UP,
    Run,
    cycle_runs,
    due_run,
    early_reminders,
    period_opens,
    settings_for,
    too_late,
)
from scheduler.calendar import DAY_ENDS, DAY_STARTS, JST, sending_hours

# Row states of a campaign's messages, as `campaign status` lists them.
ROW_LABELS = {"held": "承認待ち", "pending": "送信待ち", "sending": "送信中", "inflight": "送信中",
              **dict(campaigns.REPORT_LABELS)}


async def run_campaign(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        async with make_sessionmaker(engine)() as session:
            command = args.campaign_command
            if command == "plan":
                # One manual run a day unless named: planning twice (a retry, a second
                # operator) had made two campaigns, and clinics got the 案内 twice.
                tag = args.tag or f"manual:{now.astimezone(JST):%Y-%m-%d}"
                result = await campaigns.plan(session, args.prefecture, args.kind, tag, now)
                c = result.campaign
                head = "作成しました" if result.created else "作成済みです"
                print(f"{head}：キャンペーン {c.id}"
                      f"（{campaigns.KIND_LABELS[c.kind]}・{tag}）送信対象 {c.recipients}件、"
                      f"チャット未連携 {c.unlinked}件")
                return 0
            if command == "status" and args.id is None:
                return await _list(session, args.prefecture)
            c = await campaigns.get(session, args.id, args.prefecture)
            if command == "preview":
                refused = await _refused_card(session, c)
                await campaigns.request_preview(session, c, now)
                print(_summary(c))
                if refused:
                    print(f"前回の確認カードはSlackに届きませんでした（{refused}）。"
                          "もう一度送ります。")
                print("--- 送信する文面の例 ---")
                print(await campaigns.sample(session, c) or "（送信対象がありません）")
                pref = await session.get(Prefecture, c.prefecture_code)
                if desk_channel(pref):
                    print("Slackの担当チャンネルに確認カード（送信／中止ボタン付き）を送ります。")
                else:
                    print("Slackの担当チャンネルが未設定のため、確認カードは届きません"
                          "（slack-channel で設定できます）。送信するには campaign send で"
                          "承認してください。")
            elif command == "send":
                if c.status in ("sending", "done"):
                    label = campaigns.STATUS_LABELS[c.status]
                    print(f"キャンペーン {c.id} は承認済みです（{label}）。")
                    return 0
                released = await campaigns.approve(session, c, args.by, now)
                print(f"キャンペーン {c.id} を承認しました：{released}件を送信します。"
                      "実行中のボット（main.py run）が、送信時間内に順に送ります。")
                if not (secret_given(settings.telegram_token)  # they wait in the outbox
                        or secret_given(settings.line_channel_access_token)):
                    print("TELEGRAM_TOKEN も LINE_CHANNEL_ACCESS_TOKEN も未設定のため、まだ送れ"
                          "ません。設定して main.py run を起動すると送信が始まります。")
            elif command == "cancel":
                cancelled = await campaigns.cancel(session, c, args.by, now)
                print(f"キャンペーン {c.id} を中止しました：{cancelled}件を取り消しました。")
            elif command == "unlinked":
                if exists_unforced(args.out, args.force):
                    return 2
                args.out.write_text(await campaigns.unlinked_csv(session, c),
                                    encoding="utf-8-sig")
                print(f"チャット未連携の医療機関 {c.unlinked}件を {args.out} に書き出しました。")
            else:
                print(_summary(c))
                if card := await card_state(session, c):
                    print(f"  {card}")
                for status, n in sorted((await campaigns.counts(session, c.id or 0)).items()):
                    print(f"  {ROW_LABELS.get(status, status)}：{n}件")
            return 0
    except campaigns.CampaignError as exc:
        print(str(exc))
        return 1
    finally:
        await engine.dispose()


def _summary(c: Campaign) -> str:
    return (f"キャンペーン {c.id}：{campaigns.KIND_LABELS[c.kind]}（{c.run_tag}）"
            f" 状態 {campaigns.STATUS_LABELS.get(c.status, c.status)}、送信予定 "
            f"{c.send_at.astimezone(JST):%Y-%m-%d %H:%M}、送信対象 {c.recipients}件、"
            f"チャット未連携 {c.unlinked}件")


async def _list(session: AsyncSession, prefecture: str) -> int:
    stmt = (select(Campaign).where(Campaign.prefecture_code == prefecture)
            .order_by(col(Campaign.id).desc()).limit(50))
    found = (await session.exec(stmt)).all()
    for c in found:
        print(_summary(c))
        if await _refused_card(session, c):  # the one state a list must not hide
            print(f"  {await card_state(session, c)}")
    if not found:
        print(f"都道府県 {prefecture} のキャンペーンはまだありません。")
    return 0


# What the operator does about a card Slack refused for good, by Slack's error.
CARD_FIXES = {
    "channel_not_found": "チャンネルが見つかりません。slack-channel --prefecture {code} --channel "
                         "C… で正しいチャンネルIDを設定すると、送り直します",
    "not_in_channel": "ボットがチャンネルに参加していません。Slackでそのチャンネルにボットを"
                      "招待してから、campaign preview {id} --prefecture {code} で送り直して"
                      "ください",
    "is_archived": "チャンネルがアーカイブされています。アーカイブを解除してから campaign "
                   "preview {id} --prefecture {code} で送り直すか、slack-channel で別の"
                   "チャンネルを設定してください",
}
OTHER_FIX = ("原因を直してから campaign preview {id} --prefecture {code} で送り直してください")


async def _card_row(session: AsyncSession, c: Campaign) -> Outbox | None:
    return await outbox.find(session, campaigns.preview_keys(c.id)[0])


async def _refused_card(session: AsyncSession, c: Campaign) -> str:
    """Slack's error for an approval card it refused for good ("" if it did not): such a
    card is never retried on its own."""
    row = await _card_row(session, c)
    error = (row.last_error or "") if row else ""
    if row is None or row.status not in ("failed", "unreachable") or error.startswith(
            TRANSIENT):
        return ""
    return error or row.status


async def card_state(session: AsyncSession, c: Campaign) -> str:
    """Where the approval card is, in the operator's words ("" before any was asked for)."""
    row = await _card_row(session, c)
    if row is None:
        return ""
    if refused := await _refused_card(session, c):
        fix = CARD_FIXES.get(refused, OTHER_FIX).format(id=c.id, code=c.prefecture_code)
        return f"確認カード：Slackに届いていません（{refused}）。{fix}。"
    error = row.last_error or ""
    if row.status == "sent":
        return "確認カード：Slackに送りました。"
    if row.status == "skipped":
        return f"確認カード：送っていません（{error}）。"
    if error == NO_CHANNEL.detail:
        return ("確認カード：Slackの担当チャンネルが未設定のため送信待ちです"
                "（slack-channel で設定すると送ります）。")
    if error.startswith(TRANSIENT):
        return (f"確認カード：Slackが一時的に受け付けないため、自動で送り直します"
                f"（{error.removeprefix(TRANSIENT)}）。")
    if error:
        return f"確認カード：送信待ちです（{error}。実行中のボットのログをご確認ください）。"
    return "確認カード：送信待ちです（実行中のボット main.py run が送ります）。"


async def run_calendar(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            if (pref := await registered(session, args.prefecture)) is None:
                return 1
            cadence = await settings_for(session, args.prefecture)
            if args.calendar_command == "set":
                before = (pref.period_end, pref.inquiry_contact)
                try:
                    _apply(args, pref, cadence, datetime.now(JST).date())
                except ValueError as exc:
                    print(f"設定できませんでした：{exc}")
                    return 1
                cadence.updated_at = utcnow()
                session.add_all([pref, cadence])
                await session.commit()
                print("保存しました。実行中のボットは、次のリース更新時に予定を反映します。")
                await _warn_stale(session, pref, *before)
            now = datetime.now(UTC)
            show_calendar(pref, cadence, now, await missed_run(session, pref, cadence, now))
            return 0
    finally:
        await engine.dispose()


def _apply(args: argparse.Namespace, pref: Prefecture, cadence: CampaignSettings,
           today: date) -> None:
    """Check every given value before any is kept; a ValueError says which and why."""
    if args.deadline:
        pref.period_end = _day(args.deadline, "--deadline")
        if pref.period_end < today:
            raise ValueError(f"--deadline {args.deadline} は過去の日付です")
    if args.start:
        pref.period_start = _day(args.start, "--start")
    if args.start or args.deadline:
        _check_period(pref, args)
    if args.contact is not None:
        if not args.contact.strip() or len(args.contact) > 200:
            raise ValueError("--contact は 1〜200 文字で指定してください（例：\"京都府医療政策課 "
                             "075-000-0000\"）")
        pref.inquiry_contact = args.contact.strip()
    if args.hours:
        hours = _numbers(args.hours, "-", "--hours", "9-17")
        if len(hours) != 2 or not DAY_STARTS <= hours[0] < hours[1] <= DAY_ENDS:
            raise ValueError(f"送信時間帯（--hours）は {DAY_STARTS}〜{DAY_ENDS} 時の間で、"
                             "9-17 のように指定してください（夜間には送りません）")
        pref.send_start_hour, pref.send_end_hour = hours
    if args.annai:
        month_day = _numbers(args.annai, "-", "--annai", "11-10")
        try:
            date(2027, *month_day)
        except (TypeError, ValueError):
            raise ValueError(f"--annai {args.annai} は日付になっていません（例：11-10）") from None
        cadence.annai_month, cadence.annai_day = month_day
    if args.reminders is not None:
        days = _numbers(args.reminders, ",", "--reminders", "30,14,7,3,1")
        if any(d < 1 for d in days):
            raise ValueError("--reminders は期限の何日前かを 1 以上の日数で指定してください")
        cadence.reminder_days = sorted(set(days), reverse=True)
    for name, field, least in (("after_every", "after_deadline_every_days", 1),
                               ("after_count", "after_deadline_count", 0),
                               ("returned_days", "returned_after_business_days", 1)):
        value = getattr(args, name)
        if value is not None:
            if value < least:
                raise ValueError(f"--{name.replace('_', '-')} は {least} 以上で指定してください")
            setattr(cadence, field, value)
    for name in ("auto_send", "enabled"):
        if getattr(args, name) is not None:
            setattr(cadence, name, getattr(args, name) == "on")
    if args.reminders is not None or args.start or args.deadline:
        _check_reminders(pref, cadence)


def _check_period(pref: Prefecture, args: argparse.Namespace) -> None:
    """A prefecture may shorten the statutory 1月1日〜3月31日 period, not leave it
    (DESIGN.md; every first-cycle period in FACTS.md lies inside it): refused, not warned."""
    for day, given, option in ((pref.period_start, args.start, "--start"),
                               (pref.period_end, args.deadline, "--deadline")):
        if given and day and not _in_statutory_period(day):
            raise ValueError(f"{option} {day} は報告期間（毎年1月1日〜3月31日）の外です。"
                             "都道府県の期間はこの中で短くできますが、外には広げられません")
    start, end = pref.period_start, pref.period_end
    if start and end and start > end:
        raise ValueError(f"受付開始（{start}）が報告期限（{end}）より後になります。"
                         "--start と --deadline をご確認ください")
    if start and end and start.year != end.year:
        raise ValueError(f"受付開始（{start}）と報告期限（{end}）が別の年です。同じ年の"
                         "1月1日〜3月31日の中になるよう --start と --deadline を指定してください")


def _in_statutory_period(day: date) -> bool:
    """Inside 1月1日〜3月31日 of its year (db.prefectures holds the one definition)."""
    start, end = default_period(day)  # after March: next year's window, so day < start
    return start <= day <= end


def _check_reminders(pref: Prefecture, cadence: CampaignSettings) -> None:
    """Each 督促 offset must land on or after 受付開始: say which would not, and when."""
    if pref.period_end is None:
        return
    opens = period_opens(pref.period_start, pref.period_end)
    early = early_reminders(cadence, pref.period_end, opens, *sending_hours(pref))
    if early:
        day = templates.format_deadline
        which = "、".join(f"督促 D-{n} は {day(on)}" for n, on in early)
        raise ValueError(f"{which} になり、受付開始（{day(opens)}）より前です。--reminders は"
                         "受付開始より後に届く日数にしてください（受付開始から期限までは "
                         f"{(pref.period_end - opens).days} 日です）")


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        raise ValueError(f"{option} {text} は日付になっていません（例：2027-02-26）") from None


def _numbers(text: str, sep: str, option: str, example: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(sep) if part.strip())
    except ValueError:
        raise ValueError(f"{option} {text} は数字で指定してください（例：{example}）") from None


async def _warn_stale(session: AsyncSession, pref: Prefecture, deadline: date | None,
                      contact: str) -> None:
    """A message's text is rendered when its campaign is planned: after a new deadline or
    contact, the campaigns still to send would carry the old one. Name them and the way out."""
    changed = []
    if deadline != pref.period_end:
        changed.append(f"報告期限（{templates.format_deadline(deadline)}）")
    if contact != pref.inquiry_contact:
        changed.append(f"問い合わせ先（{contact}）")
    stale = [(c, n) for c, n in await campaigns.unsent(session, pref.code)
             if contact != pref.inquiry_contact or c.deadline != pref.period_end]
    if not (changed and stale):
        return
    print(f"注意：送信前のメッセージがあるキャンペーンが {len(stale)}件あり、その文面は変更前の"
          f"{'と'.join(changed)}のままです（文面は計画したときに作られます）。")
    for c, n in stale:
        print(f"  {_summary(c)}、未送信 {n}件（文面の報告期限 "
              f"{templates.format_deadline(c.deadline)}）")
    one = stale[0][0] if len(stale) == 1 else None
    _print_replan(pref.code, str(one.id) if one else "ID", one.kind if one else "種類")


def _print_replan(code: str, campaign_id: str, kind: str) -> None:
    # Planning again under the old tag returns the cancelled campaign: hence a new tag.
    print(f"新しい内容で送るには、campaign cancel {campaign_id} --prefecture {code} で中止して"
          f"から calendar show --prefecture {code} で予定を確かめ、必要なら campaign plan "
          f"--prefecture {code} --kind {kind} --tag 新しい名前 で計画し直してください"
          "（中止したキャンペーンと同じ tag では計画し直せません）。"
          "中止しなければ、古い文面のまま送られます。")


async def missed_run(session: AsyncSession, pref: Prefecture, cadence: CampaignSettings,
                     now: datetime) -> Run | None:
    """The due run that nothing will send: the scheduler gives up on it (too_late, the
    rule the scheduler itself applies) and no campaign covers it."""
    if pref.period_end is None:
        return None
    due = due_run(cycle_runs(cadence, pref.period_end, *sending_hours(pref)), now)
    if due is None or not too_late(due, now):
        return None
    if await campaigns.covering(session, pref.code, due.kind, due.tag, due.at):
        return None
    return due


def show_calendar(pref: Prefecture, cadence: CampaignSettings, now: datetime,
                  missed: Run | None = None) -> None:
    """Print the calendar; `missed` (see missed_run) is marked as not to be sent, with the
    manual way to send it."""
    opens, closes = sending_hours(pref)
    print(f"{pref.name}：報告期限 {templates.format_deadline(pref.period_end)}、送信時間帯 "
          f"{opens}:00〜{closes}:00（営業日のみ）、"
          f"自動送信 {'する' if cadence.auto_send else 'しない（Slackで承認）'}、"
          f"{'有効' if cadence.enabled else '停止中'}")
    start = templates.format_deadline(pref.period_start) if pref.period_start else "（未設定）"
    print(f"  受付開始 {start}、問い合わせ先 {pref.inquiry_contact or '（未設定）'}")
    if pref.period_end is None:
        return
    runs = cycle_runs(cadence, pref.period_end, *sending_hours(pref))
    due = due_run(runs, now)
    for run in runs:
        mark = "済" if run.at <= now and run is not due else ("← 現在" if run is due else "")
        if run == missed:
            mark = "← 未送信（自動では送りません）"
        print(f"  {run.at:%Y-%m-%d %H:%M}  {campaigns.KIND_LABELS[run.kind]:<6} "
              f"{run.tag.split(':')[1]:<6} {mark}")
        if run == missed:
            print(f"      予定日から{CATCH_UP.days}日以上過ぎたため、自動では送りません。送る"
                  f"場合は campaign plan --prefecture {pref.code} --kind {run.kind} で計画し、"
                  "campaign preview で文面を確かめてから campaign send で承認してください。")
    print(f"  差し戻し：{cadence.returned_after_business_days}営業日後に再提出のお願い")


async def run_template(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            if await registered(session, args.prefecture) is None:
                return 1
            if args.template_command == "set" and not await _set_template(session, args):
                return 1
            print(await templates.get_body(session, args.prefecture, args.kind))
            print("--- 使える差し込み項目 ---")
            for name, what in templates.PLACEHOLDERS.items():
                print(f"  {{{name}}}  {what}")
            return 0
    finally:
        await engine.dispose()


async def _set_template(session: AsyncSession, args: argparse.Namespace) -> bool:
    """Read, check and store the file; on any problem say where (file, line, column) and
    store nothing."""
    path = Path(args.file)
    # CLI front-end: a blocking is_file() check before the work is harmless here.
    if not path.is_file():  # noqa: ASYNC240
        print(missing_file(path))
        return False
    try:
        text, _ = await asyncio.to_thread(decode, path)
    except OSError as exc:  # unreadable (permissions)
        print(f"読み込めませんでした：{path}（{exc.strerror}）")
        return False
    except FileProblem as exc:  # not UTF-8 or Shift_JIS text; the message names the file
        print(f"読み込めませんでした：{exc}")
        return False
    try:
        await templates.save(session, args.prefecture, args.kind, text.strip())
    except templates.TemplateError as exc:
        print(f"保存できませんでした：{_where(path, text, exc)}: {exc.message}")
        return False
    print("テンプレートを保存しました。")
    return True


def _where(path: Path, text: str, exc: templates.TemplateError) -> str:
    """`file:line行目 column文字目` in the file as written: the stored body is stripped, so
    the blank lines (and first-line indent) cut off before it are added back."""
    if exc.line is None:
        return str(path)
    cut = text[:len(text) - len(text.lstrip())]
    line = exc.line + cut.count("\n")
    if exc.column is None:
        return f"{path}:{line}行目"
    indent = len(cut) - cut.rfind("\n") - 1 if exc.line == 1 else 0
    return f"{path}:{line}行目 {exc.column + indent}文字目"
