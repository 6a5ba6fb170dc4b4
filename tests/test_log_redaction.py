"""Secrets never reach a log line, not even inside a library's own error message."""

from __future__ import annotations

import io
import logging

from pydantic import SecretStr
from telegram.error import InvalidToken

from bot.settings import RedactingFormatter, Settings, secret_values

TOKEN = "123456:AAFakeSecretTokenValue"


def test_a_rejected_token_quoted_by_the_library_is_not_logged() -> None:
    """python-telegram-bot's InvalidToken quotes the token it was given; an operator who set
    a wrong one saw it in full on the screen (an operator test)."""
    settings = Settings(telegram_token=SecretStr(TOKEN), slack_signing_secret=SecretStr("s3cr3t"))
    assert TOKEN in secret_values(settings) and "s3cr3t" in secret_values(settings)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s",
                                            secret_values(settings)))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    try:
        try:
            raise InvalidToken(f"The token `{TOKEN}` was rejected by the server.")
        except InvalidToken as exc:
            log.error("run failed: %s (secret %s)", exc, "s3cr3t", exc_info=True)
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "was rejected" in text and "Traceback" in text  # the error itself is kept
    assert TOKEN not in text and "s3cr3t" not in text and "[secret]" in text
