"""Repository functions: the only place handlers reach for SQL. Tenant-owned rows are
always looked up with their prefecture code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import EllipsisType
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, insert, text, tuple_, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
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

# Every message reads its sender and writes its log row: these two run as SQLAlchemy Core
# statements on a bare connection (one round trip each), not through the ORM.
_ACCOUNT: Table = ChatAccount.__table__  # type: ignore[attr-defined]
_STATE: Table = ConversationState.__table__  # type: ignore[attr-defined]
_LOG: Table = ConversationLog.__table__  # type: ignore[attr-defined]
_ESCALATION: Table = Escalation.__table__  # type: ignore[attr-defined]
_SENDERS = (
    core_select(_ACCOUNT.c.channel, _ACCOUNT.c.external_user_id, _ACCOUNT.c.id,
                _ACCOUNT.c.prefecture_code, _ACCOUNT.c.institution_id, _ACCOUNT.c.reachable,
                _STATE.c.flow, _STATE.c.data, _STATE.c.updated_at)
    .select_from(_ACCOUNT.outerjoin(_STATE, and_(
        _STATE.c.channel == _ACCOUNT.c.channel,
        _STATE.c.external_user_id == _ACCOUNT.c.external_user_id)))
    .where(tuple_(_ACCOUNT.c.channel, _ACCOUNT.c.external_user_id)
           .in_(bindparam("keys", expanding=True)))
)
_ADD_TURN = insert(_LOG)
_ADD_ACCOUNT = insert(_ACCOUNT)


@dataclass(frozen=True)
class Sender:
    """Who wrote a message, as it arrives: the chat account and any flow in progress."""

    account_id: int
    prefecture_code: str | None
    institution_id: int | None
    reachable: bool
    flow: str | None
    flow_data: dict[str, Any]
    flow_updated_at: datetime | None


async def load_senders(conn: AsyncConnection, keys: list[tuple[str, str]],
                       ) -> list[Sender | None]:
    """For each (channel, user id): account and flow state, read in one statement; None
    before the user's first message."""
    rows = (await conn.execute(_SENDERS, {"keys": list(set(keys))})).all()
    found = {(r.channel, r.external_user_id): Sender(
        r.id, r.prefecture_code, r.institution_id, bool(r.reachable), r.flow,
        dict(r.data or {}), r.updated_at) for r in rows}
    return [found.get(key) for key in keys]


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


async def add_account(conn: AsyncConnection, channel: str, user_id: str,
                      display_name: str | None, now: datetime) -> Sender:
    """Create the account of a first message; IntegrityError if it exists after all."""
    result = await conn.execute(_ADD_ACCOUNT, {
        "channel": channel, "external_user_id": user_id, "display_name": display_name,
        "reachable": True, "created_at": now})
    key = result.inserted_primary_key
    assert key is not None
    return Sender(key[0], None, None, True, None, {}, None)


async def _account(session: AsyncSession, channel: str, user_id: str) -> ChatAccount | None:
    stmt = select(ChatAccount).where(
        ChatAccount.channel == channel, ChatAccount.external_user_id == user_id
    )
    return (await session.exec(stmt)).first()


async def get_institution(
    session: AsyncSession, prefecture_code: str, institution_id: int
) -> Institution | None:
    stmt = select(Institution).where(
        Institution.prefecture_code == prefecture_code, Institution.id == institution_id
    )
    return (await session.exec(stmt)).first()


async def institution_and_prefecture(session: AsyncSession, prefecture_code: str,
                                     institution_id: int,
                                     ) -> tuple[Institution, Prefecture] | None:
    """What a status answer needs, in one round trip (tenant-filtered)."""
    stmt = (select(Institution, Prefecture)
            .join(Prefecture, col(Prefecture.code) == col(Institution.prefecture_code))
            .where(Institution.prefecture_code == prefecture_code,
                   Institution.id == institution_id))
    row = (await session.exec(stmt)).first()
    return (row[0], row[1]) if row else None


