"""Q&A: read a clinic's message (one question or several, a follow-up, a pasted letter) into
retrieval decisions; handlers.answers turns each decision into its reply."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from handlers import courtesy, history
from handlers.answers import (
    MIXED_AFTER,
    OFFER_STAFF,
    answer_reply,
    contact_line,
    gmis_text,
    reply_for,
)
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from handlers.status import asks_status, handle_status
from handlers.texts import OFFER_QUESTION, UNREADABLE, shorten
from knowledge.model import needs_gmis_contact
from knowledge.normalize import HIRAGANA
from knowledge.retriever import Candidate, Decision

# People type the follow-up instead of tapping 「詳しく」: 「もっと詳しく教えていただけますか」.
MORE = re.compile(
    r"(?:もっと|さらに|もう少し|もうすこし)?[\s　]*"
    r"(?:詳しく|くわしく|詳細(?:を|は)?|詳しい(?:説明|内容|こと)(?:を|は)?)[\s　]*"
    r"(?:教えて|おしえて|知りたい|しりたい|聞きたい|説明して)?"
    r"(?:ください|下さい|ほしい|欲しい|ほしいです|欲しいです|いただけますか|いただけませんか|"
    r"もらえますか|です|お願いします|おねがいします|お願い|おねがい)?[。.!！?？\s　]*")

# 「さっきのもう一回」「もう一度お願いします」: the last answer again, not a search.
REPEAT = re.compile(
    r"(?:さっき|先ほど|先程|前|今|いま)?の?(?:答え|回答|こたえ|説明|お話|話)?(?:を|は)?[、\s　]*"
    r"(?:もう一(?:回|度)|もういっかい|もういちど|再度)[\s　]*"
    r"(?:教えて|おしえて|見せて|みせて|表示して|言って|お願い|おねがい)?"
    r"(?:ください|下さい|もらえますか|いただけますか|します|いたします)?[。.!！?？\s　]*")

# A short message that leans on the one before: 「それって病院も？」「紙の場合は？」.
FOLLOW_UP = re.compile(
    r"^\s*(?:それ|その|これ|この|あれ|あの|そちら|じゃあ|じゃ|では|なら|だったら|ちなみに|あと|"
    r"ところで)|(?:も|は|なら|だと|の場合は?|のとき(?:は)?|の時(?:は)?"
    r"|でも(?:いい|よい|大丈夫|ok|可)(?:の|ですか|でしょうか)?)[?？]*\s*$")
_POINTS_BACK = re.compile(r"^\s*(?:それ|その|これ|この|そちら|そっち)(?:って|は|も|だと|なら|の)")
# Nothing but "how long / until when": 「どれくらいかかりますか」 right after an answer asks
# about that answer's matter, whichever entry the words alone would match.
VAGUE = re.compile(
    r"^\s*(?:それって|それは|じゃあ)?[、\s]*(?:どれ|どの)(?:くらい|ぐらい)"
    r"|^\s*(?:いつ(?:まで|から|ごろ|頃)?|何日|何週間|何か月|何ヶ月|何時|なんじ)(?:まで|から)?"
    r"(?:くらい|ぐらい)?(?:で|に)?"
    r"(?:かかります|かかる|できます|ですか)?か?[?？]*\s*$")
FOLLOW_UP_MAX = 30  # characters: a longer message says what it is about
# 「歯医者も報告いるの？あと病院は？」「しめきりすぎたらどうなる？ばっきんある？」: a short
# message with two or three questions; the whole reads as the first, and the rest was lost.
MULTI_MAX = 120  # characters: longer is an officer's mail, whose ？ are not all questions
# A question ends in ？, or in か。 as in polite writing (「…対象になりますか。また、…」).
_QUESTION_END = re.compile(r"(?<=[?？])|(?<=か。)")
_SENTENCE_END = re.compile(r"(?<=[。？?！!])")
_QUESTION_ENDING = re.compile(r"(?:[?？か]|でしょうか|ください|下さい|ますか|ですか)[。]?$")
# What makes one item of a numbered list a question (「締切はいつ」「紙でも出せる？」).
_ASKS = re.compile(r"[?？か]$|いつ|どこ|何|なに|どう|どれ|誰|必要|でき|わから|分から|教えて"
                   r"|知りたい|大丈夫|いい$|の$")
# 「①…②…」 anywhere; 「(1)…(2)…」「1. … 2. …」 at the start or after a space or a sentence.
_NUMBER = re.compile(r"(?:[①-⑳]|(?:^|(?<=[\s。、？?！!]))"
                     r"(?:[（(][1-9１-９][)）]|[1-9１-９][.．)）](?!\d)))\s*")
# 「…③継続的な相談のことですか？」「…③相談などは必要ですか」: the items were what one
# question asks about.
_CLOSES_LIST = re.compile(r"の?こと|など|等|といった")
# 「1 しめきり 2 ぱすわーど忘れた」: a bare number and a space make a list only when they run
# 1, 2, 3… from the start; a counter after the space is a quantity, not an item
# (「1 人医師」「1 月 5 日」「1 号機能と 2 号機能」「2 か月」).
_SPACED_NUMBER = re.compile(
    r"(?:^|(?<=[\s。、？?！!]))([1-9１-９])[ 　]+"
    r"(?![月日年号人回つ件名床時分秒歳才割%％階次枚通部点種科類台本期級条項番週ヶヵかカケ個円倍度])")
# 「どこに電話すればいい」「県にきけばいい？」 right after an answer ask whom to ask about
# that answer's matter: the G-MIS call center after a G-MIS answer, else the prefecture.
# Only the question of whom to ask, nothing else: 「報告期限を過ぎたらどこに電話すれば」 names
# its own matter (a late report: the prefecture), whatever the answer before was about.
_ASKS_WHERE = re.compile(
    r"^(?:じゃあ|では|それ(?:って|は)?|これ(?:って|は)?)?[、\s]*"
    r"(?:(?:どこ|誰|だれ)に(?:電話|連絡|聞|きけ|きい|問い合わせ|問合せ)|(?:県|けん|都道府県)に"
    r"(?:電話|連絡|問い合わせ|問合せ|(?:聞|き)(?:け|い)?ば)|(?:電話番号|問い?合わ?せ先|連絡先)"
    r"(?:は|って|を))"
    r"(?:すれば|したら|して|けば|れば|いたら|きけば|ききたい|するの|する)?"
    r"(?:いい|よい|良い)?(?:ですか|でしょうか|の|か|んですか)?"
    r"(?:教えて(?:ください|下さい)?|知りたい(?:です)?)?[?？。]*$")
# 「締め切りとパスワードと紙の調査票について教えて」: topics named in a row, each a question
# (read only when the whole has no sure answer). Not 「病院と診療所の違い」: one question.
_TOPIC_LIST = re.compile(
    r"^(?P<list>[^。？?！!]{3,60}?)(?:について|に関して|に関する(?:こと|事)|の(?:こと|事)"
    r"(?:を|について)?|を)(?:それぞれ|まとめて)?(?:教えて|おしえて|知りたい|確認したい)"
    r"(?:ください|下さい|いただけますか|もらえますか|ほしい(?:です)?|欲しい(?:です)?|です)?"
    r"[。？?！!]*$")
_TOPIC_SEP = re.compile(r"と|、|,|，|や|及び|および")
_NOT_A_NAME = re.compile(r"[をがはでにもへ]|して|する|なる|いる|ある|ない|ます|です"
                         r"|場合|とき|時点")
_EXEMPTION_WORDS = frozenset({"歯科", "休院", "休止", "特定機能病院", "特定機能"})
_ONE_QUESTION = re.compile(r"違い|ちがい|差|比較|関係|共通|区別|どちら|どっち|両方|関連")
DESK_ENTRIES = {"gmis_callcenter": "contact-gmis-vs-prefecture",
                "prefecture": "contact-system-questions"}
# A prefecture's letter about this report pasted whole (「…の提出について（督促）」, 「…の実施
# について（依頼）」): what to do about it. Read as a question, the 督促 got the G-MIS call
# center its paragraph on accounts matched, and the 案内 an offer to send it to staff.
# The lead says what the letter is; the entry, what to do. First match wins.
_LETTERS = (
    (re.compile(r"について\s*\(督促\)"), "reminder-what-to-do",
     "お送りいただいた文書は、都道府県からの督促（報告のお願い）のようです。"),
    (re.compile(r"について\s*\((?:ご?依頼|ご?案内|お願い|通知)\)"), "overview-clinic-duties",
     "お送りいただいた文書は、都道府県からのかかりつけ医機能報告のご案内（報告の依頼）のようです。"
     "医療機関にお願いしていることは次のとおりです。"),
)
_JAPANESE = re.compile(r"[\u3041-\u30ff\u3400-\u9fff]")  # kana and kanji
_OUR_REPORT = re.compile(r"かかりつけ医機能(?:の)?報告")
# Entries the chat answers with by id: a knowledge base without one fails at load
# (bot.app.check_named_entries), not at the first 督促 letter.
NAMED_ENTRIES = frozenset({*(entry for _, entry, _ in _LETTERS), *DESK_ENTRIES.values()})
# The reply must be readable by someone who does not read Japanese; the offer stays last
# (a typed yes answers it).
ENGLISH = ("申し訳ありません。このボットは、かかりつけ医機能報告について日本語のご質問に"
           "お答えしています。\nThis bot answers questions about the family doctor function "
           "report (かかりつけ医機能報告) in Japanese only. Please ask in Japanese, or tap "
           "「担当者に聞く」 to send your question to the prefecture's staff.\n" + OFFER_QUESTION)
_JOINER = re.compile(r"^(?:あと|それと(?!も)|それから|また|ついでに|ちなみに)[、,\s]*")
# 「毎年出すんですか？それとも1回だけ？」 is one question with two readings, not two.
_ALTERNATIVE = re.compile(r"^(?:それとも|もしくは|あるいは)")


async def _pasted_letter(text: str, ctx: Context) -> Reply | None:
    """What to do about a letter on this report pasted whole; another report's letter (病床
    機能報告の…（依頼）) is read as any question is."""
    text = unicodedata.normalize("NFKC", text)
    if len(text) < MULTI_MAX or not _OUR_REPORT.search(text):
        return None
    for pattern, entry_id, lead in _LETTERS:
        if pattern.search(text):
            answer = await answer_reply(entry_id, ctx)
            return replace(answer, text=lead + "\n" + answer.text)
    return None


async def handle_question(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    folded = ctx.retriever.analyzer.analyse(msg.text).folded
    if folded and not folded.strip("0123456789"):  # a button number, with no buttons shown
        return [Reply("番号は、選択肢が表示されているときにお使いいただけます。ご質問は、"
                      "そのまま文章でご入力ください（例：「報告期間はいつまで？」）。")]
    if not folded:
        return [Reply(UNREADABLE)]
    if not any(c.isalnum() for c in folded):  # 😱 alone: a reaction, not a question
        return [Reply("ご質問があれば、そのまま文章で入力してください"
                      "（例：「報告期間はいつまで？」）。", meta={"action": history.SMALL_TALK})]
    if _noise(msg.text, ctx):
        return [Reply(UNREADABLE, meta={"action": "unreadable"})]
    if reply := await _pasted_letter(msg.text, ctx):
        return [reply]
    if replies := await _each_question(msg, ctx):
        return replies
    short = len(msg.text.strip()) <= FOLLOW_UP_MAX
    if short and _ASKS_WHERE.search(msg.text):
        if desk := await _desk_after_answer(msg, ctx):
            return [await answer_reply(desk, ctx)]
    decision = ctx.retriever.decide(msg.text)
    if decision.action != "answer" and (replies := await _each_question(msg, ctx, True)):
        return replies
    decision = _with_the_question_alone(msg.text, decision, ctx)
    if decision.action == "escalate" and decision.route != "gmis_callcenter" and _in_english(
            msg.text):
        return [Reply(ENGLISH, OFFER_STAFF, meta={"action": "escalate"})]
    # 「2号もかくの？」 after a 2号 question has no それ, but no word in it is new to the
    # knowledge base either (a verb in kana aside): it leans on the question before, as
    # 「それって病院も？」 does. 「今日の天気は？」 names things no entry uses, so it stays a
    # question of its own.
    leans = short and (FOLLOW_UP.search(msg.text) or (decision.action == "escalate" and all(
        HIRAGANA.fullmatch(t) for t in ctx.retriever.unknown_terms(msg.text))))
    # 「それは病院も同じですか」 names its matter by それ: whatever it matches alone (病院の
    # 1号機能 is 「診療所と同じ」) is a guess until read with the question before.
    points_back = short and _POINTS_BACK.search(msg.text)
    if points_back or leans and decision.action != "answer":
        decision = await _with_previous(msg, ctx, decision)
        if points_back and decision.action == "answer":  # a guess is offered, not stated
            decision = replace(decision, action="suggest", entry_id=None, answer=None)
    elif short and VAGUE.search(msg.text):
        if await _after_status(msg, ctx):  # 「いつまで？」 under the card: its deadline
            return await handle_status(msg, ctx, {})
        decision = await _with_previous(msg, ctx, decision, same_matter=True)
    return [await reply_for(decision, ctx, msg.text)]


def _noise(text: str, ctx: Context) -> bool:
    """No question at all: one character over and over (「ああああ…」), or no Japanese word
    and nothing the knowledge base knows (「null」「<script>…」「../../etc/passwd」). Offered to
    staff in a user test, such a message would only reach a busy desk as noise."""
    letters = [c for c in unicodedata.normalize("NFKC", text) if c.isalnum()]
    if len(letters) >= 4 and len(set(letters)) == 1:
        return True
    japanese = any(_JAPANESE.match(c) for c in letters)
    return not japanese and not _in_english(text) and not ctx.retriever.known_terms(text)


def _in_english(text: str) -> bool:
    """Written in a Latin-script language: most letters ASCII, and several words."""
    letters = [c for c in text if c.isalpha()]
    latin = sum(c.isascii() for c in letters)
    return len(text.split()) >= 3 and latin >= 0.8 * max(len(letters), 1)


async def _each_question(msg: Inbound, ctx: Context, by_sentence: bool = False,
                         ) -> list[Reply]:
    """Answer each question of a short message that asks several; [] when the message is
    one question asked twice over (「報告って義務？出さなくてもいい？」) or has no sure answer
    at all: it is then read as one question.

    `by_sentence`, for a message unsure as a whole: each sentence read alone, kept only when
    two or more have a sure answer (「督促が来ました。G-MISのIDもわかりません。締切はいつ
    ですか」 had gone to the G-MIS call center whole)."""
    parts, numbered = _question_parts(msg.text, by_sentence)
    if not parts:
        return []
    # 「①うちの報告はどうなってますか」: the clinic's own status, from the roster.
    own = [p for p, _ in parts if asks_status(replace(msg, text=p), ctx) is not None][:1]
    parts = [(p, joined) for p, joined in parts if p not in own]
    if not parts:
        return []
    decisions = [ctx.retriever.decide(p) for p, _ in parts]
    if not numbered:  # a numbered part was written to stand alone
        decisions = _read_in_context(msg.text, decisions, ctx)
    answered = {d.entry_id: d for d in decisions if d.action == "answer" and d.entry_id}
    if by_sentence and len(answered) < 2:
        return []
    others = _left_over(parts, decisions, answered, ctx, by_sentence and not numbered)
    if not (answered or own) or (len(answered) + len(own) == 1 and not others):
        return []
    replies = [r for p in own for r in await handle_status(replace(msg, text=p), ctx, {})]
    asked_by = {}  # the part each sure answer is for (its first)
    for (part, _), d in zip(parts, decisions, strict=True):
        if d.entry_id in answered:
            asked_by.setdefault(d.entry_id, part)
    shown = [(asked_by[e], await reply_for(d, ctx, msg.text)) for e, d in answered.items()]
    # Suggestions, and the G-MIS call center for a part about the system (not the whole).
    shown += [(p, await reply_for(d, ctx, p, part=p)) for p, d in others
              if d.action == "suggest" or d.route == "gmis_callcenter"]
    if numbered:  # 「①…②…」: in the list's order, each answer saying which item it is for
        order = [p for p, _ in parts]
        shown.sort(key=lambda s: order.index(s[0]))
        shown = [(p, r if r.meta.get("action") != "answer" else replace(
            r, text=f"「{shorten(p, 30)}」について：\n{r.text}")) for p, r in shown]
    replies += [r for _, r in shown]
    if unsure := [p for p, d in others if d.action == "escalate"
                  and d.route != "gmis_callcenter"]:
        quoted = "」「".join(unsure)
        replies.append(Reply(f"「{quoted}」については、確実にお答えできる情報が見つかりません"
                             "でした。" + OFFER_QUESTION, OFFER_STAFF,
                             meta={"action": "escalate"}))
    elif by_sentence and len(msg.text) >= MIXED_AFTER:  # a mail may ask more than answered
        replies.append(Reply("ほかにお答えできていない点がありましたら、" + OFFER_QUESTION,
                             OFFER_STAFF, meta={"action": "escalate"}))
    return replies


def _read_in_context(text: str, decisions: list[Decision], ctx: Context) -> list[Decision]:
    """A sentence read alone has lost the rest's context: 「協議の場の結果はどう公表すれば
    よいでしょうか。様式の例はありますか」 had answered the second with the 患者説明 form.
    Below `part_answer_at`, its answer must also be among the message's own best five, or
    it is offered, not answered (「しめきりすぎたらどうなる？ばっきんある？」 keeps both)."""
    unsure = [d.action == "answer" and d.score < ctx.retriever.tuning.part_answer_at
              for d in decisions]
    if not any(unsure):
        return decisions
    whole = {c.entry_id for c in ctx.retriever.rank(text, k=5)}
    return [replace(d, action="suggest", entry_id=None, answer=None)
            if weak and d.entry_id not in whole else d
            for d, weak in zip(decisions, unsure, strict=True)]


def _with_the_question_alone(text: str, decision: Decision, ctx: Context) -> Decision:
    """An unsure message of several sentences also offers what its question sentence alone
    finds (「ホームページに載せるだけでは不十分でしょうか。待合室が狭く…」: the reason had
    sunk the answer). Only as buttons, as the other sentences may change the answer, unless
    they say next to nothing."""
    if decision.action == "answer":
        return decision
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) >= 4]
    asking = [s for s in sentences if _QUESTION_ENDING.search(s)]
    if len(sentences) < 2 or not asking:
        return decision
    question = asking[-1]
    # 「…外来診療はしてません。対象外ですよね？」: a question sentence that says little alone
    # matches the generic entries best and would push out what the message is about.
    if len(ctx.retriever.known_terms(question)) < 2:
        return decision
    alone = ctx.retriever.decide(question)
    # 「出さなかったら罰金とかあるの？うちの先生が気にしてて」: context that names almost
    # nothing the knowledge base knows, and leads the whole message to the same entry,
    # cannot change the answer; it is given. (「…うちは歯科です」 leads elsewhere.)
    lead = decision.candidates[0].entry_id if decision.candidates else None
    if alone.action == "answer" and alone.entry_id == lead and sum(
            len(ctx.retriever.known_terms(s)) for s in sentences if s != question) < 2:
        return alone
    return replace(decision, candidates=_merged(decision.candidates, alone.candidates[:2]))


def _merged(ranked: list[Candidate], more: list[Candidate]) -> list[Candidate]:
    """`ranked` with `more` joined: an entry in both keeps its place and the higher score;
    a new one goes before the first that scores below it. The retriever's order is not
    re-sorted by score, as it weighs the learned scores, which the score does not show."""
    out = list(ranked)
    for c in more:
        at = next((i for i, o in enumerate(out) if o.entry_id == c.entry_id), None)
        if at is not None:
            out[at] = max(out[at], c, key=lambda x: x.score)
        else:
            out.insert(next((i for i, o in enumerate(out) if o.score < c.score), len(out)), c)
    return out[:max(3, len(ranked))]


def _question_parts(text: str, by_sentence: bool) -> tuple[list[tuple[str, bool]], bool]:
    """The questions of a message (each with whether あと/それと joined it), or [] when it
    is not several; and whether they are numbered. A question ends in ？ or opens with
    あと/それと: 「…ですか？うちは3月に再開予定です」 ends in context, 「…いつ？ありがとう
    ございます」 in courtesy. Numbered (①②, (1), 1., or 「1 …2 …」 with spaces), they are
    questions each however they end when two or more of them ask or the list opens the
    message and runs 1, 2…; 「★は①掲示②一次診療③相談のことですか？」 is one question
    listing three things."""
    if by_sentence and (topics := _topics(text)):
        return [(t, False) for t in topics], True
    spaced = _opens_a_run(text, _SPACED_NUMBER,
                          [int(m.group(1)) for m in _SPACED_NUMBER.finditer(text)])
    markers = _NUMBER.findall(text)
    numbered = spaced or len(markers) >= 2
    if len(text) > MULTI_MAX * (2 if numbered else 1) or (numbered and by_sentence):
        return [], numbered  # (a numbered message was read once already)
    # A list that opens the message and runs 1, 2… is items each (「1. 締め切りはいつ 2. パス
    # ワードを忘れた」) unless its last item closes it as one question (「①掲示②一次診療③
    # 相談のことですか？」); one inside a sentence, unless two of its items ask.
    if numbered and not spaced:
        listed = [p.strip(" 　、。") for p in _NUMBER.split(text)][1:]
        asking = [bool(_ASKS.search(p)) for p in listed]
        numbers = [int(n.group()) for m in markers  # (NFKC reads ① as 1)
                   if (n := re.search(r"\d+", unicodedata.normalize("NFKC", m)))]
        numbered = sum(asking) >= 2 or (_opens_a_run(text, _NUMBER, numbers) and not (
            asking[-1] and not any(asking[:-1]) and _CLOSES_LIST.search(listed[-1])))
    split = (_SPACED_NUMBER if spaced else _NUMBER if numbered
             else _SENTENCE_END if by_sentence else _QUESTION_END)
    raw = [p.strip(" 　、。") for p in _items(split, text)]
    parts = [(_JOINER.sub("", p), bool(_JOINER.match(p))) for p in raw
             if len(p) >= (2 if numbered else 4)  # a listed 「締切」 is an item
             and (numbered or by_sentence or p[-1] in "?？か" or _JOINER.match(p))
             and not courtesy.kinds_of(p)  # nor 「質問してもよろしいでしょうか」
             and not _ALTERNATIVE.match(p)]
    if numbered and raw and not split.match(text.strip()):  # 「至急です。①…」: the lead is context
        parts = [p for p in parts if p[0] != raw[0]]
    return (parts if 2 <= len(parts) <= (5 if numbered else 3) else []), numbered


def _topics(text: str) -> list[str]:
    """The topics of 「AとBとCについて教えて」, each to be answered as if listed (2 to 5), or
    [] when the message is not such a row."""
    m = _TOPIC_LIST.match(unicodedata.normalize("NFKC", text).strip())
    if m is None or _ONE_QUESTION.search(m.group("list")):
        return []
    topics = [t.strip(" 　") for t in _TOPIC_SEP.split(m.group("list"))]
    if not 2 <= len(topics) <= 5 or not all(topics):
        return []
    # Short names only: a topic with a particle or a verb (「なる病院」「医科を併設している
    # 場合」) was cut out of one sentence, and an exemption word alone (歯科) must not get a
    # bare 「対象外」 for a clinic that also does 医科.
    if any(len(t) > 15 or _NOT_A_NAME.search(t) or t in _EXEMPTION_WORDS for t in topics):
        return []
    return topics


def _opens_a_run(text: str, marker: re.Pattern[str], numbers: list[int]) -> bool:
    """Whether a `marker` opens the message and the list's numbers run 1, 2, 3…"""
    return (len(numbers) >= 2 and numbers == list(range(1, len(numbers) + 1))
            and bool(marker.match(text.strip())))


