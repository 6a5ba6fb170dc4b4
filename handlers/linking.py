"""One-time link codes: a clinic proves who it is once, then sees its own data.

Codes are 10 characters from an alphabet without 0/O/1/I/L (31 symbols, ~49 bits), shown
as XXXXX-XXXXX, stored only as a SHA-256 hash, single use and expiring. A wrong, used,
expired or foreign code all get the same answer, and 5 failures in an hour lock the account
out for the hour.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import ChatAccount, Institution, LinkAttempt, LinkCode
from handlers import history
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found, Matcher, command
from handlers.texts import WELCOME

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
                     days: int, key: bytes | None = None) -> tuple[str, datetime]:
    """Create a code for one institution (caller commits); returns the plain code once."""
    assert institution.id is not None
    code, expires = new_code(), now + timedelta(days=days)
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


def asks_unlink(msg: Inbound, _ctx: Context) -> Found | None:
    """Match a short request to end or move the chat's link (not a code: that links)."""
    text = unicodedata.normalize("NFKC", msg.text).strip()
    if msg.payload is not None or len(text) > 40:
        return None
    if _UNLINK.search(text):
        return {"what": "unlink"}
    return {"what": "relink"} if _RELINK.search(text) else None


async def handle_unlink(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """End this chat's link (the tapped confirmation), or say how; only this chat's own
    link is touched, never another account's."""
    assert ctx.account is not None
    async with ctx.session() as session:
        current = (await session.get(Institution, ctx.account.institution_id)
                   if ctx.account.institution_id is not None else None)
        if current is None:
            return [Reply(HOW_TO_LINK, meta={"action": "link_help"})]
        if found.get("arg") == "keep":
            return [Reply(f"連携は解除していません。引き続き {current.name} 様と連携しています。",
                          meta={"action": "link_help"})]
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
                  meta={"action": "link_help"})]


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
    """Clear the link of the chat accounts `which` selects (caller commits)."""
    result = await session.exec(  # type: ignore[call-overload]
        update(ChatAccount).where(which).values(institution_id=None, linked_at=None))
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


async def _link_account(session: AsyncSession, account_id: int, institution: Institution,
                        now: datetime) -> None:
    account = await session.get(ChatAccount, account_id)
    assert account is not None
    account.institution_id, account.prefecture_code = institution.id, institution.prefecture_code
    account.linked_at = now
    session.add(account)
    await session.commit()


async def expire_unused_codes(session: AsyncSession, institution_ids: list[int],
                              now: datetime) -> int:
    """End the unused codes of these institutions (caller commits): the newest letter is the
    valid one, and a lost or leaked one stops working as soon as a new code is issued."""
    if not institution_ids:
        return 0
    result = await session.exec(  # type: ignore[call-overload]
        update(LinkCode)
        .where(col(LinkCode.institution_id).in_(institution_ids),
               col(LinkCode.used_at).is_(None), col(LinkCode.expires_at) > now)
        .values(expires_at=now))
    return int(result.rowcount or 0)


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
