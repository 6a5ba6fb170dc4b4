"""Channel-neutral message types: every adapter speaks only these to the domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Channel = Literal["demo", "telegram", "slack", "line"]


@dataclass(frozen=True, slots=True)
class Button:
    """A choice the user can tap; `payload` comes back as `Inbound.payload`."""

    label: str
    payload: str


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class Inbound:
    """One user action, decided once by the adapter (text typed or button tapped)."""

    channel: str
    user_id: str
    text: str = ""
    payload: str | None = None
    tenant: str | None = None
    display_name: str | None = None

    @property
    def conversation_key(self) -> tuple[str, str]:
        """Key that indexes per-user state in the database."""
        return (self.channel, self.user_id)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot says back; adapters render buttons as keyboards or numbered choices."""

    text: str
    buttons: tuple[Button, ...] = ()
    links: tuple[Link, ...] = ()
    meta: dict[str, object] = field(default_factory=dict, compare=False)
