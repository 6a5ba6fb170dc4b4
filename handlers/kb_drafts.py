"""Knowledge-base drafts: a staff answer becomes a candidate entry that a person reviews.

「KBに追加」 stores question + answer (+ the other ways the clinic asked) as a draft;
`main.py kb drafts approve ID --category C` writes it into knowledge/entries/C.yaml only if
the whole knowledge base still validates, and only if the answer holds nothing that is
one prefecture's own (see local_details): every prefecture's clinics read that knowledge
base. `kb drafts edit` replaces a draft's answer; `--force` approves a national one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Escalation, KbDraft, Prefecture
from db.prefectures import NAMES
from handlers.desk import NOT_FOUND, DeskRefused, get_escalation
from knowledge.append import append_entry
from knowledge.loader import KnowledgeBaseError
from knowledge.model import CATEGORIES, Entry

Sessions = Callable[[], AsyncSession]
MAX_PHRASINGS = 6
STAFF_SOURCE = "staff-desk"
# One prefecture's own details, which clinics of the other 46 must not read as theirs. Kept
# to what an operator can check by eye: a phone or fax number (0 and 9–10 more digits, with
# or without hyphens or brackets), a mail address, a prefecture site (pref.*.jp,
# metro.tokyo.*), a prefecture's name, and the words a prefecture uses for itself. ASCII
# classes (the text is NFKC'd first): in 「メールはa@b.jp」 the address is a@b.jp.
PHONE = re.compile(r"(?<![\d-])(?:(?:\(0\d{1,4}\)|0\d{1,4})[-\s]?\d{1,4}-\d{3,4}|0\d{9,10})"
                   r"(?![\d-])", re.ASCII)
MAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.ASCII)
PREF_SITE = re.compile(r"(?:https?://)?[\w.-]*\b(?:pref\.[a-z]+|metro\.tokyo)(?:\.lg)?\.jp"
                       r"[\w./?%&=#~-]*", re.IGNORECASE | re.ASCII)
SELF_WORDS = ("当県", "本県", "当府", "本府", "当都", "本都", "当道", "本道")
# Dashes a staff member may type in a number (NFKC leaves them as they are).
DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−ーｰ"})


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


async def draft_receipt(session: AsyncSession, draft: KbDraft) -> str:
    """The receipt of the inquiry a draft came from, as its clinic and staff know it (the
    prefecture's own number, not the row id the draft points at)."""
    esc = await get_escalation(session, draft.prefecture_code, draft.escalation_id)
    assert esc is not None  # a foreign key, in the draft's own prefecture
    return esc.receipt


def entry_data(draft: KbDraft, receipt: str, category: str, extra_phrasings: list[str],
               entry_id: str | None = None, url: str | None = None) -> dict[str, object]:
    """The YAML entry a draft becomes (validated by the Entry model when appended);
    `receipt` is draft_receipt's."""
    assert draft.id is not None
    phrasings = list(dict.fromkeys(p.strip() for p in [*draft.phrasings, *extra_phrasings]
                                   if p.strip() and p.strip() != draft.question.strip()))
    source = ({"url": url} if url else
              {"file": STAFF_SOURCE, "section": f"{receipt} 都道府県担当者の回答"
                                               f"（{draft.created_at:%Y-%m-%d}）"})
    return {"id": entry_id or f"{category}-desk-{draft.id}", "category": category,
            "question": draft.question.strip(), "phrasings": phrasings,
            "answer": draft.answer.strip(), "route": "prefecture", "source": [source]}


def local_details(answer: str, contact: str = "") -> list[str]:
    """What in `answer` belongs to one prefecture, each as the operator should look for it;
    `contact` is the draft's prefecture's own 問い合わせ先 (calendar set --contact)."""
    text = unicodedata.normalize("NFKC", answer).translate(DASHES)
    found = [f"メールアドレス「{m}」" for m in MAIL.findall(text)]
    text_wo_mail = MAIL.sub(" ", text)
    found += [f"都道府県のサイト「{m}」" for m in PREF_SITE.findall(text_wo_mail)]
    found += [f"電話・FAX番号「{m}」" for m in PHONE.findall(PREF_SITE.sub(" ", text_wo_mail))]
    found += [f"都道府県名「{name}」" for name in NAMES.values() if name in text]
    found += [f"「{word}」（都道府県が自分を指す言葉）" for word in SELF_WORDS if word in text]
    contact = unicodedata.normalize("NFKC", contact).translate(DASHES).strip()
    if contact and contact in text:
        found.append(f"この都道府県の問い合わせ先「{contact}」")
    return list(dict.fromkeys(found))


async def _local_details(session: AsyncSession, draft: KbDraft) -> list[str]:
    pref = await session.get(Prefecture, draft.prefecture_code)
    return local_details(draft.answer, pref.inquiry_contact if pref else "")


def _refusal(draft: KbDraft, found: list[str]) -> DraftError:
    return DraftError(
        f"下書き #{draft.id} の回答には、一つの都道府県にだけ当てはまる内容があるため、"
        "知識ベースに追加しませんでした（知識ベースは、すべての都道府県の医療機関が読みます）：\n"
        + "\n".join(f"  ・{item}" for item in found)
        + f"\n回答をどの都道府県にも当てはまる文面に直し（問い合わせ先は「都道府県の担当窓口」"
        f"などと書きます）、kb drafts edit {draft.id} --file 回答.txt で下書きの回答を"
        "差し替えてから、もう一度 approve してください。全国共通の内容（全国の窓口の番号、"
        "各地の事例の紹介など）であれば、--force を付けると追加できます。")


async def edit(session: AsyncSession, draft_id: int, answer: str) -> tuple[KbDraft, list[str]]:
    """Replace a draft's answer (before review); returns it and what is still one
    prefecture's own in the new answer (empty when approve will take it)."""
    draft = await get_draft(session, draft_id)
    if draft.status != "draft":
        raise DraftError(f"下書き #{draft_id} は既に {draft.status} です。")
    if not answer.strip():
        raise DraftError("回答が空です。ファイルに新しい回答の文面を書いてください。")
    draft.answer = answer.strip()
    session.add(draft)
    await session.commit()
    return draft, await _local_details(session, draft)


async def approve(session: AsyncSession, draft_id: int, category: str, directory: Path,
                  now: datetime, extra_phrasings: list[str] | None = None,
                  entry_id: str | None = None, url: str | None = None,
                  force: bool = False) -> Entry:
    """Append the draft to the knowledge base and mark it approved; all or nothing. An
    answer with one prefecture's own details is refused unless `force`."""
    if category not in CATEGORIES:
        raise DraftError(f"カテゴリ {category!r} はありません（{', '.join(CATEGORIES)}）。")
    draft = await get_draft(session, draft_id)
    if draft.status != "draft":
        raise DraftError(f"下書き #{draft_id} は既に {draft.status} です。")
    if not force and (found := await _local_details(session, draft)):
        raise _refusal(draft, found)
    data = entry_data(draft, await draft_receipt(session, draft), category,
                      extra_phrasings or [], entry_id, url)
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
