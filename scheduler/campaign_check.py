"""The last look before a campaign message leaves: is it still wanted, and is it allowed now?

Run by the outbox dispatcher on each claimed batch (see scheduler.policies). A row is
skipped when its campaign was cancelled, when the institution's status no longer calls for
the message (it reported meanwhile), when it became exempt (a roster re-import marked it
歯科 or 休院), or when the chat account was unlinked or blocked the bot; it is deferred (not
an attempt) when the prefecture's sending window is closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Campaign, ChatAccount, Institution, Outbox, Prefecture
from handlers.rules import EXEMPTIONS, exemption
from scheduler.calendar import next_slot, sending_hours

if TYPE_CHECKING:
    from scheduler.outbox import Outcome

# Which report statuses each campaign kind is for; anything else means "nothing to chase".
TARGET_STATUSES: Mapping[str, tuple[str, ...]] = {
    "annai": ("未報告", "差し戻し"),
    "dunning": ("未報告", "差し戻し"),
    "returned": ("差し戻し",),
}


async def check_campaign_rows(session: AsyncSession, rows: list[Outbox], now: datetime,
                              ) -> dict[int, Outcome]:
    from scheduler.outbox import Outcome

    campaigns = await _by_id(session, {_get(r, "campaign_id") for r in rows},
                             Campaign.id, Campaign.status, Campaign.kind,
                             Campaign.prefecture_code)
    insts = await _by_id(session, {_get(r, "institution_id") for r in rows},
                         Institution.id, Institution.prefecture_code, Institution.status,
                         *(getattr(Institution, flag) for flag in EXEMPTIONS))
    accounts = await _by_id(session, {_get(r, "account_id") for r in rows},
                            ChatAccount.id, ChatAccount.institution_id, ChatAccount.reachable)
    prefs = await _by_id(session, {r.prefecture_code for r in rows},
                         Prefecture.code, Prefecture.send_start_hour, Prefecture.send_end_hour)
    verdicts: dict[int, Outcome] = {}
    for row in rows:
        assert row.id is not None
        if _get(row, "campaign_id") is None:
            continue  # a one-off message of this kind, not governed by a campaign
        reason = _reason(row, campaigns, insts, accounts)
        if reason:
            verdicts[row.id] = Outcome("skipped", reason)
            continue
        pref = prefs.get(row.prefecture_code)
        slot = next_slot(now, *sending_hours(pref))
        if slot > now:
            verdicts[row.id] = Outcome("defer", "outside sending hours",
                                       retry_after=(slot - now).total_seconds())
    return verdicts


def _reason(row: Outbox, campaigns: dict[Any, Any], insts: dict[Any, Any],
            accounts: dict[Any, Any]) -> str | None:
    campaign = campaigns.get(_get(row, "campaign_id"))
    if campaign is None or campaign.prefecture_code != row.prefecture_code:
        return "campaign not found"  # never another prefecture's campaign
    if campaign.status == "cancelled":
        return "campaign cancelled"
    inst = insts.get(_get(row, "institution_id"))
    if inst is None or inst.prefecture_code != row.prefecture_code:
        return "institution not found"
    if inst.status not in TARGET_STATUSES.get(campaign.kind, ()):
        return f"status is now {inst.status}"
    if flag := exemption(inst):
        return f"exempt now ({flag})"
    account = accounts.get(_get(row, "account_id"))
    if account is None or account.institution_id != inst.id:
        return "chat account no longer linked"
    if not account.reachable:
        return "chat account unreachable"
    return None


def _get(row: Outbox, name: str) -> int | None:
    value = (row.payload or {}).get(name)
    return int(value) if value is not None else None


async def _by_id(session: AsyncSession, ids: set[Any], key: Any, *columns: Any,
                 ) -> dict[Any, Any]:
    """Rows of just the columns the check reads, by `key`: plain rows are far cheaper to load
    than ORM objects, and a batch loads one per recipient."""
    ids.discard(None)
    if not ids:
        return {}
    found = (await session.exec(select(key, *columns).where(col(key).in_(ids)))).all()
    return {row[0]: row for row in found}
