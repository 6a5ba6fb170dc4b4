"""Knowledge-base entry schema: the contract every YAML entry must meet."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

CATEGORIES: dict[str, str] = {
    "overview": "制度概要",
    "scope": "報告対象",
    "schedule": "スケジュール",
    "method": "報告方法",
    "gmis": "G-MISの操作・アカウント",
    "func1": "1号機能",
    "func2": "2号機能",
    "items": "その他の報告事項",
    "posting": "院内掲示",
    "explanation": "患者説明",
    "confirmation": "体制の確認・修正",
    "reminder": "督促・未報告",
    "publication": "公表",
    "consultation": "協議の場",
    "cases": "取組事例",
    "contact": "問い合わせ先",
}

Route = Literal["prefecture", "gmis_callcenter"]
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")
_CONTACT = re.compile(r"\d{2,4}-\d{2,4}-\d{3,4}|[\w.+-]+@[\w-]+\.[\w.]+")
GMIS_DESK = "G-MIS事務局"
# How an answer on another topic points to the G-MIS contact the chat adds under it.
GMIS_CONTACT_BELOW = "G-MIS事務局（連絡先は下に記載しています）"


def needs_gmis_contact(route: str, text: str) -> bool:
    """Whether the chat adds the configured G-MIS contact under this answer or detail."""
    return route == "gmis_callcenter" or GMIS_CONTACT_BELOW in text


class Source(BaseModel):
    """Where a fact comes from: a seed document section or a public URL."""

    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    section: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _file_or_url(self) -> Source:
        if not (self.file and self.section) and not self.url:
            raise ValueError("a source needs file and section, or url")
        return self


class Entry(BaseModel):
    """One question the bot can answer, with the ways people ask it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    category: str
    question: str = Field(min_length=2)
    phrasings: list[str] = Field(min_length=2)
    route: Route  # before answer and detail: their check reads it
    answer: str = Field(min_length=10)
    detail: str | None = None
    source: list[Source] = Field(min_length=1)
    # Ids of entries merged into this one: buttons already sent in chats carry them.
    replaces: list[str] = Field(default_factory=list)
    # What the chat adds after the answer for a linked clinic, from its own prefecture and
    # record: its period (the answer is about when to report, which each prefecture sets),
    # its prefecture's desk (whom to ask), its 報告状況 (whether its report went in).
    local: list[Literal["deadline", "contact", "status"]] = Field(default_factory=list)
    # "prefecture": written for prefecture staff (紙調査票の送り方, 督促メールの送信). The
    # clinic chat offers such an entry when it is the best match, never as a runner-up
    # button beside a clerk's own question.
    audience: Literal["all", "prefecture"] = "all"

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("id must be lowercase words joined by '-', e.g. scope-dental-exempt")
        return value

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise ValueError(f"unknown category {value!r} (known: {', '.join(CATEGORIES)})")
        return value

    @field_validator("question", "answer", "detail")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value else value

    @field_validator("answer")
    @classmethod
    def _states_the_fact(cls, value: str) -> str:
        # People ask the same thing either way round (「特定機能病院も必要？」「本当に不要
        # ですよね？」); a bare はい/いいえ first contradicts one of them.
        if value.strip().startswith(("はい", "いいえ")):
            raise ValueError("must not open with はい/いいえ: state the fact itself, as it "
                             "reads after either 「〜必要ですか」 or 「〜不要ですよね」")
        return value

    @field_validator("answer", "detail")
    @classmethod
    def _contact_is_added_not_written(cls, value: str | None, info: ValidationInfo,
                                      ) -> str | None:
        # The chat adds the configured G-MIS contact (GMIS_CONTACT) under every call-center
        # answer; one written into the answer shows twice, and goes stale when it changes.
        # An answer on another topic that names the desk writes GMIS_CONTACT_BELOW instead.
        written = value or ""
        if ((info.data.get("route") == "gmis_callcenter" or GMIS_DESK in written)
                and _CONTACT.search(written)):
            raise ValueError(
                f"a G-MIS call-center {info.field_name}, or one naming {GMIS_DESK}, must not "
                "write a phone number or e-mail address: the chat adds the configured G-MIS "
                f"contact (write 「{GMIS_CONTACT_BELOW}」 to point to it)")
        return value

    @property
    def with_gmis_contact(self) -> bool:
        """Whether the chat adds the configured G-MIS contact under the answer."""
        return needs_gmis_contact(self.route, self.answer)

    @field_validator("phrasings")
    @classmethod
    def _phrasings_not_blank(cls, value: list[str]) -> list[str]:
        if any(not p or not str(p).strip() for p in value):
            raise ValueError("phrasings must not contain blank items")
        return [str(p).strip() for p in value]

    @property
    def texts(self) -> list[str]:
        """Every way of asking this entry, canonical question first."""
        return [self.question, *self.phrasings]
