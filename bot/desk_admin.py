"""Operator commands for the staff desk: channel mapping, digest now, KB draft review."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.admin import missing_file, registered, with_session
from bot.settings import Settings
from db.csvfile import FileProblem, decode
from db.engine import make_engine, make_sessionmaker
from db.models import KbDraft, Outbox
from handlers import desk, kb_drafts
from handlers.desk_digest import digest_key, enqueue_digest
from scheduler import outbox
from scheduler.calendar import JST, is_business_day
from scheduler.jobs import DIGEST_HOUR

# What became of today's digest, as `desk digest` reports it when run again.
DIGEST_STATES = {"pending": "まだ送っていません", "sending": "送信中", "sent": "送信済み",
                 "failed": "送信に失敗しました", "skipped": "古くなったため送っていません"}


async def run_slack_channel(settings: Settings, prefecture: str, channel: str) -> int:
    async def work(session: AsyncSession) -> int:
        if await registered(session, prefecture) is None:
            return 1
        try:
            revived = await desk.map_channel(session, prefecture, channel,
                                             datetime.now(UTC), settings.gmis_contact)
        except desk.DeskRefused as exc:
            print(exc.message, file=sys.stderr)
            return 1
        print(f"都道府県 {prefecture} の窓口チャンネルを {channel} にしました。"
              + (f"送信待ちだった {revived} 件をこのチャンネルへ送ります。" if revived else ""))
        return 0

    return await with_session(settings, work)  # the ID was checked (cli.slack_channel_problem)


async def run_digest(settings: Settings, prefecture: str) -> int:
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        async with make_sessionmaker(engine)() as session:
            if await registered(session, prefecture) is None:
                return 1
        if not await enqueue_digest(make_sessionmaker(engine), prefecture, now):
            async with make_sessionmaker(engine)() as session:
                queued = await outbox.find(session, digest_key(prefecture, _today(now)))
            print(_already_queued(prefecture, queued))
            return 0
    finally:
        await engine.dispose()
    local = now.astimezone(JST)
    replaces = is_business_day(local.date()) and local.hour < DIGEST_HOUR
    print(f"都道府県 {prefecture} の日次まとめを送信待ちに入れました。"
          "実行中のボット（main.py run）がSlackへ送ります。"
          + (f"日次まとめは1日1回のため、本日 {DIGEST_HOUR}:00 の定時のまとめは送りません。"
             if replaces else ""))
    return 0


def _today(now: datetime) -> date:
    return now.astimezone(JST).date()


def _already_queued(prefecture: str, row: Outbox | None) -> str:
    """Today's digest exists (the 9:00 job or an earlier `desk digest`): say when and how far."""
    head = f"都道府県 {prefecture} の本日の日次まとめは、"
    if row is None:  # only a key collision without a row could lead here
        return head + "すでに送信待ちに入っています（日次まとめは1日1回です）。"
    state = DIGEST_STATES.get(row.status, row.status)
    return (head + f"{row.created_at.astimezone(JST):%H:%M} に送信待ちに入れ済みです（{state}）。"
            "日次まとめは1日1回のため、もう一度は送りません。")


async def run_drafts(settings: Settings, action: str, draft_id: int | None,
                     category: str | None = None, phrasings: list[str] | None = None,
                     entry_id: str | None = None, url: str | None = None,
                     force: bool = False, answer_file: Path | None = None) -> int:
    async def work(session: AsyncSession) -> int:
        now = datetime.now(UTC)
        try:
            if action == "list":
                return _print_list(await kb_drafts.list_drafts(session, status=None))
            assert draft_id is not None
            if action == "show":
                draft = await kb_drafts.get_draft(session, draft_id)
                return _print_draft(draft, await kb_drafts.draft_receipt(session, draft))
            if action == "reject":
                await kb_drafts.reject(session, draft_id, now)
                print(f"下書き #{draft_id} を却下しました。")
                return 0
            if action == "edit":
                assert answer_file is not None
                return await _edit(session, draft_id, answer_file)
            assert category is not None
            entry = await kb_drafts.approve(session, draft_id, category,
                                            Path(settings.knowledge_dir), now, phrasings or [],
                                            entry_id, url, force)
        except kb_drafts.DraftError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(f"下書き #{draft_id} を {category}.yaml に追加しました（id: {entry.id}）。"
              "ボットを再起動すると回答に使われます。")
        return 0

    return await with_session(settings, work)


async def _edit(session: AsyncSession, draft_id: int, path: Path) -> int:
    """Replace the draft's answer with the file's text; say what is still one prefecture's."""
    # CLI front-end: a blocking is_file() check before the work is harmless here.
    if not path.is_file():  # noqa: ASYNC240
        print(missing_file(path), file=sys.stderr)
        return 2
    try:
        text, _ = await asyncio.to_thread(decode, path)
    except (OSError, FileProblem) as exc:
        print(f"読み込めませんでした：{getattr(exc, 'strerror', None) or exc}（{path}）",
              file=sys.stderr)
        return 1
    draft, found = await kb_drafts.edit(session, draft_id, text)
    print(f"下書き #{draft_id} の回答を {path} の内容に差し替えました：\n  "
          + draft.answer.replace("\n", "\n  "))
    if found:
        print("まだ一つの都道府県にだけ当てはまる内容があります（このままでは approve "
              "できません）：\n" + "\n".join(f"  ・{item}" for item in found))
    return 0


def _print_list(drafts: list[KbDraft]) -> int:
    if not drafts:
        print("KBの下書きはありません。")
    for d in drafts:
        question = " ".join(d.question.split())[:50]
        print(f"#{d.id}\t{d.status}\t{d.prefecture_code}\t{d.created_at:%Y-%m-%d}\t{question}")
    return 0


def _print_draft(d: KbDraft, receipt: str) -> int:
    print(f"下書き #{d.id}（{d.status}）都道府県 {d.prefecture_code} / 問い合わせ "
          f"{receipt} / 作成 {d.created_at:%Y-%m-%d %H:%M}")
    print(f"\n質問：\n  {d.question}\n\n回答：\n  " + d.answer.replace("\n", "\n  "))
    if d.phrasings:
        print("\n言い換え候補：")
        for p in d.phrasings:
            print(f"  - {p}")
    if d.entry_id:
        print(f"\n知識ベースの項目：{d.category}.yaml / {d.entry_id}")
    elif d.status == "draft" and (found := kb_drafts.local_details(d.answer)):
        print("\n注意：一つの都道府県にだけ当てはまる内容があり、このままでは approve "
              f"できません（kb drafts edit {d.id} --file 回答.txt で直せます）：\n"
              + "\n".join(f"  ・{item}" for item in found))
    return 0
