"""The daily digest for a prefecture's staff: open escalations, reporting progress, and the
questions the bot most often could not answer (the knowledge base's to-do list)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db import repo
from db.models import (
    ChatAccount,
    ConversationLog,
    Escalation,
    Institution,
    Prefecture,
    desk_channel,
)
from handlers.desk_card import OPEN_STATUSES, STATUS_LABELS, format_age, staff_ref
from handlers.rules import EXEMPTIONS, REPORTED_STATUSES
from scheduler import outbox
from scheduler.calendar import JST

EXEMPT = "対象外"
CONFIRMED = ("確認済",)
UNANSWERED_ACTIONS = ("escalate", "suggest")
OPEN_SHOWN, AREAS_SHOWN = 15, 30


@dataclass(frozen=True)
class Progress:
    name: str
    targets: int
    reported: int
    confirmed: int

    @property
    def reported_rate(self) -> float:
        return self.reported / self.targets if self.targets else 0.0

    @property
    def confirmed_rate(self) -> float:
        return self.confirmed / self.targets if self.targets else 0.0


@dataclass(frozen=True)
class OpenItem:
    receipt: str
    status: str
    age: str
    claimed_by: str | None
    question: str


@dataclass(frozen=True)
class Digest:
    prefecture_code: str
    prefecture_name: str
    day: date
    open_items: tuple[OpenItem, ...]
    unclaimed: int
    overall: Progress
    by_municipality: tuple[Progress, ...]
    unanswered: tuple[tuple[str, int], ...]
    days: int


async def build_digest(session: AsyncSession, pref: str, now: datetime, days: int = 7,
                       top: int = 5) -> Digest:
    prefecture = await session.get(Prefecture, pref)
    items = await _open_items(session, pref, now)
    overall, areas = await _progress(session, pref)
    return Digest(pref, prefecture.name if prefecture else pref, now.astimezone(JST).date(),
                  tuple(items), sum(i.status == "open" for i in items), overall, tuple(areas),
                  tuple(await _unanswered(session, pref, now - timedelta(days=days), top)), days)


async def _open_items(session: AsyncSession, pref: str, now: datetime) -> list[OpenItem]:
    stmt = (select(Escalation).where(Escalation.prefecture_code == pref,
                                     col(Escalation.status).in_(OPEN_STATUSES))
            .order_by(col(Escalation.created_at), col(Escalation.id)))
    return [OpenItem(e.receipt, e.status, format_age(e.created_at, now), e.claimed_by,
                     " ".join(e.question.split())[:60])
            for e in (await session.exec(stmt)).all()]


async def _progress(session: AsyncSession, pref: str) -> tuple[Progress, list[Progress]]:
    """Counts per municipality from Institution.status. Exempt institutions are not targets:
    by the same flags the chat check and the campaigns use, or a status of 対象外."""
    stmt = (select(Institution.municipality, Institution.status, func.count())
            .where(Institution.prefecture_code == pref, Institution.status != EXEMPT,
                   repo.reports_this_year(EXEMPTIONS))
            .group_by(col(Institution.municipality), col(Institution.status)))
    counts: dict[str, Counter[str]] = {}
    for area, status, n in (await session.exec(stmt)).all():
        counts.setdefault(area or "（市区町村未設定）", Counter())[status] += int(n)
    areas = [_tally(name, c) for name, c in counts.items()]
    areas.sort(key=lambda p: (p.reported_rate, p.name))  # furthest behind first
    total = sum((c for c in counts.values()), Counter())
    return _tally("全体", total), areas


def _tally(name: str, c: Counter[str]) -> Progress:
    return Progress(name, sum(c.values()), sum(c[s] for s in REPORTED_STATUSES),
                    sum(c[s] for s in CONFIRMED))


async def _unanswered(session: AsyncSession, pref: str, since: datetime, top: int,
                      ) -> list[tuple[str, int]]:
    """Questions the bot escalated or only guessed at, grouped by normalised text. An
    unlinked chat's turns before it said its prefecture are logged with none: they are the
    desk's once the chat has said or linked this prefecture (read from the account, so the
    turn that said it counts too), or when the bot serves this prefecture alone."""
    alone = [p.code for p in await repo.prefectures(session)] == [pref]
    log, account = ConversationLog, ChatAccount
    unassigned = col(log.prefecture_code).is_(None)
    told = col(account.prefecture_code) == pref
    if alone:
        told = told | col(account.prefecture_code).is_(None)
    mine = (col(log.prefecture_code) == pref) | (unassigned & told)
    stmt = select(log.inbound_text).outerjoin(account, and_(
        col(account.channel) == col(log.channel),
        col(account.external_user_id) == col(log.external_user_id))).where(
        mine, ConversationLog.created_at >= since,
        col(ConversationLog.action).in_(UNANSWERED_ACTIONS),
        col(ConversationLog.payload).is_(None))
    groups: dict[str, Counter[str]] = {}
    for text in (await session.exec(stmt)).all():
        if text and text.strip():
            groups.setdefault(question_key(text), Counter())[text.strip()] += 1
    ranked = sorted(groups.values(), key=lambda c: (-c.total(), c.most_common(1)[0][0]))
    return [(c.most_common(1)[0][0], c.total()) for c in ranked[:top]]


def question_key(text: str) -> str:
    """Same question typed a little differently (width, spaces, punctuation) → same key."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "Z")))