def _items(split: re.Pattern[str], text: str) -> list[str]:
    """The text between the list's markers (a spaced list's captured digits dropped)."""
    return split.split(text) if not split.groups else split.split(text)[::split.groups + 1]


def _left_over(parts: list[tuple[str, bool]], decisions: list[Decision],
               answered: dict[str, Decision], ctx: Context, by_sentence: bool,
               ) -> list[tuple[str, Decision]]:
    """The parts that are questions of their own without a sure answer: 「あと病院は？」, or
    one that found nothing sure (read with the first part when it leans on it)."""
    others = []
    for i, ((part, joined), d) in enumerate(zip(parts, decisions, strict=True)):
        if d.action == "answer":
            continue
        if i and FOLLOW_UP.search(part):  # 「あと病院は？」 leans on the question before it
            d = _read_with(parts[0][0], part, d, ctx, given=decisions[0].entry_id)
        # One with buttons of its own is another question too (「当院も対象ですか。また、
        # 期限は？」 had answered the deadline only), unless it leads to an answer given.
        elsewhere = d.action == "suggest" and d.candidates[0].entry_id not in answered
        if by_sentence and not _QUESTION_ENDING.search(part):  # context; the questions sure
            continue
        if d.action == "escalate" or joined or FOLLOW_UP.search(part) or elsewhere:
            others.append((part, d))
    return others


