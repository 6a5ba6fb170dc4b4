"""Knowledge-base drafts: a staff answer becomes a candidate entry that a person reviews.

「KBに追加」 stores question + answer (+ the other ways the clinic asked) as a draft;
`main.py kb drafts approve ID --category C` writes it into knowledge/entries/C.yaml only if
the whole knowledge base still validates.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Escalation, KbDraft
from handlers.desk import NOT_FOUND, DeskRefused, get_escalation
from knowledge.append import append_entry
from knowledge.loader import KnowledgeBaseError
from knowledge.model import CATEGORIES, Entry

Sessions = Callable[[], AsyncSession]
MAX_PHRASINGS = 6
STAFF_SOURCE = "staff-desk"


class DraftError(Exception):
    """A review step that cannot be done; the message says exactly why."""


async def create_draft(sessions: Sessions, pref: str, esc_id: int, staff: str, now: datetime,
                       ) -> tuple[KbDraft, bool]:
    """Store the draft once per escalation; returns (draft, created)."""
    async with sessions() as session:
        esc = await get_escalation(session, pref, esc_id)
        if esc is None:
            raise DeskRefused(NOT_FOUND)
        if esc.status != "answered" or not esc.answer:
            raise DeskRefused("KBに追加できるのは、回答済みの問い合わせだけです。")
        draft = KbDraft(prefecture_code=pref, escalation_id=esc_id, question=esc.question,
                        answer=esc.answer, phrasings=_phrasings(esc), created_by=staff,
                        created_at=now)
        session.add(draft)
        try:
            await session.commit()
        except IntegrityError:  # pressed twice: the first draft stands
            await session.rollback()
            stmt = select(KbDraft).where(KbDraft.escalation_id == esc_id)
            return (await session.exec(stmt)).one(), False
        return draft, True


def _phrasings(esc: Escalation) -> list[str]:
    """Other ways the clinic asked the same thing, from the conversation before escalating."""
    seen = {esc.question.strip()}
    found: list[str] = []
    for turn in esc.context.get("history") or []:
        text = str(turn.get("q") or "").strip() if isinstance(turn, dict) else ""
        if text and text not in seen and turn.get("action") in ("escalate", "suggest"):
            seen.add(text)
            found.append(text)
    return found[:MAX_PHRASINGS]


async def list_drafts(session: AsyncSession, status: str | None = "draft",
                      prefecture: str | None = None) -> list[KbDraft]:
    stmt = select(KbDraft).order_by(col(KbDraft.id))
    if status:
        stmt = stmt.where(KbDraft.status == status)
    if prefecture:
        stmt = stmt.where(KbDraft.prefecture_code == prefecture)
    return list((await session.exec(stmt)).all())


async def get_draft(session: AsyncSession, draft_id: int) -> KbDraft:
    draft = await session.get(KbDraft, draft_id)
    if draft is None:
        raise DraftError(f"下書き #{draft_id} は見つかりません。")
    return draft


def entry_data(draft: KbDraft, category: str, extra_phrasings: list[str],
               entry_id: str | None = None, url: str | None = None) -> dict[str, object]:
    """The YAML entry a draft becomes (validated by the Entry model when appended)."""
    assert draft.id is not None
    receipt = f"Q{draft.prefecture_code}-{draft.escalation_id:06d}"
    phrasings = list(dict.fromkeys(p.strip() for p in [*draft.phrasings, *extra_phrasings]
                                   if p.strip() and p.strip() != draft.question.strip()))
    source = ({"url": url} if url else
              {"file": STAFF_SOURCE, "section": f"{receipt} 都道府県担当者の回答"
                                               f"（{draft.created_at:%Y-%m-%d}）"})
    return {"id": entry_id or f"{category}-desk-{draft.id}", "category": category,
            "question": draft.question.strip(), "phrasings": phrasings,
            "answer": draft.answer.strip(), "route": "prefecture", "source": [source]}


async def approve(session: AsyncSession, draft_id: int, category: str, directory: Path,
                  now: datetime, extra_phrasings: list[str] | None = None,
                  entry_id: str | None = None, url: str | None = None) -> Entry:
    """Append the draft to the knowledge base and mark it approved; all or nothing."""
    if category not in CATEGORIES:
        raise DraftError(f"カテゴリ {category!r} はありません（{', '.join(CATEGORIES)}）。")
    draft = await get_draft(session, draft_id)
    if draft.status != "draft":
        raise DraftError(f"下書き #{draft_id} は既に {draft.status} です。")
    data = entry_data(draft, category, extra_phrasings or [], entry_id, url)
    try:
        entry = append_entry(directory, data)
    except ValidationError as exc:
        problems = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        if any(e["loc"][:1] == ("phrasings",) for e in exc.errors()):
            problems.append("  → 言い換えを --phrasing \"…\" で追加してください"
                            "（2つ以上必要です）。")
        raise DraftError("この下書きはまだ知識ベースの項目になりません：\n"
                         + "\n".join(problems)) from exc
    except KnowledgeBaseError as exc:
        raise DraftError("追加すると知識ベースが不正になるため、追加しませんでした：\n"
                         + "\n".join(f"  {p}" for p in exc.problems)) from exc
    draft.status, draft.category, draft.entry_id, draft.reviewed_at = (
        "approved", category, entry.id, now)
    session.add(draft)
    await session.commit()
    return entry


async def reject(session: AsyncSession, draft_id: int, now: datetime) -> KbDraft:
    draft = await get_draft(session, draft_id)
    if draft.status != "draft":
        raise DraftError(f"下書き #{draft_id} は既に {draft.status} です。")
    draft.status, draft.reviewed_at = "rejected", now
    session.add(draft)
    await session.commit()
    return draft
