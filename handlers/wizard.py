"""「対象か確認」: a button wizard for 報告対象, then 1号 and 2号 self-checks.

The state is only the list of answers given so far (in the database); the current step is
derived from it, so 戻る is "drop the last answer" and a restart loses nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

from db import repo
from handlers import courtesy, escalation, history, qa
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from handlers.rules import FUNC1_ITEMS, FUNC2, Facility, describe, judge, obligation
from handlers.status import own_record

FLOW = "wizard"
PAUSED = "wizard_paused"  # a question typed mid-check: the answers wait for 「確認を続ける」
RESUME = Button("確認を続ける", "wiz:resume")
PAUSED_NOTE = Reply("対象かどうかの確認は、ここまでのお答えを残して一時中断しています。"
                    "続けるときは「確認を続ける」を押してください。", (RESUME,),
                    meta={"action": "wizard_paused"})
# Also after the check has ended (its result given): neither case has a step to go back to.
_LOST = ("続きから再開できる確認はありません（確認が終わったか、時間が経って終了しています）。"
         "もう一度確認する場合は「対象か確認」と送ってください。")
YES_NO = (("はい", "yes"), ("いいえ", "no"))
UNSURE = re.compile(r"わから|分から|わかん|不明|知らない|しらない|どっち")
# 「正月は休みにしてます」 is the commonest wrong reading of 休院: asked again, with why.
_HOLIDAY = re.compile(r"正月|しょうがつ|年末年始|年始|元日|元旦|休診日|祝日|冬休み|お休み|休み"
                      r"|やすみ")
_TAP_LEAD = ("お手数ですが、下のボタンでお答えください（文章のお答えは読み違えることがある"
             "ため、はい・いいえはボタンでお選びいただいています）。\n")
# What the roster gave is not asked, so it cannot be gone back to either.
_ROSTER_LEAD = ("医療機関の種類と対象外の条件は、都道府県の登録内容から判定しているため、"
                "ここより前には戻れません。登録内容が違う場合は、都道府県の担当窓口にお知らせ"
                "ください。\n")
_FROM_ROSTER_LEAD = ("その点は、都道府県の登録内容から判定しています。登録内容が違う場合は、"
                     "都道府県の担当窓口にお知らせください。\n")
_LATER_LEAD = ("ありがとうございます。その点はこのあとの質問でお伺いします。まずは、下の質問に"
               "ボタンでお答えください。\n")
_EARLIER_LEAD = ("その点は前の質問でお答えいただいています。お答えを変える場合は、「戻る」で"
                 "前の質問に戻れます。\n")
_HOLIDAY_LEAD = ("お正月などの休診日は休院に当たりません。届出をして業務を休止していたので"
                 "なければ、「いいえ」をお選びください。\n")
# How a typed question ends when it has no question mark; 「うちは一般の診療所です」 does not.
_ASKS_PLAINLY = re.compile(r"(?:教えて(?:ください|下さい|ほしい)|ですか|ますか|でしょうか"
                           r"|(?:って|とは)(?:なに|何|なん)(?:ですか|なの|だっけ)?)[。…]*$")
_ASKS = re.compile(r"(?:か|かね|の|かな|教えて(?:ください|下さい)?|ほしい|けど|ですが"
                   r"|たい(?:です)?|忘れた|できない|どうなる|必要|いつ|まで|どこ|何|なに)[。…]*$")

_LEADING = re.compile(r"^\s*(?P<word>はい|ええ|うん|いいえ|いえ|いや)[、,。!！\s]+(?P<rest>\S.*)$",
                      re.DOTALL)
_TURN = re.compile(r"でも|けど|けれど|ですが|ただ|しかし|ただし|一部|たまに|時々|場合")
# Not an answer yet: 「いや、わからないです」「いいえ、確認します」「はい、これから掲示します」.
_UNSETTLED = re.compile(r"わから|分から|判ら|確認|まだ|これから|予定|検討|待って|待ち|たぶん|多分"
                        r"|おそらく|かも")
_NEGATED = re.compile(r"ない|ません|無い|なし|無し|いいえ|違います|ちがいます")


@dataclass(frozen=True)
class Step:
    key: str
    text: str
    choices: tuple[tuple[str, str], ...] = YES_NO
    # Words that make a typed sentence an attempt to answer this step, not another
    # question. Sentences are never read as yes or no: 「歯科しかやってないです」 ends like a
    # no and 「相談はお断りしています」 like a yes, so only a tap or a plain はい/いいえ counts.
    topic: tuple[str, ...] = ()
    also: tuple[tuple[str, str], ...] = ()  # other typed words for a choice


STEPS: dict[str, Step] = {s.key: s for s in [
    Step("kind", "報告の対象かどうかを確認します。医療機関の種類をお選びください。",
         (("病院", "hospital"), ("診療所", "clinic"))),
    Step("special", "特定機能病院の承認を受けていますか。", topic=("特定機能", "承認")),
    Step("dental", "歯科医療機関（歯科のみを診療する病院・診療所）ですか。"
                   "医科と歯科を併せて診療している場合は「いいえ」です。", topic=("歯科", "医科")),
    Step("closed", "報告する年の1月1日（1〜3月の報告なら、その年の元日）の時点で、届出をして"
                   "休院（業務を休止）していましたか。お正月の休診日は休院に当たりません。",
         topic=("休院", "休止", "休診", "休業", "休ん", "やすん", "きゅういん", "きゅうしん")),
    Step("go_func1", "続けて、1号機能の要件を満たしているかを確認しますか（★の3項目）。",
         (("確認する", "yes"), ("ここで終わる", "no")),
         also=(("確認します", "yes"), ("お願いします", "yes"), ("終わります", "no"))),
    Step("posting", "★1 かかりつけ医機能と報告する内容を、院内に掲示していますか"
                    "（掲示できますか）。", topic=("掲示", "貼")),
    Step("primary_care", "★2 17の診療領域のうち、一つ以上で一次診療（最初の診療）を"
                         "行えますか。", topic=("一次診療", "初診", "診療領域", "領域", "診て")),
    Step("consultation", "★3 患者さんからの医療に関する相談（継続的な相談を含む）に"
                         "応じていますか。", topic=("相談",)),
    Step("i", "2号機能（イ）通常の診療時間外の診療：準夜帯（18〜22時）・深夜帯（22〜6時）・休日の"
              "診療や在宅当番医制への参加など、自院または他院との連携で一つでも実施していますか。",
         topic=("時間外", "夜間", "休日", "準夜", "深夜", "当番")),
    Step("ro", "2号機能（ロ）入退院時の支援：後方支援病床の確保、入院時の情報共有、"
               "退院時の共同指導など、一つでも実施していますか。",
         topic=("入院", "退院", "後方支援", "病床")),
    Step("ha", "2号機能（ハ）在宅医療の提供：訪問診療・往診・訪問看護の提供など、"
               "一つでも実績がありますか。", topic=("訪問", "往診", "在宅")),
    Step("ni", "2号機能（ニ）介護サービス等と連携した医療提供：介護支援専門員"
               "（ケアマネジャー）との連携、情報共有、ACP（人生会議）の支援など、"
               "一つでも実施していますか。", topic=("介護", "ケアマネ", "acp", "ACP", "人生会議")),
]}


def next_step(answers: dict[str, str]) -> str | None:
    """The next question to ask, or None when the wizard has reached its result."""
    order = ["kind"] + (["special"] if answers.get("kind") == "hospital" else [])
    order += ["dental", "closed"]
    for key in order:
        if key not in answers:
            return key
        if answers[key] == "yes":  # each of these questions, answered yes, exempts
            return None
    if "go_func1" not in answers:
        return "go_func1"
    if answers["go_func1"] == "no":
        return None
    for key in FUNC1_ITEMS:
        if key not in answers:
            return key
        if answers[key] == "no":
            return None
    return next((key for key in FUNC2 if key not in answers), None)


def _facility(a: dict[str, str]) -> Facility:
    return Facility(kind=a.get("kind", "clinic"), special_function=a.get("special") == "yes",
                    dental=a.get("dental") == "yes", closed_on_jan1=a.get("closed") == "yes")


# The reference date is 1月1日; for a clinic opened after it the seeds say nothing, so the
# check does not claim a duty there (the roster, which the prefecture keeps, does).
OPENED_LATER = "1月2日以降に開設した場合の扱いは、都道府県にご確認ください。"


def _required_text(answers: dict[str, str]) -> str:
    verdict = obligation(_facility(answers))
    return f"判定：報告の対象です。\n理由：{verdict.reason}{OPENED_LATER}"


def result_text(answers: dict[str, str]) -> str:
    verdict = obligation(_facility(answers))
    if not verdict.required:
        return f"判定：報告の対象外です。\n理由：{verdict.reason}"
    lines = [_required_text(answers)]
    if answers.get("go_func1") == "yes":
        flags = {k: answers[k] == "yes" for k in (*FUNC1_ITEMS, *FUNC2) if k in answers}
        judged = judge(flags)
        lines.append(describe(judged))
        if "posting" in judged.func1_failed:  # the one ★ a clinic can meet this week
            lines.append("院内掲示は、報告までに掲示しておけば満たせます（G-MISで報告する場合は、"
                         "掲示用の様式をG-MISから出力できます）。")
    lines.append("※ この結果は目安です。最終的な体制の確認は都道府県が行います。")
    return "\n\n".join(lines)


def question_reply(key: str, answers: dict[str, str], fixed: int = 0) -> Reply:
    """The step's question and buttons; 戻る when there is an answer to go back to (not one
    of the `fixed` first answers, which came from the roster)."""
    step = STEPS[key]
    text = step.text
    if key == "go_func1":  # the eligibility result comes first; the 1号 check is optional
        text = f"{_required_text(answers)}\n\n{text}"
    buttons = [Button(label, f"wiz:{value}") for label, value in step.choices]
    if len(answers) > fixed:
        buttons.append(Button("戻る", "wiz:back"))
    buttons.append(Button("やめる", "wiz:cancel"))
    return Reply(text, tuple(buttons), meta={"action": "wizard"})


# 「うちが報告対象かチェックしたいです」: a request for the check, not a question to search.
_WANTS_CHECK = re.compile(
    r"(?:対象|1号|2号|要件|報告|必要|出さなくて).{0,10}?(?:か|かどうか)を?"
    r"(?:チェック|確認|判定|診断|調べ)(?:したい|して(?:ほしい|ください|下さい)?|お願い|できますか"
    r"|できる)(?:です|んです(?:が|けど)?|のですが|します)?[。!！]*")


def wants_check(msg: Inbound, _ctx: Context) -> Found | None:
    """Match a short typed request for the check (no question mark: that is a question)."""
    text = unicodedata.normalize("NFKC", msg.text).strip()
    if msg.payload is not None or len(text) > 40 or "?" in text:
        return None
    found = _WANTS_CHECK.search(text)
    return {} if found and found.end() == len(text) else None


async def handle_start(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """A linked clinic is not asked what the roster already says (its type and the three
    exemptions): the check starts at the 1号 questions, or ends at 対象外."""
    name, known = await _from_roster(ctx)
    if not known:
        await _save(msg, ctx, [])
        return [question_reply("kind", {})]
    note = (f"{name}の登録内容（医療機関の種類、特定機能病院・歯科医療機関・1月1日の休院）から"
            "判定しました。登録内容が違う場合は、都道府県の担当窓口にお知らせください。\n\n")
    answers = dict(known)
    following = next_step(answers)
    if following is None:
        return await _finish(msg, ctx, note + result_text(answers))
    await _save(msg, ctx, [list(pair) for pair in known], fixed=len(known))
    reply = question_reply(following, answers, fixed=len(known))
    return [Reply(note + reply.text, reply.buttons, meta=reply.meta)]


async def _from_roster(ctx: Context) -> tuple[str, list[tuple[str, str]]]:
    """The eligibility answers the linked institution's roster row gives."""
    if (found := await own_record(ctx)) is None:
        return "", []
    inst = found[0]
    flags = [("special", inst.special_function)] if inst.kind == "hospital" else []
    flags += [("dental", inst.dental), ("closed", inst.closed_on_jan1)]
    return inst.name, [("kind", inst.kind), *((k, "yes" if v else "no") for k, v in flags)]


