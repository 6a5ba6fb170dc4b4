"""Routes in one place, in visible order: first match wins, Q&A is the fallback."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from handlers.context import Context
from handlers.messages import Inbound, Reply

Found = dict[str, str]
Handler = Callable[[Inbound, Context, Found], Awaitable[list[Reply]]]
Matcher = Callable[[Inbound, Context], Found | None]


@dataclass(frozen=True)
class Route:
    name: str
    matches: Matcher
    handler: Handler


def payload(prefix: str) -> Matcher:
    """Match a button payload `prefix:rest`, passing `rest` on as found['arg']."""

    def match(msg: Inbound, _ctx: Context) -> Found | None:
        if msg.payload == prefix:
            return {"arg": ""}
        if msg.payload and msg.payload.startswith(prefix + ":"):
            return {"arg": msg.payload[len(prefix) + 1 :]}
        return None

    return match


def command(name: str, *words: str) -> Matcher:
    """Match `/name [arg]` or a message that starts with one of the Japanese keywords."""
    pattern = re.compile(
        rf"^\s*(?:/{re.escape(name)}(?:@\w+)?|{'|'.join(map(re.escape, words)) or '(?!)'})"
        r"(?:[\s　:：]+(?P<arg>.*\S))?\s*$",
        re.IGNORECASE | re.DOTALL,
    )

    def match(msg: Inbound, _ctx: Context) -> Found | None:
        if msg.payload is not None:
            return None
        m = pattern.match(msg.text)
        return {"arg": m.group("arg") or ""} if m else None

    return match


def phrase(pattern: re.Pattern[str]) -> Matcher:
    """Match a typed message that is, as a whole, one of the phrases `pattern` describes."""

    def match(msg: Inbound, _ctx: Context) -> Found | None:
        return {} if msg.payload is None and pattern.fullmatch(msg.text.strip()) else None

    return match


def in_flow(flow: str) -> Matcher:
    """Match any typed text while the user is in the middle of `flow`."""

    def match(msg: Inbound, ctx: Context) -> Found | None:
        return {} if ctx.flow == flow and msg.payload is None else None

    return match


def both(first: Matcher, second: Matcher) -> Matcher:
    """Match when both match (a button tapped in a flow); what the second found is passed."""

    def match(msg: Inbound, ctx: Context) -> Found | None:
        return second(msg, ctx) if first(msg, ctx) is not None else None

    return match


def in_flow_any(flow: str) -> Matcher:
    """Match any message, typed or tapped, while the user is in `flow`."""
    return lambda _msg, ctx: {} if ctx.flow == flow else None


def always(_msg: Inbound, _ctx: Context) -> Found:
    return {}


class Router:
    """An ordered list of routes; `resolve` returns the first that matches."""

    def __init__(self, routes: list[Route]) -> None:
        if not routes or routes[-1].matches is not always:
            raise ValueError("the last route must be the fallback (matcher `always`)")
        self.routes = routes

    def resolve(self, msg: Inbound, ctx: Context) -> tuple[Route, Found]:
        for route in self.routes:
            found = route.matches(msg, ctx)
            if found is not None:
                return route, found
        raise AssertionError("unreachable: the fallback always matches")
