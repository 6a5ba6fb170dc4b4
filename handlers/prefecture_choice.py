"""Which prefecture's desk an unlinked chat's inquiry goes to, when the bot serves several.

A linked chat's prefecture is its institution's. An unlinked chat had only the bot's
default, so in one deployment for many prefectures a Tokyo clinic's question reached
Kyoto's desk. Now the chat is asked once and the answer is kept on the account: the
tenant (`Context.tenant`), and with it the inquiry, its status and its supplements, follow.
"""

from __future__ import annotations

from db import repo
from db.models import Prefecture
from db.prefectures import NAMES, named_in
from handlers.context import Context
from handlers.messages import Button, Reply

FLOW = "ask_prefecture"
PAYLOAD = "esc:pref"
MAX_BUTTONS = 8  # more than this are typed: a keyboard of 47 is not a choice
CHANGE_HINT = "（お問い合わせ先を変更する場合は「都道府県を変更」と入力してください）"
CHANGE_WORDS = ("都道府県を変更", "都道府県の変更", "都道府県変更", "問い合わせ先を変更",
                "お問い合わせ先を変更", "問い合わせ先の変更", "お問い合わせ先の変更")
SHORT_ANSWER = 20  # 「東京都の診療所です」; longer and naming none: a new question
LONG_ANSWER = 60  # 「東京都千代田区の内科クリニックです。よろしくお願いします」
_TYPE_IT = "「東京都」のように入力してください。（やめる場合は「キャンセル」）"


async def to_choose(ctx: Context) -> list[Prefecture]:
    """The prefectures an unlinked chat without one must choose from; [] when the bot
    serves only one (its default is then the chat's) or the chat's prefecture is known."""
    if ctx.account is None or ctx.account.prefecture_code is not None:
        return []
    async with ctx.session() as session:
        served = await repo.prefectures(session)
    return served if len(served) > 1 else []


def ask(served: list[Prefecture], lead: str = "") -> Reply:
    """Ask for the clinic's prefecture: buttons when they are few, else typed."""
    text = (lead + "お問い合わせは、医療機関の所在地の都道府県の担当者にお送りします。"
            "どちらの都道府県ですか。")
    if len(served) <= MAX_BUTTONS:
        buttons = tuple(Button(p.name, f"{PAYLOAD}:{p.code}") for p in served)
        return Reply(text + "下のボタンからお選びいただくか、" + _TYPE_IT, buttons,
                     meta={"action": FLOW})
    return Reply(text + _TYPE_IT, meta={"action": FLOW})


def moved_on(typed: str) -> bool:
    """A long message naming no prefecture is a new question: the chat has moved on
    (the question that waited stays in the history, for 「担当者に聞く」 again)."""
    return len(typed.strip()) > SHORT_ANSWER and not named_in(typed)


def read(answer: str, served: list[Prefecture], tapped: bool) -> Prefecture | Reply:
    """The prefecture a tap or a short typed answer names, or the reply asking again."""
    by_code = {p.code: p for p in served}
    if tapped:
        codes = {answer} if answer in by_code else set()
    else:
        codes = named_in(answer) if len(answer.strip()) <= LONG_ANSWER else set()
    if len(codes) > 1:
        return Reply("都道府県を1つだけ入力してください。" + _TYPE_IT, meta={"action": FLOW})
    if not codes:
        return Reply("都道府県名を読み取れませんでした。医療機関の所在地の都道府県名を"
                     + _TYPE_IT, meta={"action": FLOW})
    (code,) = codes
    if code not in by_code:
        name = NAMES[code]
        return Reply(f"{name}のお問い合わせは、このチャットではお受けしていません。お手数ですが、"
                     f"{name}の担当窓口へ直接お問い合わせください。所在地が別の都道府県の場合は、"
                     "その都道府県名を入力してください。（やめる場合は「キャンセル」）",
                     meta={"action": FLOW})
    return by_code[code]
