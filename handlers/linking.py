"""One-time link codes: a clinic proves who it is once, then sees its own data.

Codes are 10 characters from an alphabet without 0/O/1/I/L (31 symbols, ~49 bits), shown
as XXXXX-XXXXX, stored only as a SHA-256 hash, single use and expiring. A wrong, expired or
foreign code all get the same answer, and 5 failures in an hour lock the account out for the
hour. A used code is said to be used, and is no failure: it can never link again, so saying
so gives a guesser nothing, while a clerk re-sending the letter's correct code (or the one a
colleague used) had been told to check it and pushed toward the lockout. It never names the
institution it was for, except to the chat it links now.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import replace
from datetime import date, datetime, time, timedelta

from sqlalchemy import ColumnElement, and_, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import ChatAccount, Institution, LinkAttempt, LinkCode, Prefecture
from handlers import courtesy, history
from handlers.context import Account, Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found, Matcher, command
from handlers.texts import WELCOME
from scheduler.cadence import Run, cycle_runs, settings_for
from scheduler.calendar import JST, sending_hours

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10
MAX_FAILURES = 5
LOCKOUT = timedelta(hours=1)

HOW_TO_LINK = (
    "医療機関との連携がまだお済みでないようです。都道府県からの案内文書に記載の"
    "「連携コード」を、次のように送ってください。\n例：連携 ABCDE-FGHJK"
)
BAD_CODE = (
    "連携コードを確認できませんでした。コードが正しいか、有効期限が切れていないかをご確認のうえ、"
    "もう一度お送りください。ご不明な場合は都道府県の担当窓口にお問い合わせください。"
)
USED_CODE = (
    "この連携コードは、すでに使用済みです。連携コードは1回しか使えないため、同じ医療機関の別の方が"
    "連携する場合や、連携を解除した後にもう一度連携する場合は、新しいコードが必要です。"
    "お手数ですが、都道府県の担当窓口に新しい連携コードの発行をご依頼ください。"
)
LAST_TRY = "\nあと1回失敗すると、安全のため1時間ほど連携を受け付けられなくなります。"
LOCKED = (
    "連携コードの確認に続けて失敗したため、安全のため1時間ほど連携を受け付けられません。"
    "時間をおいてお試しいただくか、都道府県の担当窓口にお問い合わせください。"
)


_DASHES = "-‐－ー–—−"  # as codes are pasted from letters, PDFs and mail
_KEYWORD = r"(?:連携コード|連携|れんけい)"


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_code(text: str) -> str | None:
    """Accept full-width, lower case, spaces and hyphens; None if it cannot be a code."""
    raw = unicodedata.normalize("NFKC", text).upper()
    raw = "".join(c for c in raw if c not in " _　" + _DASHES)
    if len(raw) != CODE_LENGTH or any(c not in ALPHABET for c in raw):
        return None
    return raw


def hash_code(code: str, key: bytes | None = None) -> str:
    """What is stored for a code. With the deployment's secret key it is an HMAC, so a leaked
    table cannot be brute-forced offline (49 bits are within reach of a GPU); without one
    (the demo) a plain SHA-256."""
    normalised = normalise_code(code)
    if normalised is None:
        raise ValueError("not a link code")
    if key:
        return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(normalised.encode()).hexdigest()


def _stored_forms(code: str, key: bytes | None) -> list[str]:
    """Hashes a valid code may be stored under: codes printed before the key was configured
    keep working until they expire."""
    return [hash_code(code, key), hash_code(code)] if key else [hash_code(code)]


async def issue_code(session: AsyncSession, institution: Institution, now: datetime,
                     days: int, key: bytes | None = None, *, expires: datetime | None = None,
                     ) -> tuple[str, datetime]:
    """Create a code for one institution (caller commits); returns the plain code once.
    It expires `days` from now, or at `expires` (see valid_through) when given."""
    assert institution.id is not None
    code, expires = new_code(), expires or now + timedelta(days=days)
    session.add(LinkCode(prefecture_code=institution.prefecture_code,
                         institution_id=institution.id, code_hash=hash_code(code, key),
                         expires_at=expires, created_at=now))
    return code, expires


async def handle_link(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    assert ctx.account is not None
    now = ctx.clock()
    async with ctx.session() as session:
        if await _locked(session, ctx.account.id, now):
            return [Reply(LOCKED, meta={"action": "link_locked"})]
        code = normalise_code(found.get("arg", ""))
        current = (await session.get(Institution, ctx.account.institution_id)
                   if ctx.account.institution_id is not None else None)
        linked_to = current.name if current is not None else None  # read before any commit
        if code is None and _WORDS.search(unicodedata.normalize("NFKC", found.get("arg", ""))):
            # 「連携コード　まだ届いていません」 is a question, not a wrong code: it must not
            # count toward the lockout that protects the real code.
            return [Reply(ABOUT_CODE, meta={"action": "link_help"})]
        if not found.get("arg", "").strip():
            if current is not None:
                return [Reply(f"このチャットは {current.name} 様と連携済みです。別の医療機関と"
                              "連携し直す場合は、その医療機関の連携コードを「連携 コード」の形で"
                              "送ってください。", meta={"action": "link_help"})]
            return [Reply(HOW_TO_LINK, meta={"action": "link_help"})]
        institution = (await _redeem(session, code, ctx.account.id, now,
                                     ctx.config.link_code_key) if code else None)
        if institution is None and code is not None:
            used = await _used(session, code, ctx.config.link_code_key)
            if used is not None:  # the right code, spent: no try toward the lockout
                return [_spent(used, ctx.account, linked_to)]
        if institution is None:
            session.add(LinkAttempt(chat_account_id=ctx.account.id, attempted_at=now))
            await session.commit()
            failed = await _recent_failures(session, ctx.account.id, now)
            if _lockout(failed, now):  # this one made it
                return [Reply(LOCKED, meta={"action": "link_locked"})]
            last_try = _lockout([now, *failed][:MAX_FAILURES], now)  # one more would lock
            still = (f"\n（このチャットは、引き続き {linked_to} 様と連携しています。）"
                     if linked_to is not None else "")
            return [Reply(BAD_CODE + still + (LAST_TRY if last_try else ""),
                          meta={"action": "link_failed"})]
        await _link_account(session, ctx.account.id, institution, now)
    # Moving a chat to another institution is allowed (a clerk may change jobs), never silent.
    moved = (f"{linked_to} 様との連携は解除されました。\n"
             if linked_to is not None and ctx.account.institution_id != institution.id else "")
    return [Reply(f"{institution.name} 様との連携が完了しました。\n{moved}「報告状況」と送ると、"
                  "報告の状況と期限をお知らせします。", meta={"action": history.LINKED})]


# 「連携コードってどこに書いてありますか」「コードなくしました」: about the code, not a code.
_ABOUT_CODE = re.compile(r"^(?:連携|れんけい)(?:って|とは|は)?(?:何|なに)"
                         r"|(?:連携|れんけい)(?:コード|こーど)"
                         r"|^(?:手紙|てがみ|案内|あんない|通知)(?:に|の)(?:ある|書いてある|かいてある)?"
                         r"(?:コード|こーど)")
_COMMAND_WORD = re.compile(f"^{_KEYWORD}")
_WORDS = re.compile(r"[\u3041-\u30ff\u4e00-\u9fff]")  # Japanese: words, not a mistyped code
ABOUT_CODE = ("連携コードは、都道府県から届く案内（文書やメール）に記載されています。"
              "「連携 ABCDE-FGHJK」のように、コードの前に「連携」と付けて送ってください。"
              "お手元にない、なくした、期限切れなどで使えない場合は、都道府県の担当窓口に"
              "再発行をご依頼ください（新しいコードが発行されると、古いコードは使えなくなります）。")


def asks_about_code(msg: Inbound, _ctx: Context) -> Found | None:
    """Match a short typed question about the link code itself."""
    text = unicodedata.normalize("NFKC", msg.text).strip()
    if msg.payload is not None or len(text) > 40 or not _ABOUT_CODE.search(text):
        return None
    rest = _COMMAND_WORD.sub("", text)  # 「連携コード ABCDE-FGHJK」 is a code, for handle_link
    return {} if _WORDS.search(rest) else None


# A code as the letter prints it, XXXXX-XXXXX, somewhere in a short message: 「TRYME-23456」
# pasted alone, 「コード：TRYME-23456です」, 「連携コードはTRYME-23456です」. Without 連携 in
# front only this printed shape counts, so an ordinary ten letters (「update data」) are
# never a failed try toward the lockout; after 連携 the hyphen may be left out.
_PRINTED = re.compile(rf"(?<![A-Z0-9])[A-Z0-9]{{5}}[{_DASHES}][A-Z0-9]{{5}}(?![A-Z0-9])")
_AROUND_CODE = re.compile(rf"{_KEYWORD}|コード|こーど|お願いします|おねがいします"
                          r"|手紙|てがみ|案内|あんない|通知|(?:に)?(?:書いて|かいて)(?:ある|あった)"
                          r"|記載の|番号|ばんごう|これ|です|は|の|:|：|[\s「」『』。、.!！]")
# The printed shape anywhere, as typed: a code that reached a question for staff (it did not
# link) is not shown to them; it is a one-time secret.
_ALNUM = "A-Za-z0-9Ａ-Ｚａ-ｚ０-９"  # full-width too, as a Japanese keyboard types it
_ANY_CODE = re.compile(rf"(?<![{_ALNUM}])[{_ALNUM}]{{5}}[{_DASHES}\s　]?[{_ALNUM}]{{5}}"
                       rf"(?![{_ALNUM}])")
_JOINED = re.compile(rf"^{_KEYWORD}(?:は|:|：)?\s*([A-Z0-9]{{10}})(?![A-Z0-9])")


def typed_code(msg: Inbound, _ctx: Context) -> Found | None:
    """A code pasted without 「連携 」 in front, or run together with it (「連携TRYME23456」)."""
    text = unicodedata.normalize("NFKC", msg.text).strip().upper()
    if msg.payload is not None or len(text) > 40:
        return None
    found = _PRINTED.search(text) or _JOINED.search(text)
    code = found.group(found.lastindex or 0) if found else ""
    # Little more than the code: 「連携コードABCDE-FGHJKが使えません。期限切れ？」 is a
    # question about it (for staff, or the help), and no try toward the lockout.
    rest = _AROUND_CODE.sub("", text.replace(found.group(0), "")) if found else text
    return {"arg": code} if normalise_code(code) and len(rest) <= 2 else None


def mask_codes(text: str) -> str:
    """Every link code in `text` (any width, with or without its hyphen) as XXXXX-XXXXX:
    a code that did not link must not reach staff or the ministry. Ten letters and digits
    of the code alphabet count only with a letter among them (not a phone number)."""
    def mask(m: re.Match[str]) -> str:
        raw = normalise_code(m.group(0))
        return "XXXXX-XXXXX" if raw and any(c.isalpha() for c in raw) else m.group(0)
    return _ANY_CODE.sub(mask, text)


def _spent(used: LinkCode, account: Account, linked_to: str | None) -> Reply:
    """The answer to a used code: 連携済み when it is the one this chat linked with to the
    institution it is linked to now, else only that it is used (whose it was stays unsaid)."""
    if linked_to is not None and used.used_by == account.id and (
            used.institution_id == account.institution_id):
        return Reply(f"この連携コードで、すでに {linked_to} 様と連携済みです。連携コードを"
                     "もう一度お送りいただく必要はありません。「報告状況」と送ると、報告の状況と"
                     "期限をお知らせします。", meta={"action": "link_already"})
    still = (f"\n（このチャットは、引き続き {linked_to} 様と連携しています。）"
             if linked_to is not None else "")
    return Reply(USED_CODE + still, meta={"action": "link_used"})


async def handle_about_code(_msg: Inbound, _ctx: Context, _found: Found) -> list[Reply]:
    return [Reply(ABOUT_CODE, meta={"action": "link_help"})]


def start_with_code() -> Matcher:
    """`/start CODE`: what Telegram sends when a deep link t.me/<bot>?start=CODE (printed
    as a QR code on the prefecture's letter) is opened; a plain /start is not matched."""
    start = command("start")

    def match(msg: Inbound, ctx: Context) -> Found | None:
        found = start(msg, ctx)
        return found if found and normalise_code(found.get("arg", "")) else None

    return match


# 「連携解除したい」「連携を解除して」: the chat's own link, ended by the clerk after a
# confirmation; 「転職したので連携先を変えたい」「連携し直したい」: how to move it.
_UNLINK = re.compile(r"(?:連携|れんけい)(?:を|の)?(?:解除|かいじょ|取り消し|取消|とりけし|やめ)")
_RELINK = re.compile(r"(?:連携|れんけい)(?:先|さき)?(?:を|の)?"
                     r"(?:変え|かえ|変更|へんこう|し直|しなお|やり直|切り替え|切替)")
UNLINK_BUTTONS = (Button("連携を解除する", "link:unlink"), Button("やめる", "link:keep"))
CONFIRM_UNLINK = "link_confirm"  # the logged action of 「…連携を解除しますか」
# A typed answer to that question, in words of its own: 「はい」「お願いします」「解除して」
# 「OK」 mean the 連携を解除する button, 「いいえ」「やめる」 the やめる button. `no` is tried
# first, so 「解除しないで」 is never read as 解除; `maybe` (「わかりました」「大丈夫です」) does
# not change a 「はい」 or 「いいえ」 beside it, and alone answers neither way.
_ANSWER = re.compile(
    r"(?P<no>いいえ|ううん|いえ|いや(?:です)?"
    r"|(?:やっぱり|やはり)?(?:やめ|止め)(?:て(?:おきます|ください|下さい)?|ておく|とく|ます|る)"
    r"|きゃんせる(?:します|で)?|中止(?:します|で)?"
    r"|(?:(?:連携|れんけい)(?:は|を)?)?(?:(?:解除|かいじょ)(?:は|を)?)?(?:しない|しません)"
    r"(?:で(?:ください|下さい)?|です)?"
    r"|(?:この|その)まま(?:で)?(?:いい(?:です)?|お願いします|おねがいします)?)"
    r"|(?P<yes>はーい|はい|ええ|うん|そうです"
    r"|(?:ぜひ|是非)?(?:お願い|おねがい)(?:します|いたします|致します)?"
    r"|ok(?:です)?|おっけー(?:です)?|了解(?:です|しました|いたしました)?"
    r"|りょうかい(?:です|しました)?|承知(?:しました|いたしました)|かしこまりました"
    r"|(?:(?:連携|れんけい)(?:を|の)?)?(?:解除|かいじょ)(?:を)?"
    r"(?:して|する|します|したい|しちゃって|で)?"
    r"(?:ください|下さい|ほしい(?:です)?|欲しい(?:です)?|お願いします|おねがいします|です)?"
    r"|する|します|して(?:ください|下さい)?)"
    r"|(?P<maybe>結構です|けっこうです|大丈夫(?:です)?|だいじょうぶ(?:です)?|わかりました"
    r"|分かりました|わかった|分かった|なるほど|不要(?:です)?|いらない|いりません)")
# Courtesy that reads as some answer, though not a clear one: after the question it gets the
# question again, never 「承知しました」 (which had sounded like the link was gone).
_ANSWER_LIKE = {"yes", "no", "please", "ack", "decline", "wrong"}


def asks_unlink(msg: Inbound, _ctx: Context) -> Found | None:
    """Match a short request to end or move the chat's link (not a code: that links)."""
    text = unicodedata.normalize("NFKC", msg.text).strip()
    if msg.payload is not None or len(text) > 40:
        return None
    if _UNLINK.search(text):
        return {"what": "unlink"}
    return {"what": "relink"} if _RELINK.search(text) else None


def answer_to_unlink(text: str) -> str | None:
    """'unlink', 'keep' or 'unsure' for a short typed answer to the unlink confirmation;
    None for anything else (a question, a code), which is routed as usual."""
    if len(text) > 40:
        return None
    kinds = set(courtesy.made_of(text, _ANSWER))
    if kinds:
        yes, no = "yes" in kinds, "no" in kinds
        return "unsure" if yes == no else ("unlink" if yes else "keep")
    said = set(courtesy.kinds_of(text))
    return "unsure" if said and said <= _ANSWER_LIKE else None


async def typed_answer(msg: Inbound, ctx: Context) -> Inbound:
    """A reply typed right after the unlink confirmation, as the button it means. 「はい」
    had reached small talk (「承知しました」) and left the chat linked, and 「やめる」 the
    cancel command. Later than history.REPLY_WINDOW, or after anything else, it stays as
    typed: an old question is no longer what a 「はい」 answers."""
    if msg.payload is not None or ctx.account is None or not ctx.account.linked:
        return msg
    answer = answer_to_unlink(msg.text)
    if answer is None:
        return msg
    last = await history.last_turn(msg, ctx)
    if last is None or last.action != CONFIRM_UNLINK:
        return msg
    return replace(msg, payload=f"link:{answer}")


async def handle_unlink(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """End this chat's link (the tapped or typed confirmation), or say how; only this chat's
    own link is touched, never another account's."""
    assert ctx.account is not None
    async with ctx.session() as session:
        current = (await session.get(Institution, ctx.account.institution_id)
                   if ctx.account.institution_id is not None else None)
        if current is None:
            return [Reply(HOW_TO_LINK, meta={"action": "link_help"})]
        if found.get("arg") == "keep":
            return [Reply(f"連携は解除していません。引き続き {current.name} 様と連携しています。",
                          meta={"action": "link_help"})]
        if found.get("arg") == "unsure":  # typed, but neither yes nor no: nothing is done
            return [Reply(f"連携はまだ解除していません。このチャットは、引き続き {current.name} "
                          "様と連携しています。解除する場合は「連携を解除する」を、このままにする"
                          "場合は「やめる」を選んでください。", UNLINK_BUTTONS,
                          meta={"action": CONFIRM_UNLINK})]
        if found.get("arg") == "unlink":
            await _unlink(session, col(ChatAccount.id) == ctx.account.id)
            await session.commit()
            return [Reply(f"{current.name} 様との連携を解除しました。このチャットでは報告状況が"
                          "表示されなくなります。お送りいただいたお問い合わせへの回答は、引き続き"
                          "このチャットに届きます。", meta={"action": history.LINKED})]
    if found.get("what") == "relink":
        return [Reply("別の医療機関と連携し直す場合は、新しい医療機関の連携コードを「連携 "
                      f"ABCDE-FGHJK」の形で送ってください。今の連携（{current.name} 様）は、"
                      "そのときに解除されます。連携を解除するだけの場合は、下のボタンを押して"
                      "ください。", UNLINK_BUTTONS[:1], meta={"action": "link_help"})]
    return [Reply(f"このチャットと {current.name} 様との連携を解除しますか。解除すると、"
                  "このチャットでは報告状況が表示されなくなります。", UNLINK_BUTTONS,
                  meta={"action": CONFIRM_UNLINK})]


async def handle_start_link(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """A deep link: link with its code, then say what the bot can do."""
    return [*await handle_link(msg, ctx, found), Reply(WELCOME, meta={"action": "help"})]


async def _locked(session: AsyncSession, account_id: int, now: datetime) -> bool:
    return _lockout(await _recent_failures(session, account_id, now), now)


async def _recent_failures(session: AsyncSession, account_id: int, now: datetime,
                           ) -> list[datetime]:
    """The latest failed tries (at most as many as lock), newest first."""
    stmt = (select(LinkAttempt.attempted_at)
            .where(LinkAttempt.chat_account_id == account_id,
                   LinkAttempt.attempted_at > now - 2 * LOCKOUT)
            .order_by(col(LinkAttempt.attempted_at).desc()).limit(MAX_FAILURES))
    return list((await session.exec(stmt)).all())


def _lockout(recent: list[datetime], now: datetime) -> bool:
    """Refused for an hour from the failure that made it 5 within an hour. Tries made while
    refused are not recorded, so that failure is the latest one."""
    return (len(recent) == MAX_FAILURES and recent[0] > now - LOCKOUT
            and recent[0] - recent[-1] < LOCKOUT)


async def _unlink(session: AsyncSession, which: ColumnElement[bool]) -> int:
    """Clear the link of the chat accounts `which` selects (caller commits). The
    prefecture goes with it: a clerk who moved to a clinic elsewhere is asked again rather
    than having questions sent to the former one's desk."""
    result = await session.exec(  # type: ignore[call-overload]
        update(ChatAccount).where(which).values(institution_id=None, linked_at=None,
                                                prefecture_code=None))
    return int(result.rowcount or 0)


async def _redeem(session: AsyncSession, code: str, account_id: int, now: datetime,
                  key: bytes | None) -> Institution | None:
    """Mark the code used in one conditional UPDATE, so a code can be used only once."""
    stmt = (update(LinkCode)
            .where(col(LinkCode.code_hash).in_(_stored_forms(code, key)),
                   col(LinkCode.used_at).is_(None),
                   col(LinkCode.expires_at) > now)
            .values(used_at=now, used_by=account_id)
            .returning(col(LinkCode.institution_id), col(LinkCode.prefecture_code)))
    row = (await session.exec(stmt)).first()  # type: ignore[call-overload]
    if row is None:
        await session.rollback()
        return None
    institution_id, prefecture_code = row
    found = await session.exec(select(Institution).where(
        Institution.id == institution_id, Institution.prefecture_code == prefecture_code))
    return found.first()


async def _used(session: AsyncSession, code: str, key: bytes | None) -> LinkCode | None:
    """The stored code if it has been used, by anyone and however long ago."""
    stmt = select(LinkCode).where(col(LinkCode.code_hash).in_(_stored_forms(code, key)),
                                  col(LinkCode.used_at).is_not(None))
    return (await session.exec(stmt)).first()


async def _link_account(session: AsyncSession, account_id: int, institution: Institution,
                        now: datetime) -> None:
    account = await session.get(ChatAccount, account_id)
    assert account is not None
    account.institution_id, account.prefecture_code = institution.id, institution.prefecture_code
    account.linked_at = now
    session.add(account)
    await session.commit()


def _live(institution_ids: list[int], now: datetime) -> ColumnElement[bool]:
    """Codes of these institutions that still link a chat: unused and not expired."""
    return and_(col(LinkCode.institution_id).in_(institution_ids),
                col(LinkCode.used_at).is_(None), col(LinkCode.expires_at) > now)


async def live_codes(session: AsyncSession, institution_ids: list[int], now: datetime) -> int:
    """How many codes issuing new ones would end: letters that may be in the post."""
    if not institution_ids:
        return 0
    stmt = select(func.count()).select_from(LinkCode).where(_live(institution_ids, now))
    return int((await session.exec(stmt)).one())


async def expire_unused_codes(session: AsyncSession, institution_ids: list[int],
                              now: datetime) -> int:
    """End the unused codes of these institutions (caller commits): the newest letter is the
    valid one, and a lost or leaked one stops working as soon as a new code is issued."""
    if not institution_ids:
        return 0
    result = await session.exec(  # type: ignore[call-overload]
        update(LinkCode).where(_live(institution_ids, now)).values(expires_at=now))
    return int(result.rowcount or 0)


# A clinic chased by the prefecture's last 督促 may take a while to link with its letter.
AFTER_LAST_REMINDER = timedelta(days=14)


async def valid_through(session: AsyncSession, prefecture_code: str, now: datetime,
                        days: int) -> tuple[date, Run | None]:
    """The last day (JST) a code issued now works, and the run it was stretched to cover:
    `days` from now, but never before AFTER_LAST_REMINDER past the prefecture's last 督促
    of the cycle. 120 days from December had ended the codes in April while 督促 went on
    into May, to clinics holding the letter's code."""
    least = (now + timedelta(days=days)).astimezone(JST).date()
    pref = await session.get(Prefecture, prefecture_code)
    if pref is None or pref.period_end is None:
        return least, None
    runs = cycle_runs(await settings_for(session, prefecture_code), pref.period_end,
                      *sending_hours(pref))
    if not runs or (covers := runs[-1].at.astimezone(JST).date() + AFTER_LAST_REMINDER) <= least:
        return least, None
    return covers, runs[-1]


def end_of_day(day: date) -> datetime:
    """The moment a code valid through `day` (JST) expires: midnight after it."""
    return datetime.combine(day + timedelta(days=1), time(0), JST)


async def revoke_links(session: AsyncSession, prefecture_code: str, institution_code: str,
                       now: datetime) -> tuple[int, int] | None:
    """Unlink every chat account of one institution of this prefecture and end its unused
    codes; returns (accounts, codes), or None if the prefecture has no such institution."""
    inst = (await session.exec(select(Institution).where(
        Institution.prefecture_code == prefecture_code,
        Institution.code == institution_code))).first()
    if inst is None or inst.id is None:
        return None
    accounts = await _unlink(session, (col(ChatAccount.institution_id) == inst.id)
                             & (col(ChatAccount.prefecture_code) == prefecture_code))
    codes = await expire_unused_codes(session, [inst.id], now)
    await session.commit()
    return accounts, codes
