"""Staff look-up of an institution of their own prefecture, by 医療機関コード or name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import ChatAccount, Institution
from handlers.rules import judgement_text

MAX_RESULTS = 5
USAGE = ("医療機関コード（例：1234567）または医療機関名の一部を続けて入力してください。"
         "例：{command} 中央病院")


@dataclass(frozen=True)
class InstitutionSummary:
    name: str
    code: str
    municipality: str
    status: str
    confirmation: str | None
    return_reason: str | None
    linked_accounts: int
    unreachable_accounts: int
    judgement: str | None = None  # from imported report answers, by the clinics' rules


    def text(self) -> str:
        lines = [f"【{self.name}】（医療機関コード {self.code}）{self.municipality}",
                 f"報告状況：{self.status}　体制の確認：{self.confirmation or '—'}",
                 f"連携済みチャット：{self.linked_accounts}件"
                 + (f"（うち連絡が届かない {self.unreachable_accounts}件）"
                    if self.unreachable_accounts else "")]
        if self.return_reason and self.status == "差し戻し":
            lines.append(f"差し戻し理由：{self.return_reason}")
        if self.judgement:
            lines.append(self.judgement)
        return "\n".join(lines)


async def lookup(sessions: Callable[[], AsyncSession], pref: str, query: str,
                 ) -> tuple[list[InstitutionSummary], int]:
    """Matches in this prefecture only (exact code first, else name contains), and the total."""
    query = " ".join(query.split())
    if not query:
        return [], 0
    async with sessions() as session:
        by_code = select(Institution).where(Institution.prefecture_code == pref,
                                            Institution.code == query)
        found = list((await session.exec(by_code)).all())
        total = len(found)
        if not found:
            where = (Institution.prefecture_code == pref,
                     col(Institution.name).contains(query, autoescape=True))
            total = (await session.exec(select(func.count()).select_from(Institution)
                                        .where(*where))).one()
            stmt = select(Institution).where(*where).order_by(col(Institution.code))
            found = list((await session.exec(stmt.limit(MAX_RESULTS))).all())
        return [await _summary(session, inst) for inst in found], int(total)


async def _summary(session: AsyncSession, inst: Institution) -> InstitutionSummary:
    stmt = (select(ChatAccount.reachable, func.count())
            .where(ChatAccount.institution_id == inst.id)
            .group_by(col(ChatAccount.reachable)))
    counts = {bool(reachable): int(n) for reachable, n in (await session.exec(stmt)).all()}
    return InstitutionSummary(
        name=inst.name, code=inst.code, municipality=inst.municipality, status=inst.status,
        confirmation=inst.confirmation, return_reason=inst.return_reason,
        linked_accounts=counts.get(True, 0) + counts.get(False, 0),
        unreachable_accounts=counts.get(False, 0),
        judgement=judgement_text(inst.report))


def lookup_text(results: list[InstitutionSummary], total: int, query: str,
                command: str = "/kakaritsuke") -> str:
    """The answer staff see, as plain text."""
    if not query.strip():
        return USAGE.format(command=command)
    if not results:
        return f"「{query}」に一致する医療機関は、この都道府県の名簿に見つかりませんでした。"
    more = f"\n\nほか{total - len(results)}件あります。名前を詳しく入力してください。" \
        if total > len(results) else ""
    return "\n\n".join(r.text() for r in results) + more
