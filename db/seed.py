"""Demo data: one prefecture and a handful of institutions in every status."""

from __future__ import annotations

from datetime import date

from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Institution, Prefecture
from db.prefectures import NAMES, default_period

DEMO_INSTITUTIONS = [
    dict(code="9990001", name="デモ内科クリニック", kind="clinic", status="未報告"),
    dict(code="9990002", name="デモ中央病院", kind="hospital", status="報告済"),
    dict(code="9990003", name="デモ在宅診療所", kind="clinic", status="差し戻し",
         return_reason="2号機能（ハ）在宅医療の訪問診療件数が未入力です"),
    dict(code="9990004", name="デモ大学病院", kind="hospital", special_function=True,
         status="対象外"),
    dict(code="9990005", name="デモ歯科医院", kind="clinic", dental=True, status="対象外"),
]


async def ensure_prefecture(session: AsyncSession, code: str, today: date, gmis_contact: str,
                            *, commit: bool = True) -> Prefecture:
    """Create the prefecture with the statutory period if it does not exist yet. With
    `commit=False` it joins the caller's transaction (an import that fails leaves no trace)."""
    pref = await session.get(Prefecture, code)
    if pref is None:
        start, end = default_period(today)
        pref = Prefecture(code=code, name=NAMES[code], period_start=start, period_end=end,
                          inquiry_contact=f"{NAMES[code]} かかりつけ医機能報告 担当窓口",
                          gmis_contact=gmis_contact)
        session.add(pref)
        if commit:
            await session.commit()
    return pref


async def seed_demo(session: AsyncSession, code: str, today: date, gmis_contact: str,
                    current: bool = False) -> None:
    """`current`: the demo chat's own database keeps its prefecture on today's cycle, run
    after run (a database made last year would show last year's deadline)."""
    pref = await ensure_prefecture(session, code, today, gmis_contact)
    if current:
        pref.period_start, pref.period_end = default_period(today)
        session.add(pref)
    for spec in DEMO_INSTITUTIONS:
        if await _exists(session, code, str(spec["code"])):
            continue
        session.add(Institution(prefecture_code=code, municipality="デモ市",
                                medical_area="デモ医療圏", **spec))  # type: ignore[arg-type]
    await session.commit()


async def _exists(session: AsyncSession, pref: str, inst_code: str) -> bool:
    from sqlmodel import select

    stmt = select(Institution.id).where(Institution.prefecture_code == pref,
                                        Institution.code == inst_code)
    return (await session.exec(stmt)).first() is not None
