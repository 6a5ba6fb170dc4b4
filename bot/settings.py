"""Settings from the environment and `.env`; secrets never live in code or logs."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from db.engine import async_url

ROOT = Path(__file__).resolve().parent.parent

GMIS_CONTACT_DEFAULT = (
    "G-MIS事務局（ヘルプデスク）: helpdesk@gmis.mhlw.go.jp / 050-3355-8230（平日 9:00〜17:00）"
)


class Settings(BaseSettings):
    """Every knob of a deployment; `.env.example` documents each one."""

    # A line left blank (`CACHE_DIR=` in a copied .env.example) means "not set": read as "",
    # a folder setting would have been the working directory.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_ignore_empty=True)

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{ROOT / 'var' / 'kakaritsuke.db'}",
        description="SQLAlchemy URL; sqlite+aiosqlite:///path or postgresql://user@host/db",
    )
    # The demo seeds made-up institutions, so it never writes to DATABASE_URL.
    demo_database_url: str = Field(
        default=f"sqlite+aiosqlite:///{ROOT / 'var' / 'demo.db'}",
        description="the terminal demo's own database (made-up institutions)")
    log_level: str = "INFO"
    knowledge_dir: Path = ROOT / "knowledge" / "entries"
    labelled_dir: Path = Field(
        default=ROOT / "knowledge" / "eval",
        description="labelled questions; their tune split trains the learned scores")
    # A deployment with its own entries usually needs its own words for them too.
    synonyms_file: Path = Field(default=ROOT / "knowledge" / "synonyms.yaml",
                                description="domain synonyms (canonical: [variants])")
    words_file: Path = Field(default=ROOT / "knowledge" / "words.yaml",
                             description="words the analyser keeps whole, with readings")
    cache_dir: Path | None = Field(
        default=None,
        description="Compiled domain dictionary cache (default ~/.cache/kakaritsuke-bot)")
    default_prefecture: str = Field(
        default="26", description="Tenant for chats not yet linked to an institution"
    )
    gmis_contact: str = GMIS_CONTACT_DEFAULT
    link_code_days: int = 120
    link_code_key: SecretStr | None = Field(
        default=None, description="Secret key for hashing link codes (HMAC); set it in production")
    wizard_ttl_minutes: int = 60

    telegram_token: SecretStr | None = None
    telegram_webhook_url: str | None = None
    telegram_secret_token: SecretStr | None = None
    telegram_api_base: str | None = Field(
        default=None, description="Bot API base URL (tests point it at a local fake)"
    )
    telegram_rate_per_second: float = Field(default=25.0, description="Outbox sends, all chats")
    telegram_rate_per_chat: float = Field(default=1.0, description="Outbox sends, one chat")
    line_channel_secret: SecretStr | None = Field(
        default=None, description="LINE channel secret: verifies X-Line-Signature")
    line_channel_access_token: SecretStr | None = Field(
        default=None, description="LINE long-lived channel access token (Messaging API)")
    line_api_base: str | None = Field(
        default=None, description="Messaging API base URL (tests point it at a local fake)")
    line_webhook_path: str = Field(default="/line/webhook",
                                   description="Path of the LINE webhook on our web server")
    line_rate_per_second: float = Field(default=50.0, description="LINE pushes, all chats")
    line_rate_per_chat: float = Field(default=1.0, description="LINE pushes, one chat")
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_base: str | None = None
    slack_socket_mode: bool = Field(default=False, description="Socket Mode instead of HTTP")
    slack_app_token: SecretStr | None = Field(default=None, description="xapp- (Socket Mode)")
    slack_command: str = "/kakaritsuke"
    slack_bot_user_id: str | None = None
    desk_sla_hours: float = Field(default=4.0, description="Business hours before a reminder")
    desk_outbox_interval: float = Field(default=5.0, description="Seconds between outbox passes")
    redmine_url: str | None = Field(default=None, description="MHLW inquiry tool (Redmine) base")
    redmine_api_key: SecretStr | None = None
    redmine_project_id: str = ""
    campaign_scheduler: bool = Field(
        default=True,
        description="Fire schedules: campaigns, the 9:00 digest, SLA reminders (lease holder)")
    web_host: str = "127.0.0.1"
    web_port: int = 8080

    @field_validator("database_url", "demo_database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        url = async_url(url)
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://")):
            raise ValueError("SQLite (sqlite+aiosqlite:///path) or PostgreSQL "
                             "(postgresql://user@host/db) only")
        try:
            make_url(url).port  # noqa: B018  (parsing the port is the check)
        except (ArgumentError, ValueError):
            raise ValueError("not a valid URL (check host, port and path)") from None
        return url

    @field_validator("default_prefecture")
    @classmethod
    def _prefecture_code(cls, code: str) -> str:
        return prefecture_code(code)


class ConfigError(Exception):
    """A setting a deployment needs is missing, or the platform refused it: the text names
    the setting and what to do, never its value. `main.py run` stops on it at start-up
    rather than run half a bot the operator believes is whole."""


def secret_given(secret: SecretStr | None) -> bool:
    """True when a secret holds a value: `SLACK_SIGNING_SECRET=` copied empty from
    .env.example is as good as unset."""
    return bool(secret is not None and secret.get_secret_value().strip())


def prefecture_code(code: str | int) -> str:
    """Normalise '1', 1 or '01' to '01'; refuse anything outside 01–47."""
    text = str(code).strip()
    if not text.isdigit() or not 1 <= int(text) <= 47:
        raise ValueError(f"都道府県コードは 01〜47 の数字で指定してください（例：26）: {code!r}")
    return f"{int(text):02d}"


def link_code_key(settings: Settings) -> bytes | None:
    """The key link codes are hashed with, as bytes; None in the demo."""
    key = settings.link_code_key
    return key.get_secret_value().encode() if key and key.get_secret_value() else None


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, as text: what a log line must never show."""
    values = [getattr(settings, name) for name in type(settings).model_fields]
    return [v.get_secret_value() for v in values
            if isinstance(v, SecretStr) and v.get_secret_value()]


class RedactingFormatter(logging.Formatter):
    """Log lines, tracebacks included, with every secret replaced: a library's own error
    (python-telegram-bot's InvalidToken quotes the rejected token) must not put it on the
    operator's screen or in a log store."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, "[secret]")
        return text

