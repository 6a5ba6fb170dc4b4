"""Which prefecture's desk an unlinked chat's inquiry goes to, when the bot serves several.

A linked chat's prefecture is its institution's. An unlinked chat had only the bot's
default, so in one deployment for many prefectures a Tokyo clinic's question reached
Kyoto's desk. Now the chat is asked once and the answer is kept on the account: the
tenant (`Context.tenant`), and with it the inquiry and the answers' local lines, follow.
"""

from __future__ import annotations

import re

from db import repo
from db.models import Prefecture
from db.prefectures import NAMES, named_in
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from knowledge.retriever import Retriever

FLOW = "ask_prefecture"
PAYLOAD = "esc:pref"
MAX_BUTTONS = 8  # more than this are typed: a keyboard of 47 is not a choice
SHORT_ANSWER = 20  # 「東京都の診療所です」; longer and naming none: a new question
LONG_ANSWER = 60  # 「東京都千代田区の内科クリニックです。よろしくお願いします」
CHANGE_HINT = "（送り先を変える場合は「都道府県を変更」と送ってください）"
BEFORE_SENDING = "ご質問をお送りする前に確認させてください（まだ送信していません）。"
_TYPE_IT = "「東京都」のように入力してください。（やめる場合は「キャンセル」）"
# 「都道府県を変更」「都道府県を変更したいです」「都道府県の変更 東京都」
_CHANGE = re.compile(
    r"^\s*(?:/prefecture(?:@\w+)?|都道府県(?:を|の)?変更)"
    r"(?:したい(?:です|のですが)?|して(?:ください|下さい|ほしい(?:です)?)|(?:を)?お願いします)?"
    r"[。！!]?(?:[\s　:：]+(?P<arg>.*\S))?\s*$")


def asks_change(msg: Inbound, _ctx: Context) -> Found | None:
    if msg.payload is not None or not (m := _CHANGE.match(msg.text)):
        return None
    return {"arg": m.group("arg") or ""}


async def to_choose(ctx: Context) -> list[Prefecture]:
    """The prefectures an unlinked chat without one must choose from; [] when the bot
    serves only one (its default is then the chat's) or the chat's prefecture is known."""
    if ctx.account is None or ctx.account.known_prefecture is not None:
        return []
    async with ctx.session() as session:
        served = await repo.prefectures(session)
    return served if len(served) > 1 else []


def ask(served: list[Prefecture], intro: str = BEFORE_SENDING) -> Reply:
    """Ask for the clinic's prefecture: buttons when they are few, else typed."""
    return again(served, intro + "貴院の所在地はどちらの都道府県ですか。")


def again(served: list[Prefecture], text: str) -> Reply:
    """`text`, then how to answer: the buttons stay on every re-ask (a phone's keyboard)."""
    if len(served) <= MAX_BUTTONS:
        buttons = tuple(Button(p.name, f"{PAYLOAD}:{p.code}") for p in served)
        return Reply(text + "下のボタンからお選びいただくか、" + _TYPE_IT, buttons,
                     meta={"action": FLOW})
    return Reply(text + _TYPE_IT, meta={"action": FLOW})


def chosen(name: str) -> str:
    return f"このチャットからのご質問は、{name}の担当者にお送りします。{CHANGE_HINT}"


def moved_on(typed: str, retriever: Retriever) -> bool:
    """A message naming no prefecture that is a question of its own: the chat has moved on
    (the question that waited stays in the history, for 「担当者に聞く」 again)."""
    if named_in(typed):
        return False
    text = typed.strip()
    return (len(text) > SHORT_ANSWER or text.endswith(("か", "？", "?"))
            or retriever.decide(text).action != "escalate")


def read(answer: str, served: list[Prefecture], tapped: bool) -> Prefecture | Reply:
    """The prefecture a tap or a short typed answer names, or the reply asking again."""
    by_code = {p.code: p for p in served}
    if tapped:
        codes = {answer} if answer in by_code else set()
    else:
        codes = named_in(answer) if len(answer.strip()) <= LONG_ANSWER else set()
    if len(codes) > 1:
        return again(served, "都道府県を1つだけお知らせください。")
    if not codes:
        return again(served, "都道府県名を読み取れませんでした。貴院の所在地の都道府県名を、")
    (code,) = codes
    if code not in by_code:
        name = NAMES[code]
        return again(served, f"{name}の医療機関からのお問い合わせは、このチャットではお受けでき"
                             f"ません。お手数ですが、{name}の担当窓口へ直接お問い合わせください。"
                             "所在地が別の都道府県の場合は、その都道府県名を")
    return by_code[code]
