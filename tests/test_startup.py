"""`main.py run` at start-up: a token the platform refuses stops the bot with the setting
named (never its value); Slack away does not. Real SDKs against the fake servers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.runner import CONFIG_ERROR, serve
from bot.settings import Settings
from tests.fakes.slack_api import TOKEN, FakeSlackAPI
from tests.fakes.slack_requests import SECRET
from tests.fakes.telegram_api import FakeTelegramAPI

WRONG = "xoxb-wrong-0000-token-value"


@pytest.fixture
async def api() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI() as fake:
        yield fake


def slack_settings(api: FakeSlackAPI, database_url: str, token: str = TOKEN,
                   **extra: Any) -> Settings:
    return Settings(_env_file=None, slack_bot_token=SecretStr(token),  # type: ignore[call-arg]
                    slack_signing_secret=SecretStr(SECRET), slack_api_base=api.base_url,
                    database_url=database_url, web_port=0, campaign_scheduler=False, **extra)


async def start_and_stop(settings: Settings) -> int:
    """serve() with its stop already set: it starts every channel, then stops at once."""
    stop = asyncio.Event()
    stop.set()
    return await serve(settings, stop)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


async def test_a_refused_slack_token_stops_the_start_naming_the_setting(
        api: FakeSlackAPI, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        code = await start_and_stop(slack_settings(api, database_url, WRONG))
    assert code == CONFIG_ERROR
    text = logged(caplog)
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in text
    assert "channel started: slack" not in text and WRONG not in text
    assert [c.method for c in api.calls] == ["auth.test"]  # nothing else was tried


async def test_an_accepted_slack_token_starts_the_desk(
        api: FakeSlackAPI, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert await start_and_stop(slack_settings(api, database_url)) == 0
    assert "channel started: slack" in logged(caplog)
    assert api.of("auth.test")


async def test_slack_away_at_start_up_does_not_stop_the_bot(
        api: FakeSlackAPI, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The outbox keeps the desk's cards until Slack is back; only a refused token is fatal."""
    await api.stop()
    with caplog.at_level(logging.INFO):
        assert await start_and_stop(slack_settings(api, database_url)) == 0
    text = logged(caplog)
    assert "Slack is unreachable at start-up" in text and "channel started: slack" in text


async def test_a_refused_telegram_token_stops_the_start_naming_the_setting(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with FakeTelegramAPI() as api:
        wrong = "123456:not-the-real-token"
        settings = Settings(_env_file=None, telegram_token=SecretStr(wrong),  # type: ignore[call-arg]
                            telegram_api_base=api.base_url, database_url=database_url,
                            campaign_scheduler=False)
        with caplog.at_level(logging.INFO):
            code = await start_and_stop(settings)
    assert code == CONFIG_ERROR
    text = logged(caplog)
    assert "Telegram refused TELEGRAM_TOKEN" in text and wrong not in text
    assert "channel started" not in text


async def test_telegram_started_is_stopped_when_slack_refuses_its_token(
        api: FakeSlackAPI, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Half a bot (the chat without the desk) is not left running after a refusal."""
    async with FakeTelegramAPI() as tg:
        settings = slack_settings(api, database_url, WRONG,
                                  telegram_token=SecretStr(tg.token),
                                  telegram_api_base=tg.base_url)
        with caplog.at_level(logging.INFO):
            assert await start_and_stop(settings) == CONFIG_ERROR
    text = logged(caplog)
    assert "channel started: telegram" in text and "the bot is stopping" in text
    assert "channel started: slack" not in text
