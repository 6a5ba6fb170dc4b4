"""Requests as Slack sends them to our Bolt endpoint: signed bodies for events, button
presses (block_actions), modal submissions (view_submission) and slash commands."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

SECRET = "test-signing-secret"
TEAM = "T0TEST"
_ids = itertools.count(1)


def signature_headers(body: str, secret: str = SECRET, timestamp: int | None = None,
                      ) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
                timestamp=ts, body=body) or ""}


class SlackSide:
    """Plays Slack: posts correctly signed requests to the app's /slack/events URL."""

    def __init__(self, http: httpx.AsyncClient, url: str, secret: str = SECRET) -> None:
        self.http, self.url, self.secret = http, url, secret

    async def post(self, body: str, content_type: str, secret: str | None = None,
                   timestamp: int | None = None, extra: dict[str, str] | None = None,
                   ) -> httpx.Response:
        headers = {"Content-Type": content_type,
                   **signature_headers(body, secret or self.secret, timestamp), **(extra or {})}
        return await self.http.post(self.url, content=body.encode(), headers=headers)

    async def interaction(self, payload: dict[str, Any], **kw: Any) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload, ensure_ascii=False)})
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def press(self, action_id: str, escalation_id: int, channel: str, user: str,
                    **kw: Any) -> httpx.Response:
        return await self.interaction(block_actions(action_id, escalation_id, channel, user),
                                      **kw)

    async def submit(self, callback_id: str, escalation_id: int, channel: str, user: str,
                     text: str, metadata: str | None = None, **kw: Any) -> httpx.Response:
        """Submit a modal; `metadata` is the private_metadata of the view Slack opened
        (by default, one naming just the escalation and channel)."""
        return await self.interaction(
            view_submission(callback_id, escalation_id, channel, user, text, metadata), **kw)

    async def command(self, command: str, text: str, channel: str, user: str,
                      ) -> httpx.Response:
        body = urlencode({"token": "legacy", "team_id": TEAM, "team_domain": "pref",
                          "channel_id": channel, "channel_name": "desk", "user_id": user,
                          "user_name": "staff", "command": command, "text": text,
                          "api_app_id": "A0TEST", "trigger_id": f"trig-{next(_ids)}",
                          "response_url": "http://127.0.0.1:9/unused"})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def event(self, event: dict[str, Any], event_id: str, retry: int | None = None,
                    ) -> httpx.Response:
        body = json.dumps({"token": "legacy", "team_id": TEAM, "api_app_id": "A0TEST",
                           "event": event, "type": "event_callback", "event_id": event_id,
                           "event_time": int(time.time())}, ensure_ascii=False)
        extra = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} \
            if retry else None
        return await self.post(body, "application/json", extra=extra)


def block_actions(action_id: str, escalation_id: int, channel: str, user: str,
                  ) -> dict[str, Any]:
    return {
        "type": "block_actions", "team": {"id": TEAM, "domain": "pref"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0TEST", "token": "legacy", "trigger_id": f"trig-{next(_ids)}",
        "container": {"type": "message", "message_ts": "1700000000.000001",
                      "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "desk"},
        "response_url": "http://127.0.0.1:9/unused",
        "actions": [{"type": "button", "action_id": action_id,
                     "block_id": f"desk:{escalation_id}", "value": str(escalation_id),
                     "action_ts": "1700000001.000001"}],
    }


def view_submission(callback_id: str, escalation_id: int, channel: str, user: str,
                    text: str, metadata: str | None = None) -> dict[str, Any]:
    meta = metadata or json.dumps({"id": escalation_id, "channel": channel})
    return {
        "type": "view_submission", "team": {"id": TEAM, "domain": "pref"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0TEST", "token": "legacy", "trigger_id": f"trig-{next(_ids)}",
        "view": {"id": f"V{next(_ids)}", "team_id": TEAM, "type": "modal",
                 "callback_id": callback_id, "private_metadata": meta, "hash": "h",
                 "state": {"values": {"text": {"text": {"type": "plain_text_input",
                                                        "value": text}}}}},
    }
