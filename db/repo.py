"""Repository functions: the only place handlers reach for SQL. Tenant-owned rows are
always looked up with their prefecture code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import (
    ChatAccount,
    ConversationLog,
    ConversationState,
    Escalation,
    Institution,
    Prefecture,
)


async def ensure_account(
    session: AsyncSession, channel: str, user_id: str, display_name: str | None = None
) -> ChatAccount:
    """Fetch the chat account, creating it on first contact (safe under concurrency)."""
    found = await _account(session, channel, user_id)
    if found:
        return found
    account = ChatAccount(channel=channel, external_user_id=user_id, display_name=display_name)
    session.add(account)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        found = await _account(session, channel, user_id)
        assert found is not None
        return found
    return account


async def _account(session: AsyncSession, channel: str, user_id: str) -> ChatAccount | None:
    stmt = select(ChatAccount).where(
        ChatAccount.channel == channel, ChatAccount.external_user_id == user_id
    )
    return (await session.exec(stmt)).first()


async def get_prefecture(session: AsyncSession, code: str) -> Prefecture | None:
    return await session.get(Prefecture, code)


async def get_institution(
    session: AsyncSession, prefecture_code: str, institution_id: int
) -> Institution | None:
    stmt = select(Institution).where(
        Institution.prefecture_code == prefecture_code, Institution.id == institution_id
    )
    return (await session.exec(stmt)).first()


async def log_turn(session: AsyncSession, **fields: Any) -> None:
    session.add(ConversationLog(**fields))
    await session.commit()


async def recent_turns(
    session: AsyncSession, channel: str, user_id: str, limit: int = 10
) -> list[ConversationLog]:
    """The user's latest turns, newest first."""
    stmt = (
        select(ConversationLog)
        .where(ConversationLog.channel == channel, ConversationLog.external_user_id == user_id)
        .order_by(col(ConversationLog.id).desc())
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def get_state(session: AsyncSession, channel: str, user_id: str) -> ConversationState | None:
    return await session.get(ConversationState, (channel, user_id))


async def set_state(
    session: AsyncSession, channel: str, user_id: str, flow: str, data: dict[str, Any],
    now: datetime,
) -> None:
    state = await session.get(ConversationState, (channel, user_id))
    if state is None:
        state = ConversationState(channel=channel, external_user_id=user_id, flow=flow)
    state.flow, state.data, state.updated_at = flow, dict(data), now
    session.add(state)
    await session.commit()


async def clear_state(session: AsyncSession, channel: str, user_id: str) -> None:
    state = await session.get(ConversationState, (channel, user_id))
    if state is not None:
        await session.delete(state)
        await session.commit()


async def create_escalation(
    session: AsyncSession, prefecture_code: str, account_id: int, question: str,
    context: dict[str, Any], now: datetime,
) -> Escalation:
    esc = Escalation(prefecture_code=prefecture_code, chat_account_id=account_id,
                     question=question, context=context, created_at=now, updated_at=now)
    session.add(esc)
    await session.commit()
    await session.refresh(esc)
    return esc


async def set_reachable(session: AsyncSession, channel: str, user_id: str, reachable: bool,
                        ) -> bool:
    """Record whether messages reach this account (False: the user blocked the bot);
    True when this call changed it. Reads first, so the common no-change case never writes."""
    account = await _account(session, channel, user_id)
    if account is None or account.reachable == reachable:
        return False
    account.reachable = reachable
    session.add(account)
    await session.commit()
    return True
