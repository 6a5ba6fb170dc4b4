"""Bulk test data: N clinics in one prefecture, each with a linked Telegram chat account."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import insert, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import ChatAccount, Institution
from db.seed import ensure_prefecture

CHUNK = 5000


async def seed_linked_clinics(session: AsyncSession, pref: str, count: int, now: datetime, *,
                              first_chat: int = 1_000_000, unlinked_every: int = 0) -> None:
    """Clinics 未報告 with chat ids first_chat.. ; every `unlinked_every`-th has no account."""
    await ensure_prefecture(session, pref, date(2026, 11, 24), "G-MIS")
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        await session.exec(insert(Institution), params=[  # type: ignore[call-overload]
            dict(prefecture_code=pref, code=f"B{i:08d}", name=f"ベンチ診療所{i}", kind="clinic",
                 status="未報告", special_function=False, dental=False, closed_on_jan1=False,
                 municipality="", medical_area="", email="", phone="")
            for i in range(start, stop)])
    ids = (await session.exec(select(Institution.id).where(  # type: ignore[call-overload]
        Institution.prefecture_code == pref, col(Institution.code).startswith("B"))
        .order_by(col(Institution.code)))).scalars().all()
    accounts = [dict(channel="telegram", external_user_id=str(first_chat + n),
                     prefecture_code=pref, institution_id=inst_id, reachable=True,
                     linked_at=now, created_at=now)
                for n, inst_id in enumerate(ids)
                if not (unlinked_every and n % unlinked_every == unlinked_every - 1)]
    for start in range(0, len(accounts), CHUNK):
        await session.exec(insert(ChatAccount), params=accounts[start:start + CHUNK])  # type: ignore[call-overload]
    await session.commit()