async def _after_status(msg: Inbound, ctx: Context) -> bool:
    last = await history.last_turn(msg, ctx)
    return last is not None and last.action == "status"


async def _desk_after_answer(msg: Inbound, ctx: Context) -> str | None:
    """The entry saying whom to ask, when the message before was an answer: a whom-to-ask
    question alone would match the prefecture's desk even after a G-MIS login answer."""
    last = await history.last_turn(msg, ctx)
    shown = (*history.ANSWERED, "more")  # an answer, its 詳しく, or 「詳しく」 typed
    if last is None or last.action not in shown:
        return None
    answered = ctx.retriever.by_id.get(last.entry_id or "")
    desk = DESK_ENTRIES[answered.route] if answered else None
    return desk if desk in ctx.retriever.by_id else None


async def _with_previous(msg: Inbound, ctx: Context, alone: Decision,
                         same_matter: bool = False) -> Decision:
    """Read a follow-up together with the question before it, for an entry other than the
    one already given (「それって病院も？」 after the 歯科 answer is about who must report),
    or, for a bare 「どれくらい？」 (`same_matter`), that entry too. What that finds is only
    offered, first among the buttons: the reading is a guess."""
    if alone.action == "escalate" and alone.route == "gmis_callcenter":
        return alone
    turns = await history.recent(msg, ctx, limit=5)
    previous = history.last_open_question(turns) if turns and history.fresh(turns[0], ctx) else ""
    if not previous:
        return alone
    answered = any(t.inbound_text == previous and t.action == "answer" for t in turns)
    if not answered and len(previous) <= FOLLOW_UP_MAX and (
            VAGUE.search(previous) or FOLLOW_UP.search(previous)):
        # A follow-up after a follow-up (「いつまでに？」 then 「ホームページでもいい？」)
        # is about the question both lean on; one answered on its own (「訪問診療の報告項目
        # は？」) stood alone.
        earlier = [t for t in turns if t.inbound_text != previous]
        previous = f"{history.last_open_question(earlier)}\n{previous}".lstrip()
    given = next((t.entry_id for t in turns if t.action == "answer"), None)
    return _read_with(previous, msg.text, alone, ctx, given=None if same_matter else given)