async def log_turns(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert conversation-log rows, all with the same keys (the caller commits)."""
    await conn.execute(_ADD_TURN, rows if len(rows) > 1 else rows[0])


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


NUMBER_TRIES = 20  # one retry per inquiry of the same prefecture inserted at that moment


async def create_escalation(
    session: AsyncSession, prefecture_code: str, account_id: int, question: str,
    context: dict[str, Any], now: datetime, institution_id: int | None = None,
) -> Escalation:
    """Insert the inquiry with the next receipt number of its prefecture.

    The number is max + 1 computed inside the INSERT itself: SQLite runs the statement
    under its write lock, and on PostgreSQL the unique (prefecture_code, number) refuses a
    concurrent twin, which then tries again with the number after it. A retry rolls the
    session back, so it must hold nothing else unsaved (asserted, rather than lost)."""
    assert not (session.new or session.dirty or session.deleted), \
        "create_escalation needs a session with nothing pending: a retry rolls it back"
    for attempt in range(1, NUMBER_TRIES + 1):
        esc = Escalation(prefecture_code=prefecture_code, chat_account_id=account_id,
                         institution_id=institution_id, question=question, context=context,
                         created_at=now, updated_at=now)
        esc.number = _next_number(prefecture_code)
        session.add(esc)
        try:
            await session.commit()
            break
        except IntegrityError as exc:
            await session.rollback()
            if attempt == NUMBER_TRIES or "number" not in str(exc.orig):
                raise
    await session.refresh(esc)  # the number the database chose
    return esc


def _next_number(prefecture_code: str) -> Any:
    """The prefecture's max(number) + 1 as a scalar subquery, for the INSERT to evaluate."""
    return (core_select(func.coalesce(func.max(_ESCALATION.c.number), 0) + 1)
            .where(_ESCALATION.c.prefecture_code == prefecture_code).scalar_subquery())


async def escalation_by_receipt(session: AsyncSession, prefecture_code: str, number: int,
                                ) -> Escalation | None:
    """The inquiry a receipt names, within its prefecture: Q13-000001 is never Q26-000001."""
    stmt = select(Escalation).where(Escalation.prefecture_code == prefecture_code,
                                    Escalation.number == number)
    return (await session.exec(stmt)).first()


async def account_escalations(session: AsyncSession, account_id: int,
                              receipt: tuple[str, int] | None = None, limit: int = 20,
                              linked_to: int | None | EllipsisType = ...) -> list[Escalation]:
    """One chat account's own inquiries, newest first (or the one a receipt names, by its
    prefecture and number), in whichever prefecture each went to: a chat that changed its
    prefecture still follows the ones it sent before. `linked_to`: only those asked for
    that institution or before linking."""
    stmt = select(Escalation).where(Escalation.chat_account_id == account_id)
    if receipt is not None:
        stmt = stmt.where(Escalation.prefecture_code == receipt[0],
                          Escalation.number == receipt[1])
    if linked_to is not ...:
        stmt = stmt.where(col(Escalation.institution_id).is_(None)
                          | (col(Escalation.institution_id) == linked_to))
    return list((await session.exec(stmt.order_by(col(Escalation.id).desc()).limit(limit))).all())


async def prefectures(session: AsyncSession) -> list[Prefecture]:
    """Every prefecture this deployment serves, by code."""
    return list((await session.exec(select(Prefecture).order_by(col(Prefecture.code)))).all())


async def set_chat_prefecture(session: AsyncSession, account_id: int, code: str | None,
                              ) -> bool:
    """Set (None: clear) the prefecture an unlinked chat said it belongs to; False if the
    chat is linked, whose prefecture is its institution's."""
    result = await session.exec(  # type: ignore[call-overload]
        update(ChatAccount).where(col(ChatAccount.id) == account_id,
                                  col(ChatAccount.institution_id).is_(None))
        .values(prefecture_code=code))
    await session.commit()
    return bool(result.rowcount)


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


def reports_this_year(exempt_flags: Iterable[str]) -> Any:
    """Institutions that must report: none of the exemption flags set. The flags and the
    reasons behind them live in handlers.rules.EXEMPTIONS, which the chat check also reads."""
    return and_(*(col(getattr(Institution, flag)).is_(False) for flag in exempt_flags))


async def refresh_statistics(session: AsyncSession, *tables: str) -> None:
    """Let PostgreSQL's planner see tables as they are now. Right after a bulk load it has
    no statistics yet (autovacuum runs later) and picks nested loops that are quadratic in
    the roster size; SQLite plans without them."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.exec(text("ANALYZE " + ", ".join(tables)))  # type: ignore[call-overload]
        await session.commit()
