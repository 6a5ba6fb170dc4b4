"""Tier 2: the ministry's inquiry tool (問合せ管理ツール) is a Redmine. 「厚労省へ転送」 queues
an outbox row on channel "redmine"; this sender creates the issue through Redmine's REST API
(POST /issues.json, X-Redmine-API-Key) and links it to the escalation.

A clinic's supplement to a forwarded inquiry becomes a note on that issue
(PUT /issues/:id.json with notes), unless the issue's description already carried it.

What is sent: receipt, prefecture, the question, the clinic's earlier questions and what the
bot tried. The clinic's name is left out; the ministry answers the question, not the clinic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import httpx
from pydantic import SecretStr
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Escalation, Outbox, Prefecture
from handlers import desk
from handlers.desk_card import Card, build_card
from handlers.texts import shorten
from scheduler import outbox
from scheduler.outbox import Outcome

logger = logging.getLogger(__name__)
TRANSIENT = "transient: "


class RedmineSender:
    """Callable handed to scheduler.outbox.dispatch_due for channel "redmine"."""

    def __init__(self, base_url: str, api_key: SecretStr, project_id: str,
                 sessions: Callable[[], AsyncSession], clock: Callable[[], datetime],
                 timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.project_id, self.sessions, self.clock = project_id, sessions, clock
        self.timeout = timeout

    async def __call__(self, row: Outbox) -> Outcome:
        try:
            if row.kind == "redmine_note":
                return await self._note(row)
            return await self._issue(row)
        except httpx.HTTPStatusError as exc:
            code = exc.response.status_code
            detail = f"HTTP {code}: {exc.response.text[:300]}"
            transient = code >= 500 or code == 429
            return Outcome("retry" if transient else "failed",
                           (TRANSIENT if transient else "") + detail)
        except httpx.HTTPError as exc:
            return Outcome("retry", f"{TRANSIENT}{type(exc).__name__}")

    async def _issue(self, row: Outbox) -> Outcome:
        esc_id = int(row.payload["escalation_id"])
        async with self.sessions() as session:
            esc = await session.get(Escalation, esc_id)
            if esc is None:
                return Outcome("failed", "escalation not found")
            if esc.redmine_url:  # created by an earlier attempt whose outcome was lost
                return Outcome("sent")
            pref = await session.get(Prefecture, esc.prefecture_code)
            card = await build_card(session, esc, self.clock())
        url = await self._create(card, pref.name if pref else esc.prefecture_code)
        assert row.id is not None
        described = {**row.payload, "supplements": len(card.supplements)}  # not sent as notes
        await desk.record_redmine_url(self.sessions, esc_id, url, self.clock(), row.id,
                                      described)
        return Outcome("sent")

    async def _note(self, row: Outbox) -> Outcome:
        """A clinic's supplement to a forwarded inquiry, as a note on its Redmine issue."""
        esc_id = int(row.payload["escalation_id"])
        async with self.sessions() as session:
            esc = await session.get(Escalation, esc_id)
            issue = await outbox.find(session, desk.redmine_issue_key(esc_id))
        if esc is None or issue is None:
            return Outcome("failed", "escalation or its Redmine issue not found")
        if not esc.redmine_url:
            if issue.status in ("failed", "unreachable", "skipped"):
                return Outcome("failed", "the Redmine issue was never created")
            return Outcome("retry", f"{TRANSIENT}issue not created yet", retry_after=60)
        if int(row.payload["supplement"]) <= int(issue.payload.get("supplements", 0)):
            return Outcome("sent", "already in the issue's description")
        headers = {"X-Redmine-API-Key": self._key.get_secret_value()}
        note = f"医療機関から補足が届きました（{esc.receipt}）。\n{row.body}"
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            resp = await client.put(f"{esc.redmine_url}.json", headers=headers,
                                    json={"issue": {"notes": note}})
            resp.raise_for_status()
        return Outcome("sent")

    async def _create(self, card: Card, prefecture_name: str) -> str:
        subject = f"[{prefecture_name}] {card.receipt} {shorten(card.question, 60)}"
        issue = {"subject": subject,
                 "description": description(card, prefecture_name)}
        if self.project_id:
            issue["project_id"] = self.project_id
        headers = {"X-Redmine-API-Key": self._key.get_secret_value()}
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            resp = await client.post(f"{self.base_url}/issues.json", json={"issue": issue},
                                     headers=headers)
            resp.raise_for_status()
        issue_id = resp.json()["issue"]["id"]
        return f"{self.base_url}/issues/{issue_id}"


def description(card: Card, prefecture_name: str) -> str:
    lines = [f"都道府県：{prefecture_name}", f"受付番号：{card.receipt}",
             f"受付日時：{card.received}", "", "■ 質問", card.question]
    if card.supplements:
        lines += ["", "■ 医療機関からの補足"]
        lines += [f"- {s}" for s in card.supplements]
    if card.history:
        lines += ["", "■ これまでの質問（医療機関 → ボット）"]
        lines += [f"- {t.question}" for t in card.history]
    if card.tried:
        lines += ["", "■ ボットが試した回答候補"]
        lines += [f"- {t.question}（{t.score:.2f}）" for t in card.tried]
    return "\n".join(lines)