def _read_with(previous: str, text: str, alone: Decision, ctx: Context,
               given: str | None) -> Decision:
    """`text` read after `previous`: the entries that reading finds (other than `given`),
    offered before what `text` alone found; `alone` if the reading finds nothing sure."""
    found = [c for c in ctx.retriever.rank(f"{previous}\n{text}", k=4)
             if c.entry_id != given and c.score >= ctx.retriever.tuning.follow_up_at][:2]
    if not found:
        return alone
    offered = {"suggest": alone.candidates, "answer": alone.candidates[:1]}.get(alone.action, [])
    shown = list({c.entry_id: c for c in [*found[:1], *offered, *found[1:]]}.values())[:3]
    route = ctx.retriever.by_id[shown[0].entry_id].route
    return Decision("suggest", route, None, None, shown[0].score, shown)


async def handle_show(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """A tapped suggestion: answer that entry."""
    if found["arg"] not in ctx.retriever.by_id:
        return [Reply("申し訳ありません、その項目は見つかりませんでした。"
                      "もう一度ご質問ください。")]
    return [await answer_reply(found["arg"], ctx, {"action": "answer", "entry_id": found["arg"]})]


async def handle_detail(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    entry = ctx.retriever.by_id.get(found["arg"])
    if entry is None:
        return [Reply("申し訳ありません、その項目は見つかりませんでした。")]
    text = entry.detail or entry.answer
    if needs_gmis_contact(entry.route, text) and ctx.config.gmis_contact not in text:
        text += "\n\n" + contact_line(ctx.config.gmis_contact)
    return [Reply(text, meta={"action": "detail", "entry_id": entry.id})]


async def handle_repeat(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """「さっきのもう一回」: the latest answer shown again (its buttons with it); without one,
    a request for the question rather than 「お答えできる情報が見つかりません」."""
    last = await history.last_turn(msg, ctx)
    if last is None or last.action not in history.ANSWERED or (
            last.entry_id not in ctx.retriever.by_id):
        return [Reply("もう一度お伝えできる直前のお答えが見つかりませんでした。お手数ですが、"
                      "ご質問をそのまま入力してください。", meta={"action": "repeat"})]
    return [await answer_reply(last.entry_id or "", ctx)]


async def handle_more(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """A typed 「詳しく」: the detail of the answer just given, or an honest "that is all"
    with a way to a person, never a search for the word 詳しく itself. Only the latest
    question counts: an older answer would be about something else by now."""
    turns = await history.recent(msg, ctx, limit=5)
    last = next((t for t in turns if t.action != "more"), None)  # newest first
    entry = ctx.retriever.by_id.get(last.entry_id or "") if last is not None else None
    if last is not None and last.action == "suggest" and history.fresh(last, ctx):
        return [Reply("上の選択肢から近いものをお選びいただくと、その回答をご覧いただけます。"
                      "当てはまるものがなければ「どれでもない（担当者に聞く）」をお選びください。",
                      meta={"action": "more"})]
    if last is None or entry is None or last.action not in history.ANSWERED:
        return [Reply("どの件について詳しくお知りになりたいか、ご質問の内容をそのまま"
                      "入力してください。", meta={"action": "more"})]
    if last.action == "answer" and last.entry_ids:  # a message that asked several
        detailed = [e for e in (ctx.retriever.by_id.get(i) for i in last.entry_ids)
                    if e is not None and e.detail]
        if len(detailed) == 1:
            return await handle_detail(msg, ctx, {"arg": detailed[0].id})
        if detailed:  # which one is for the clerk to say, not for us to guess
            return [Reply("どのお答えについて詳しくご覧になりますか。",
                          tuple(Button(f"詳しく：{shorten(e.question, 24)}", f"qa:detail:{e.id}")
                                for e in detailed), meta={"action": "more"})]
        return [Reply("先ほどのお答えで、ご案内できる内容はすべてです。" + OFFER_QUESTION,
                      OFFER_STAFF, meta={"action": "more"})]
    if entry.detail and last.action == "answer":
        return await handle_detail(msg, ctx, {"arg": entry.id})
    if entry.route == "gmis_callcenter":  # G-MIS questions are never the prefecture's
        return [Reply(gmis_text(ctx), meta={"action": "more", "entry_id": entry.id})]
    text = (f"「{entry.question}」についてご案内できる内容は、先ほどのお答えですべてです。"
            + OFFER_QUESTION)
    return [Reply(text, OFFER_STAFF, meta={"action": "more", "entry_id": entry.id})]
