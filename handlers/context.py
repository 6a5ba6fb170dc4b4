"""The explicit context every handler receives: services, clock, config, and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from db.turns import TurnStore
from knowledge.retriever import Retriever


@dataclass(frozen=True)
class HandlerConfig:
    default_prefecture: str
    gmis_contact: str
    link_code_days: int = 120
    wizard_ttl_minutes: int = 60
    link_code_key: bytes | None = field(default=None, repr=False)  # a secret: never printed


@dataclass(frozen=True)
class Account:
    """The chat account behind a message, as handlers may see it."""

    id: int
    channel: str
    external_user_id: str
    prefecture_code: str | None
    institution_id: int | None

    @property
    def linked(self) -> bool:
        return self.institution_id is not None

    @property
    def linked_prefecture(self) -> str | None:
        """The prefecture of the linked institution, whose records the chat may read."""
        return self.prefecture_code if self.linked else None

    @property
    def known_prefecture(self) -> str | None:
        """The chat's own prefecture: the linked institution's, or the one an unlinked chat
        said (handlers.prefecture_choice); an unlink clears it. None: the tenant is
        only the bot's default and may not be the user's own."""
        return self.prefecture_code


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    retriever: Retriever
    sessions: async_sessionmaker[AsyncSession]
    config: HandlerConfig
    clock: Callable[[], datetime] = system_clock
    account: Account | None = None
    flow: str | None = None
    flow_data: dict[str, Any] = field(default_factory=dict)
    # One per composition root; `replace()` hands the same one to every message's context.
    turns: TurnStore = field(default_factory=TurnStore, compare=False, repr=False)

    @property
    def tenant(self) -> str:
        """The prefecture this conversation belongs to: the chat's known one, else the
        bot's default."""
        if self.account and self.account.prefecture_code:
            return self.account.prefecture_code
        return self.config.default_prefecture

    def session(self) -> AsyncSession:
        return self.sessions()

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A bare Core connection in one transaction, committed on exit: for the statements
        every message runs (a session costs several extra driver round trips)."""
        engine: AsyncEngine = self.sessions.kw["bind"]
        return engine.begin()