async def handle_resume(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """「確認を続ける」 typed rather than tapped."""
    return await _resume(msg, ctx)


async def handle_back(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """「戻る」 typed outside the running check: a step back in a paused check, else the word
    that there is nothing to go back to (it had been searched and offered to staff)."""
    if ctx.flow == PAUSED:
        return await handle_answer(msg, ctx, {"arg": "back"})
    last = await history.last_turn(msg, ctx)
    if last is not None and last.action == "wizard_done":
        return [Reply(_LOST)]
    return [Reply("戻れる操作はありません。ご質問があれば、そのまま入力してください。",
                  meta={"action": history.SMALL_TALK})]


async def handle_answer(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """A tapped button (wiz:VALUE) or, while in the flow, typed text matching a label."""
    if found.get("arg") == "resume":
        return await _resume(msg, ctx)
    if ctx.flow == PAUSED and found.get("arg"):  # a button of the paused step, tapped
        ctx = replace(ctx, flow=FLOW)
    if ctx.flow != FLOW:
        return [Reply(_LOST)]
    steps: list[list[str]] = [list(p) for p in ctx.flow_data.get("answers", [])]
    answers = dict((k, v) for k, v in steps)
    fixed = _fixed(ctx)
    value = found.get("arg") or _value_from_text(msg.text, next_step(answers))
    if value == "cancel":
        return await _finish(msg, ctx,
                             "確認を終了しました。ご質問があれば、そのまま入力してください。")
    if value == "back":
        if len(steps) <= fixed:  # the roster's answers, or none yet
            lead = _ROSTER_LEAD if fixed else "これより前の質問はありません。\n"
            return [_retry(next_step(answers), answers, fixed, lead=lead)]
        steps = steps[:-1]
    else:
        current = next_step(answers)
        if current is None or value not in {v for _, v in STEPS[current].choices}:
            asks = _asks(msg.text)  # 「掲示はまだです。期限は？」 asks
            if current == "closed" and not asks and _HOLIDAY.search(msg.text):
                return [_retry(current, answers, fixed, lead=_HOLIDAY_LEAD)]
            if found.get("arg"):
                return [_retry(current, answers, fixed)]
            # 「わからない」 about the step; 「G-MISのパスワードがわからない」 is a question
            # (one the knowledge base answers).
            action = ctx.retriever.decide(msg.text).action
            if UNSURE.search(msg.text) and not asks and action != "answer":
                return [_retry(current, answers, fixed, unsure=True)]
            if not asks and current and any(w in msg.text for w in STEPS[current].topic):
                return [_retry(current, answers, fixed, lead=_TAP_LEAD)]
            roster = [k for k, _ in steps[:fixed]]
            if not asks and current and (lead := _about_other_step(msg.text, current, answers,
                                                                   roster)):
                return [_retry(current, answers, fixed, lead=lead)]
            if "staff" in courtesy.kinds_of(msg.text) or _is_question(msg.text, asks, action):
                return await _answer_instead(msg, ctx)
            return [_retry(current, answers, fixed)]
        steps.append([current, value])
    return await _ask_next(msg, ctx, steps)


async def _ask_next(msg: Inbound, ctx: Context, steps: list[list[str]]) -> list[Reply]:
    """The next step for the answers so far, saved; or the verdict when none is left."""
    answers = dict((k, v) for k, v in steps)
    following = next_step(answers)
    if following is None:
        return await _finish(msg, ctx, result_text(answers))
    fixed = _fixed(ctx)
    await _save(msg, ctx, steps, fixed)
    return [question_reply(following, answers, fixed)]


def _fixed(ctx: Context) -> int:
    """How many of the answers came from the roster (they come first)."""
    fixed = ctx.flow_data.get("fixed", 0)
    return fixed if isinstance(fixed, int) else 0


_ELIGIBILITY = ("special", "dental", "closed")  # always asked (special: of a hospital)
# 休診 and やすんで answer the 休院 step when asked it, but 「休診日は往診しています」 at a later
# step is not a fact about 休院 (one already answered).
_LOOSE = {"休診", "休ん", "やすん", "きゅうしん"}


def _about_other_step(text: str, current: str, answers: dict[str, str], roster: list[str],
                      ) -> str | None:
    """「うちは休院中です」 typed at the 歯科 step is a fact for another step: said so, rather
    than read as a question or dropped without a word."""
    for key, step in STEPS.items():
        if key == current or not any(w in text for w in step.topic if w not in _LOOSE):
            continue
        if key in roster:
            return _FROM_ROSTER_LEAD
        if key in answers:
            return _EARLIER_LEAD
        if key in _ELIGIBILITY and (key != "special" or answers.get("kind") == "hospital"):
            return _LATER_LEAD
    return None


def _asks(text: str) -> bool:
    """Plainly a question: a question mark or a question's polite ending."""
    return "?" in text or "？" in text or bool(_ASKS_PLAINLY.search(text.strip()))


def _value_from_text(text: str, current: str | None) -> str:
    """A typed label, or a typed 「はい」「うん」「いいえ」 (handlers.courtesy) for a yes/no
    step whatever its buttons say (確認する / ここで終わる)."""
    labels = {"戻る": "back", "やめる": "cancel", "キャンセル": "cancel"}
    value = ""
    if current:
        step = STEPS[current]
        labels.update(dict((*step.choices, *step.also)))
        if step.choices != YES_NO and not _asks(text):  # 「うちは一般病院です」 names one
            named = [choice for label, choice in step.choices if label in text]
            value = named[0] if len(named) == 1 else ""
    value = (labels.get(text.strip().rstrip("。.!！")) or courtesy.yes_or_no(text)
             or (_leading_answer(text, current) if current else None) or value)
    return value if value in ("back", "cancel") or (
        current and value in {v for _, v in STEPS[current].choices}) else ""


def _leading_answer(text: str, current: str) -> str | None:
    """「いいえ、歯科じゃないです」: a plain いいえ first answers the step, and the rest only
    explains it (the rest alone is never read as yes or no, see Step.topic). Not when the
    rest asks or turns (「はい、でも医科もあります」 means no); and a leading はい never
    answers an eligibility step, where a wrong yes would tell a clinic it need not report."""
    m = _LEADING.match(unicodedata.normalize("NFKC", text))
    if m is None:
        return None
    rest = m.group("rest")
    if _asks(rest) or _TURN.search(rest) or _UNSETTLED.search(rest):
        return None
    answer = courtesy.yes_or_no(m.group("word"))
    # The reason must say the same as the word: 「はい、まだ掲示していません」 is a no.
    negated = bool(_NEGATED.search(rest))
    if answer == "yes" and (negated or current in _ELIGIBILITY):
        return None
    return answer if answer != "no" or negated else None


def _is_question(text: str, asks: bool, action: str) -> bool:
    """Typed in the middle of the check, about something else (「そういえばG-MISのパスワード
    忘れた」): plainly a question (`asks`), words with a sure answer (`action`, the
    retriever's), or a question's looser ending with something to offer."""
    return asks or action == "answer" or (bool(_ASKS.search(text.strip()))
                                          and action != "escalate")


async def _answer_instead(msg: Inbound, ctx: Context) -> list[Reply]:
    """The question (or 「オペレーターにつないで」) is not lost to 「ボタンでお答えください」:
    it is handled as it would be outside the check. A question only pauses the check, its
    answers kept, so 「17ってなに」 at the 1号 step does not send the clerk back to the
    start; asking for a person ends it (the staff prompt takes the conversation over)."""
    outside = replace(ctx, flow=None, flow_data={})
    if "staff" in courtesy.kinds_of(msg.text):
        async with ctx.session() as session:
            await repo.clear_state(session, msg.channel, msg.user_id)
        note = Reply("対象かどうかの確認はここで終了します。確認は「対象か確認」から"
                     "やり直せます。", meta={"action": "wizard_done"})
        return [note, *await escalation.handle_ask_staff(msg, outside, {})]
    async with ctx.session() as session:
        await repo.set_state(session, msg.channel, msg.user_id, PAUSED,
                             {"answers": ctx.flow_data.get("answers", []),
                              "fixed": _fixed(ctx)}, ctx.clock())
    return await handle_paused_question(msg, outside, {})


async def handle_paused_question(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """A question while the check waits: answered as any, with the way back under it."""
    return [*await qa.handle_question(msg, ctx, found), PAUSED_NOTE]


async def handle_paused_show(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """A suggestion tapped while the check waits: its answer, and the way back under it too
    (the resume button had gone with the answer)."""
    return [*await qa.handle_show(msg, ctx, found), PAUSED_NOTE]


async def _resume(msg: Inbound, ctx: Context) -> list[Reply]:
    """「確認を続ける」: the paused (or running) check asks its next question again."""
    if ctx.flow not in (PAUSED, FLOW):
        return [Reply(_LOST)]
    return await _ask_next(msg, ctx, [list(p) for p in ctx.flow_data.get("answers", [])])


def _retry(current: str | None, answers: dict[str, str], fixed: int = 0,
           unsure: bool = False, lead: str | None = None) -> Reply:
    if current is None:
        return Reply("確認はすでに終わっています。")
    reply = question_reply(current, answers, fixed)
    lead = lead or ("わからない項目は、院内でご担当の方に確認してからお答えください。すぐに"
                    "確認できない場合は「やめる」で終了し、「担当者に聞く」から都道府県に"
                    "お尋ねいただけます。\n" if unsure else "ボタンでお答えください。\n")
    return Reply(lead + reply.text, reply.buttons, meta=reply.meta)


async def _save(msg: Inbound, ctx: Context, steps: list[list[str]], fixed: int = 0) -> None:
    async with ctx.session() as session:
        await repo.set_state(session, msg.channel, msg.user_id, FLOW,
                             {"answers": steps, "fixed": fixed}, ctx.clock())


AGAIN = Button("最初から確認し直す", "menu:check")  # a mis-tap on the last step has no 戻る


async def _finish(msg: Inbound, ctx: Context, text: str) -> list[Reply]:
    async with ctx.session() as session:
        await repo.clear_state(session, msg.channel, msg.user_id)
    return [Reply(text, (AGAIN,), meta={"action": "wizard_done"})]
