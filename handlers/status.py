"""「報告状況」: the linked institution's status, deadline, days left and next step."""

from __future__ import annotations

import re
from datetime import date, datetime

from db import repo
from db.models import Institution, Prefecture
from handlers.context import Context
from handlers.linking import HOW_TO_LINK
from handlers.messages import Inbound, Reply
from handlers.router import Found
from handlers.rules import REPORTED_STATUSES, Facility, Obligation, judgement_text, obligation
from scheduler.calendar import JST

NEXT_STEP: dict[str, str] = {
    "未報告": (
        "G-MISにパソコンからログインし、かかりつけ医機能報告を入力したうえで、最後に"
        "「報告」ボタンを押してください（押さないと提出されません）。G-MISのアカウントがない場合や"
        "報告画面に進めない場合は、発行に2週間〜1か月ほどかかるため、お早めにご相談ください。"
        "紙での報告をご希望の場合は、都道府県の担当窓口にお問い合わせください。"
    ),
    "報告済": "ご報告ありがとうございます。現在、都道府県が内容（体制の有無）を確認しています。",
    "差し戻し": (
        "都道府県から修正のお願い（差し戻し）が届いています。G-MISで報告を修正し、"
        "もう一度「報告」ボタンを押して再提出してください。紙の調査票で報告した場合は、"
        "都道府県からの連絡（電話など）に沿って修正してください。"
    ),
    "紙受付": "紙の調査票を受け付けています。都道府県がG-MISへの代理入力を進めています。",
    "確認済": (
        "都道府県による確認が完了しました。報告内容と確認結果は、4月以降に都道府県の"
        "ホームページや医療情報ネット（ナビイ）で公表されます。"
    ),
}


# 「うちの報告どうなってますか」「差し戻しの理由をもう一度」: the 報告状況 card in words.
_OWN_WORDS = "うち|当院|自院|弊院|こちら|私ども|わたしども"
_SELF_WORDS = rf"{_OWN_WORDS}|自分|わたし|私"  # the writer's own, said of a person too
# Kana too: a clerk on a phone types ほうこくおわった as often as 報告終わった.
_DONE = r"(?:でき|出来|出せ|だせ|届い|とどい|済ん|すん|通っ|とおっ|完了し|終わっ|おわっ)"
_ASKS_STATUS = re.compile(
    r"(?:報告|提出|ほうこく|ていしゅつ)(?:は|って|が|、)?(?:ちゃんと)?"
    rf"(?:どうなって(?:い)?(?:ますか|る)|{_DONE}て(?:い)?(?:ますか|る[?？]?$)|済みになって"
    r"|(?:終わっ|おわっ|済ん|すん)た[?？]$"
    r"|(?:でき|出来|済ん|すん|終わっ|おわっ)た(?:か|かどうか)を?(?:確認|かくにん|知りたい|しりたい))"
    r"|(?:差し戻し|差戻し|さしもどし|修正)(?:の|された)?理由(?:を|は)?(?:もう一度|教えて|知りたい|確認|何)"
    r"|^(?:なんで|なぜ|どうして)(?:差し戻さ|差戻さ|さしもどさ)れ"
    rf"|^(?:{_OWN_WORDS})(?:は|の)?(?:もう)?{_DONE}て(?:い)?(?:ますか|る[?？]?$)"
    r"|^(?:出した|だした|提出した|報告した)か(?:どうか)?(?:わから|分から)"
    rf"|^(?:{_OWN_WORDS})の(?:状況|じょうきょう)(?:を|は)?(?:教えて|おしえて|知りたい|しりたい)"
    rf"|^(?:{_SELF_WORDS})の(?:病院|診療所|クリニック|医院)?の?"
    r"(?:報告|提出|ほうこく)(?:の)?(?:状況|じょうきょう|ステータス)")
