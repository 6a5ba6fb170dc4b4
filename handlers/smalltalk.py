"""Greetings, thanks and short replies: answered as such, never searched or escalated.

A clerk who types 「ありがとうございました」 after an answer must not be told that nothing was
found and offered a hand-off; and one who types 「はい」 or 「お願いします」 right after 「担当者
にご質問をお送りしましょうか。」 means the button they did not tap. Only a message made
entirely of such phrases counts: 「報告期間を教えてください。よろしくお願いします」 is a
question.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

from db import repo
from db.models import ConversationLog
from handlers import escalation, feedback
from handlers.context import Context
from handlers.messages import Inbound, Reply
from handlers.router import Found
from handlers.texts import NOTED, OFFER_QUESTION
from knowledge.normalize import fold_kana

# Each kind, as the phrases a message may be made of (after NFKC, lower case, katakana
# folded to hiragana: アリガトウ, ｱﾘｶﾞﾄｳ).
_PHRASES: dict[str, str] = {
    "thanks": r"(?:どうも)?(?:ありがと|有難|有り難)(?:うございました|うございます|う)?|どうも"
              r"|助かりました|助かります|感謝(?:します|いたします|致します)?|さんきゅー?"
              r"|thanks?(?: you)?|thx",
    "greeting": r"こんにち[はわ]|こんばん[はわ]|おはよう(?:ございます)?|はじめまして|初めまして"
                r"|お世話になって(?:おります|います)|お疲れ(?:様|さま)(?:です|でした)?"
                r"|よろしく(?:お願い|おねがい)?(?:します|いたします|致します)?|もしもし"
                r"|hello|hi",
    "bye": r"さようなら|さよなら|失礼(?:します|いたします|致します)|またね|おやすみ(?:なさい)?"
           r"|ばいばい|以上です",
    "yes": r"はい|ええ|うん|そうです|(?:お願い|おねがい)(?:します|いたします|致します)?"
           r"|送って(?:ください|下さい)?|聞いて(?:ください|下さい)?",
    "no": r"いいえ|いえ|結構です|けっこうです|いらない|いりません|不要です|大丈夫です"
          r"|送らないで(?:ください|下さい)?",
    "wrong": r"(?:それは|いや|いえ)?(?:違います|ちがいます|違う|ちがう|違いました)(?:よ|ね)?"
             r"|そうじゃない(?:です)?|そういうことではない(?:です)?|そういうことじゃない"
             r"|聞きたいのは(?:それ|そこ)じゃない|答えになっていない|的外れ(?:です)?",
    "ack": r"わかりました|分かりました|了解(?:です|しました|いたしました)?"
           r"|承知(?:しました|いたしました)|ok|おっけー|なるほど",
}
_KIND = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _PHRASES.items()))
# What may sit between and around phrases: spaces, punctuation, emoji, ー, ww, 笑.
_FILLER = re.compile(r"(?:[^\w]|[wー笑_])+")
_GREETING_BACK = {"おはよう": "おはようございます。", "こんばん": "こんばんは。",
                  "お世話": "お世話になっております。", "お疲れ": "お疲れさまです。",
                  "よろしく": "よろしくお願いいたします。", "はじめまして": "はじめまして。",
                  "初めまして": "はじめまして。"}
_INTRO = ("かかりつけ医機能報告のサポートボットです。報告の対象・期限・報告項目などのご質問に"
          "お答えしますので、そのまま入力してください。使い方は「ヘルプ」と入力すると表示されます。")


def small_talk(msg: Inbound, _ctx: Context) -> Found | None:
    """Match a typed message made only of small-talk phrases; found['kinds'] lists them."""
    if msg.payload is not None:
        return None
    text = _folded(msg.text)
    kinds = _kinds_of(text)
    return {"kinds": " ".join(kinds), "text": text} if kinds else None


def _kinds_of(text: str) -> list[str]:
    """The kinds of phrase the folded `text` is made of, or [] if anything else is in it."""
    kinds: list[str] = []
    pos = _skip(text, 0)
    while pos < len(text):
        m = _KIND.match(text, pos)
        if m is None or m.lastgroup is None:
            return []
        kinds.append(m.lastgroup)
        pos = _skip(text, m.end())
    return kinds


def _folded(text: str) -> str:
    return fold_kana(unicodedata.normalize("NFKC", text).lower())


def _skip(text: str, pos: int) -> int:
    m = _FILLER.match(text, pos)
    return m.end() if m else pos


async def handle_small_talk(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    kinds = found["kinds"].split()
    if "wrong" in kinds:
        return [await _wrong(msg, ctx)]
    if {"yes", "no"} & set(kinds) and await _offer_pending(msg, ctx):
        if "no" in kinds:
            return await escalation.handle_no_staff(msg, ctx, {})
        return await escalation.handle_ask_staff(msg, ctx, {})
    meta = {"action": "smalltalk"}
    if "thanks" in kinds:
        return [Reply("どういたしまして。ほかにもご不明な点があれば、いつでもご質問ください。",
                      meta=meta)]
    if "greeting" in kinds:
        back = next((v for k, v in _GREETING_BACK.items() if k in found["text"]), "こんにちは。")
        return [Reply(back + _INTRO, meta=meta)]
    if "bye" in kinds:
        return [Reply("ご利用ありがとうございました。またいつでもご質問ください。", meta=meta)]
    return [Reply(NOTED, meta=meta)]


async def _wrong(msg: Inbound, ctx: Context) -> Reply:
    """「違います」 after an answer is a 👎 on it, with the same way on."""
    last = await _last_turn(msg, ctx)
    if last is not None and last.action in ("answer", "detail") and last.entry_id:
        await feedback.record_vote(msg, ctx, last.entry_id, -1)
        return feedback.not_helpful()
    return Reply("申し訳ありません。お手数ですが、お知りになりたいことをもう一度、文章で"
                 "入力してください。", meta={"action": "smalltalk"})


async def _offer_pending(msg: Inbound, ctx: Context) -> bool:
    """Whether the bot's last reply asked if it should send the question on."""
    last = await _last_turn(msg, ctx)
    return last is not None and last.reply_text.endswith(OFFER_QUESTION)


async def _last_turn(msg: Inbound, ctx: Context) -> ConversationLog | None:
    """The bot's latest reply to this user, if recent enough to be what they answer."""
    async with ctx.session() as session:
        turns = await repo.recent_turns(session, msg.channel, msg.user_id, limit=1)
    if not turns:
        return None
    fresh = turns[0].created_at + timedelta(minutes=ctx.config.wizard_ttl_minutes)
    return turns[0] if fresh >= ctx.clock() else None
