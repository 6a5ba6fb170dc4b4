"""Operator commands for the staff desk: channel mapping, digest now, KB draft review."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.admin import registered, with_session
from bot.settings import Settings
from db.engine import make_engine, make_sessionmaker
from db.models import KbDraft
from handlers import desk, kb_drafts
from handlers.desk_digest import enqueue_digest


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
    try:
        async with make_sessionmaker(engine)() as session:
            if await registered(session, prefecture) is None:
                return 1
        await enqueue_digest(make_sessionmaker(engine), prefecture, datetime.now(UTC),
                             manual=True)
    finally:
        await engine.dispose()
    print(f"都道府県 {prefecture} の日次まとめを送信待ちに入れました。"
          "実行中のボット（main.py run）がSlackへ送ります。")
    return 0


async def run_drafts(settings: Settings, action: str, draft_id: int | None,
                     category: str | None = None, phrasings: list[str] | None = None,
                     entry_id: str | None = None, url: str | None = None) -> int:
    async def work(session: AsyncSession) -> int:
        now = datetime.now(UTC)
        try:
            if action == "list":
                return _print_list(await kb_drafts.list_drafts(session, status=None))
            assert draft_id is not None
            if action == "show":
                return _print_draft(await kb_drafts.get_draft(session, draft_id))
            if action == "reject":
                await kb_drafts.reject(session, draft_id, now)
                print(f"下書き #{draft_id} を却下しました。")
                return 0
            assert category is not None
            entry = await kb_drafts.approve(session, draft_id, category,
                                            Path(settings.knowledge_dir), now, phrasings or [],
                                            entry_id, url)
        except kb_drafts.DraftError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(f"下書き #{draft_id} を {category}.yaml に追加しました（id: {entry.id}）。"
              "ボットを再起動すると回答に使われます。")
        return 0

    return await with_session(settings, work)


def _print_list(drafts: list[KbDraft]) -> int:
    if not drafts:
        print("KBの下書きはありません。")
    for d in drafts:
        question = " ".join(d.question.split())[:50]
        print(f"#{d.id}\t{d.status}\t{d.prefecture_code}\t{d.created_at:%Y-%m-%d}\t{question}")
    return 0


def _print_draft(d: KbDraft) -> int:
    print(f"下書き #{d.id}（{d.status}）都道府県 {d.prefecture_code} / 問い合わせ "
          f"Q{d.prefecture_code}-{d.escalation_id:06d} / 作成 {d.created_at:%Y-%m-%d %H:%M}")
    print(f"\n質問：\n  {d.question}\n\n回答：\n  " + d.answer.replace("\n", "\n  "))
    if d.phrasings:
        print("\n言い換え候補：")
        for p in d.phrasings:
            print(f"  - {p}")
    if d.entry_id:
        print(f"\n知識ベースの項目：{d.category}.yaml / {d.entry_id}")
    return 0