# Before linking, only a question that says it is about its own report is one
# (「報告ができていない医療機関は？」 asks about others), and never one about others.
_OWN = re.compile(_OWN_WORDS)
_OTHERS = re.compile(r"他の|ほかの|他院|よその")
# 「いつまでに提出すればいい？G-MISのIDがわからない」: a second sentence is a question of its
# own, which the card would swallow.
_MORE_AFTER = re.compile(r"[?？。!！]\s*\S{3,}")
# 「次は何をすればいい」「あと何日」「いつまでに直せばいい」: about the clinic's own record
# only once it is linked.
_ASKS_NEXT = re.compile(r"^(?:次[はに]?|つぎ[はに]?|これから|あとは?)(?:何|なに)を?"
                        r"(?:すれば|したら|する)"
                        r"|^(?:今の|いまの)?(?:状況|じょうきょう|ステータス)(?:を|は)?"
                        r"(?:教えて|おしえて|知りたい|しりたい|確認|かくにん)?(?:ください)?[?？]?$"
                        r"|^(?:何|なに)が(?:残っ|のこっ)て(?:い)?(?:る|ますか)"
                        r"|^次に?(?:すること|やること)は"
                        r"|^(?:うちは)?いつまでに(?:直せば|なおせば|修正すれば|出し直せば|再提出すれば"
                        r"|出せば|だせば|報告すれば|提出すれば)"
                        r"|^(?:締め切りまで)?あと何日(?:ですか|ある|あります(?:か)?)?[?？]?$"
                        r"|^(?:うちは)?(?:どこ|何|なに)を(?:直せば|なおせば|修正すれば|直したら)")


def asks_status(msg: Inbound, ctx: Context) -> Found | None:
    """Match a short typed question about the clinic's own report."""
    text = msg.text.strip()
    if msg.payload is not None or len(text) > 40:
        return None
    linked = ctx.account is not None and ctx.account.linked
    if _OTHERS.search(text) or _MORE_AFTER.search(text):
        return None
    if _ASKS_STATUS.search(text) and (linked or _OWN.search(text)):
        return {}
    return {} if linked and _ASKS_NEXT.search(text) else None


async def own_record(ctx: Context) -> tuple[Institution, Prefecture] | None:
    """The linked clinic's roster row and its prefecture, read tenant-filtered; None before
    linking (the chat's tenant is then only the bot's default)."""
    account = ctx.account
    if account is None or (own := account.linked_prefecture) is None:
        return None
    async with ctx.session() as session:
        return await repo.institution_and_prefecture(session, own, account.institution_id or 0)


# 「ほかの診療所はもう報告した？」「デモ中央病院の報告状況を教えて」「9990001の状況は？」:
# another institution's record, which the chat never shows (only its own, once linked).
_ABOUT_RECORD = r"(?:報告|提出)(?:状況|の状況|の進み具合)|ステータス"
_DONE_IT = r"報告(?:した|済)|提出(?:した|済)|出した|だした|終わっ|おわっ|済ん|すん"
_OTHER_PLACE = re.compile(
    rf"^(?:{_OTHERS.pattern})(?:病院|診療所|医療機関|クリニック|医院|ところ|とこ)"
    rf"[^、。]{{0,6}}?(?:{_ABOUT_RECORD}|{_DONE_IT})"
    rf"|^[^\s、。？?]{{2,20}}(?:病院|診療所|クリニック|医院)の(?:{_ABOUT_RECORD}|状況)"
    rf"|^(?:医療機関コード)?\s*\d{{7,10}}\s*(?:の|は)(?:{_ABOUT_RECORD}|状況|{_DONE_IT})")
_MINE = re.compile(_SELF_WORDS)
OTHERS_REFUSED = "ほかの医療機関の報告状況はお伝えできません。"
OWN_ONLY = ("このチャットでは、連携した医療機関ご自身の報告状況のみご確認いただけます"
            "（「報告状況」と送ってください）。")


def asks_others(msg: Inbound, ctx: Context) -> Found | None:
    """Match a short question about another institution's report (never answered)."""
    text = msg.text.strip()
    if msg.payload is not None or len(text) > 40 or not _OTHER_PLACE.search(text):
        return None
    return None if _MINE.search(text) and not _OTHERS.search(text) else {}


