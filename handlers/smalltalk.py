"""Greetings, thanks and short replies: answered as such, never searched or escalated.

A clerk who types 「ありがとうございました」 after an answer must not be told that nothing was
found and offered a hand-off; one who types 「はい」 or 「お願いします」 right after 「担当者に
ご質問をお送りしましょうか。」 means the button they did not tap; and 「違います」 after an
answer is the 👎 they did not tap. Only a message made entirely of such phrases counts
(handlers.courtesy): 「報告期間を教えてください。よろしくお願いします」 is a question.
"""

from __future__ import annotations

from handlers import basic, courtesy, escalation, feedback, history
from handlers.answers import OFFER_STAFF
from handlers.context import Context
from handlers.messages import Inbound, Reply
from handlers.router import Found
from handlers.texts import GREETING_INTRO, NOTED, OFFER_QUESTION

SMALLTALK = {"action": history.SMALL_TALK}
_GREETING_BACK = {"おはよう": "おはようございます。", "こんばん": "こんばんは。",
                  "世話": "お世話になっております。", "疲れ": "お疲れさまです。",
                  "つかれ": "お疲れさまです。", "はじめまして": "はじめまして。",
                  "初めまして": "はじめまして。"}


def small_talk(msg: Inbound, _ctx: Context) -> Found | None:
    """Match a typed message made only of courtesy phrases."""
    return {} if msg.payload is None and courtesy.kinds_of(msg.text) else None


async def handle_small_talk(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """Read the phrases against the bot's last reply: an offer to send the question on, an
    answer, or a list of suggestions; otherwise reply in kind."""
    kinds = set(courtesy.kinds_of(msg.text))
    last = await history.last_turn(msg, ctx)
    offered = last is not None and last.reply_text.endswith(OFFER_QUESTION)
    answered = last is not None and last.action in history.ANSWERED and last.entry_id
    if "wrong" in kinds and answered:
        assert last is not None and last.entry_id is not None
        return [await feedback.not_helpful(msg, ctx, last.entry_id)]
    if "staff" in kinds and not kinds & {"no", "decline"}:
        return await escalation.handle_ask_staff(msg, ctx, {"confirm": "yes"})
    if offered and kinds & {"yes", "please"} and not kinds & {"no", "decline", "wrong", "bye"}:
        return await escalation.handle_ask_staff(msg, ctx, {})
    if offered and kinds & {"no", "decline"}:  # closes the question, as 送らない does
        return await escalation.handle_no_staff(msg, ctx, {})
    if last is not None and last.action == "suggest" and kinds & {"no", "wrong"}:
        return [Reply("候補の中にない場合は、" + OFFER_QUESTION, OFFER_STAFF,
                      meta={"action": history.OFFER})]
    if last is not None and last.action == history.ESCALATED and kinds & {"thanks", "please"}:
        return [Reply("担当者からの回答は、このチャットにお届けします。恐れ入りますが、"
                      "しばらくお待ちください。", meta=SMALLTALK)]
    if last is None and kinds & {"thanks", "please"} and not kinds & {"greeting", "bye"}:
        # A first 🙏 or 「ありがとうございます」 thanks in advance: nothing has helped yet.
        return [Reply("こちらこそ、よろしくお願いいたします。" + GREETING_INTRO, basic.MENU,
                      meta=SMALLTALK)]
    return [_in_kind(kinds, msg.text)]


def _in_kind(kinds: set[str], text: str) -> Reply:
    if "abuse" in kinds:
        return Reply("ご期待に沿えず申し訳ありません。かかりつけ医機能報告についてのご質問"
                     "でしたら、「締め切りはいつ？」のように文章で入力してください。担当者に"
                     "お尋ねになりたい場合は「担当者に聞く」と送ってください。", basic.MENU,
                     meta=SMALLTALK)
    if "vent" in kinds:
        return Reply("お手数をおかけしております。報告のことで分からない点があれば、たとえば"
                     "「何をすればいい？」「締め切りはいつ？」のように、そのまま入力してください。"
                     "一つずつご案内します。", basic.MENU, meta=SMALLTALK)
    if "wrong" in kinds:
        return Reply("申し訳ありません。お手数ですが、お尋ねの内容をもう一度、文章で入力して"
                     "ください。", meta=SMALLTALK)
    if "thanks" in kinds:
        return Reply("お役に立てて何よりです。ほかにもご不明な点があれば、いつでもご質問"
                     "ください。", meta=SMALLTALK)
    if "bye" in kinds:
        return Reply("ご利用ありがとうございました。またいつでもご質問ください。", meta=SMALLTALK)
    if "please" in kinds:
        return Reply("こちらこそ、よろしくお願いいたします。ご質問があれば、そのまま入力して"
                     "ください。", meta=SMALLTALK)
    if kinds & {"intro", "opener"}:  # 「〇〇クリニックの山田です」: the question comes next
        back = next((v for k, v in _GREETING_BACK.items() if k in text), "はい、")
        return Reply(f"{back}どうぞ、ご質問をそのまま入力してください。", meta=SMALLTALK)
    if "greeting" in kinds:
        back = next((v for k, v in _GREETING_BACK.items() if k in text), "こんにちは。")
        return Reply(back + GREETING_INTRO, basic.MENU, meta=SMALLTALK)
    if "weather" in kinds:
        care = "" if "天" in text else "どうぞお体に気をつけてお過ごしください。"
        return Reply(f"そうですね。{care}かかりつけ医機能報告についてのご質問があれば、そのまま"
                     "入力してください。", meta=SMALLTALK)
    if "excuse" in kinds:
        return Reply("はい、どのようなことでしょうか。ご質問をそのまま入力してください。",
                     meta=SMALLTALK)
    return Reply(NOTED, meta=SMALLTALK)