def render_digest(d: Digest) -> str:
    lines = [f"📋 かかりつけ医機能報告 日次まとめ（{d.prefecture_name}・"
             f"{d.day:%Y年%m月%d日}）", "",
             f"■ 未完了の問い合わせ：{len(d.open_items)}件（うち担当者未定 {d.unclaimed}件）"]
    for item in d.open_items[:OPEN_SHOWN]:
        who = f"担当 {staff_ref(item.claimed_by)}" if item.claimed_by else "担当未定"
        lines.append(f"・{item.receipt}｜{STATUS_LABELS.get(item.status, item.status)}｜"
                     f"{item.age}｜{who}｜{item.question}")
    if len(d.open_items) > OPEN_SHOWN:
        lines.append(f"・ほか{len(d.open_items) - OPEN_SHOWN}件")
    lines += ["", f"■ 報告状況（報告対象 {d.overall.targets}機関）", _progress_line(d.overall)]
    for area in d.by_municipality[:AREAS_SHOWN]:
        lines.append(_progress_line(area))
    if len(d.by_municipality) > AREAS_SHOWN:
        lines.append(f"・ほか{len(d.by_municipality) - AREAS_SHOWN}市区町村")
    lines += ["", f"■ ボットが答えられなかった質問（直近{d.days}日）"]
    lines += [f"{i}. {q}（{n}回）" for i, (q, n) in enumerate(d.unanswered, 1)] or ["・なし"]
    return "\n".join(lines)


def _progress_line(p: Progress) -> str:
    return (f"・{p.name}：報告済 {p.reported}/{p.targets}（{p.reported_rate:.0%}）"
            f"　確認済 {p.confirmed}/{p.targets}（{p.confirmed_rate:.0%}）")


def digest_key(prefecture_code: str, day: date) -> str:
    """One digest per prefecture and day, whoever queues it (the 9:00 job or `desk digest`):
    a second `desk digest` the same day had posted the same figures to Slack again."""
    return f"digest:{prefecture_code}:{day.isoformat()}"


async def enqueue_digest(sessions: Callable[[], AsyncSession], prefecture_code: str,
                         now: datetime) -> bool:
    """Queue today's digest for the prefecture's staff channel; False when today's is
    queued (or sent) already."""
    async with sessions() as session:
        digest = await build_digest(session, prefecture_code, now)
        pref = await session.get(Prefecture, prefecture_code)
        return await outbox.enqueue(
            session, key=digest_key(prefecture_code, digest.day), channel="slack",
            recipient=desk_channel(pref), kind="digest",
            body=render_digest(digest), prefecture_code=prefecture_code, now=now)