async def handle_others(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """Only the chat's own record: a code or a name that is its own gets its card."""
    if (own := await own_record(ctx)) is None:  # unlinked: it may be its own code
        return [Reply(f"{OTHERS_REFUSED}{HOW_TO_LINK}", meta={"action": "status_others"})]
    if own[0].code in msg.text or own[0].name in msg.text:
        return await handle_status(msg, ctx, found)
    return [Reply(f"{OTHERS_REFUSED}{OWN_ONLY}", meta={"action": "status_others"})]


async def handle_status(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    if (found := await own_record(ctx)) is None:
        return [Reply(HOW_TO_LINK, meta={"action": "status_unlinked"})]
    return [Reply(status_text(*found, ctx.clock()), meta={"action": "status"})]


def status_text(inst: Institution, pref: Prefecture, now: datetime) -> str:
    """Status in plain words, with the next step, for a linked clinic."""
    head = f"【{inst.name}（医療機関コード {inst.code}）】"
    verdict = _obligation(inst)
    if not verdict.required:
        return f"{head}\n報告の対象外です。{verdict.reason}"
    lines = [head, status_line(inst, pref),
             deadline_line(pref, now.astimezone(JST).date())]
    step = NEXT_STEP.get(inst.status, "")
    if inst.status == "未報告" and pref.status_as_of is not None:
        step += ("\nこの記録より後に「報告」ボタンを押した場合は、次に記録が更新されるまで"
                 "「未報告」と表示されます。")
    if inst.status == "差し戻し" and inst.return_reason:
        step += f"\n修正の理由：{inst.return_reason}"
    lines.append(f"次にすること：{step}")
    if judged := judgement_text(inst.report):
        lines.append(judged)
    return "\n".join(lines)


def status_line(inst: Institution, pref: Prefecture) -> str:
    """「報告状況：…」 with the time of the record it comes from."""
    if not _obligation(inst).required:
        return "報告状況：報告の対象外です"
    return f"報告状況：{_status_label(inst)}{_as_of(pref)}"


def settled(inst: Institution) -> str | None:
    """What the record says when a clinic has nothing left to file: exempt, or in."""
    if not _obligation(inst).required:
        return "報告の対象外です"
    if inst.status in REPORTED_STATUSES:
        return "報告はすでに届いています"
    return None


def _obligation(inst: Institution) -> Obligation:
    return obligation(Facility(inst.kind, inst.special_function, inst.dental,
                               inst.closed_on_jan1))


def _as_of(pref: Prefecture) -> str:
    """The status is the prefecture's last import, not G-MIS live: say from when."""
    if pref.status_as_of is None:
        return ""
    at = pref.status_as_of.astimezone(JST)
    return f"（{at.month}月{at.day}日 {at.hour}時時点の都道府県の記録）"


def _status_label(inst: Institution) -> str:
    if inst.status == "確認済" and inst.confirmation:
        return f"確認済（{inst.confirmation}）"
    if inst.status == "報告済":
        return "報告済（都道府県の確認待ち）"
    if inst.status == "紙受付":
        return "紙報告受付（代理入力待ち）"
    return inst.status


def period_lines(pref: Prefecture, today: date) -> list[str]:
    """The prefecture's own period, under a general answer about when to report; nothing
    once it has passed (next year's is not set yet, and "62 days late" would mislead)."""
    if pref.period_end is None or today > pref.period_end:
        return []
    lines = []
    if (start := pref.period_start) is not None and today < start:
        lines.append(f"受付開始：{start.year}年{start.month}月{start.day}日（{pref.name}）")
    return [*lines, deadline_line(pref, today)]


def deadline_line(pref: Prefecture, today: date) -> str:
    if pref.period_end is None:
        return f"報告期限：{pref.name}からの案内をご確認ください。"
    end = pref.period_end
    label = f"報告期限：{end.year}年{end.month}月{end.day}日（{pref.name}）"
    days = (end - today).days
    if days > 0:
        return f"{label}　あと{days}日です。"
    if days == 0:
        return f"{label}　本日が期限です。"
    return f"{label}　期限を{-days}日過ぎています。お早めにご対応ください。"
