"""Per-kind outbox policies: what to check just before sending, and the delivery guarantee.

The dispatcher (scheduler.outbox.dispatch_due) looks a row's kind up here. Kinds without an
entry are sent as they are, at least once. A check sees the whole claimed batch of its kind
in one session (so it costs a query or two per batch, not per row) and returns a verdict for
the rows that must not be sent now: `skipped` (never), `defer` (later, not an attempt).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Outbox
from scheduler.campaign_check import check_campaign_rows

if TYPE_CHECKING:
    from scheduler.outbox import Outcome

Check = Callable[[AsyncSession, list[Outbox], datetime], Awaitable[dict[int, "Outcome"]]]


@dataclass(frozen=True)
class KindPolicy:
    check: Check | None = None
    at_most_once: bool = False  # never resend a row that may have reached the platform


POLICIES: Mapping[str, KindPolicy] = {
    "campaign": KindPolicy(check_campaign_rows, at_most_once=True),
}
