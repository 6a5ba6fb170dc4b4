"""Operator commands for prefectures: imports, link codes, revocation (CLI front-end)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from tqdm import tqdm

from bot.settings import Settings, link_code_key
from db.csvfile import FileProblem
from db.engine import make_engine, make_sessionmaker
from db.imports import ImportResult, import_report, import_roster, import_status
from db.models import Institution, Prefecture
from db.seed import ensure_prefecture
from handlers.linking import (
    end_of_day,
    expire_unused_codes,
    issue_code,
    live_codes,
    revoke_links,
    valid_through,
)
from handlers.rules import Facility, obligation
from scheduler.calendar import JST


def exists_unforced(out: Path, force: bool) -> bool:
    """Refuse to overwrite an output file unless --force: a CSV already handed on (codes
    printed in letters, a contact list) must not change under someone's feet."""
    if out.exists() and not force:
        print(f"{out} は既にあります。上書きする場合は --force を付けてください。",
              file=sys.stderr)
        return True
    return False


def missing_file(path: Path) -> str:
    """Why `path` cannot be read as a file: a folder given by mistake is not 「見つかりません」."""
    if path.is_dir():
        return f"フォルダーが指定されています。取り込むファイルを指定してください: {path}"
    return f"ファイルが見つかりません: {path}"


async def registered(session: AsyncSession, prefecture: str) -> Prefecture | None:
    """The prefecture, or None after saying it has no roster yet: a calendar, template,
    channel or digest for it would be set up for clinics that are not there (and a channel
    mapping used to create the prefecture silently, with default dates)."""
    if (pref := await session.get(Prefecture, prefecture)) is None:
        print(f"都道府県 {prefecture} が登録されていません（名簿を先に取り込んでください）。")
    return pref


async def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[int]]) -> int:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return await work(session)
    finally:
        await engine.dispose()


async def run_import(settings: Settings, kind: str, path: Path, prefecture: str) -> int:
    """Import one file; print the encoding used, the counts, or every bad row."""
    now = datetime.now(UTC)

    async def work(session: AsyncSession) -> int:
        new = await session.get(Prefecture, prefecture) is None
        pref = await ensure_prefecture(session, prefecture, now.date(), settings.gmis_contact,
                                       commit=False)
        with tqdm(desc="書き込み", unit="件", file=sys.stderr, leave=False,
                  disable=None) as bar:

            def progress(written: int, total: int) -> None:
                if bar.total != total:
                    bar.reset(total=total)
                bar.update(written)

            if kind == "roster":
                result = await import_roster(session, path, prefecture, progress)
            elif kind == "status":
                result = await import_status(session, path, prefecture, now, progress)
            else:
                result = await import_report(session, path, prefecture, progress)
        code = report(result, prefecture)
        if new and code == 0:  # its dates are the statutory defaults until calendar set
            print(f"{pref.name}（{prefecture}）を新しく登録しました。報告期間は仮に"
                  f"{pref.period_start:%Y-%m-%d}〜{pref.period_end:%Y-%m-%d}、問い合わせ先は"
                  f"「{pref.inquiry_contact}」です。calendar set で実際の期限と連絡先を設定して"
                  "ください。")
        return code

    # CLI front-end: a blocking is_file() check before the work is harmless here.
    if not path.is_file():  # noqa: ASYNC240
        print(missing_file(path), file=sys.stderr)
        return 2
    try:
        return await with_session(settings, work)
    except FileProblem as exc:
        print(f"取り込めませんでした: {exc}", file=sys.stderr)
        return 1


def report(result: ImportResult, prefecture: str) -> int:
    print(f"{result.file}: 文字コード {result.encoding}、{result.rows}行")
    if result.errors:
        print(f"エラーが{len(result.errors)}件あるため、何も取り込みませんでした。",
              file=sys.stderr)
        for error in result.errors:  # every one: the operator fixes them all in one pass
            print(f"  {result.file}:{error}", file=sys.stderr)
        return 1
    print(f"取り込み完了：新規 {result.created}件、更新 {result.updated}件、"
          f"変更なし {result.unchanged}件")
    if result.short_codes:  # no prefecture number to check them against: say so
        print(f"7桁の医療機関コード {result.short_codes}件は都道府県番号を含まないため、"
              f"都道府県 {prefecture} の医療機関として取り込みました（10桁のコードなら"
              "先頭2桁で都道府県を確かめます）。")
    return 0


async def run_issue_codes(settings: Settings, prefecture: str, institution: str | None,
                          out: Path, force: bool, reissue: bool = False) -> int:
    """Issue codes to a CSV. Where unused codes are still live (letters that may be in the
    post), nothing is done without --reissue: the operator hears how many would stop
    working before, not after."""
    # CLI front-end: a blocking exists() check before the work is harmless here.
    if out.is_dir():  # noqa: ASYNC240
        print(f"{out} はフォルダです。--out には書き出すファイル名を指定してください。",
              file=sys.stderr)
        return 2
    if exists_unforced(out, force):
        return 2
    if link_code_key(settings) is None:
        print("注意: LINK_CODE_KEY が設定されていないため、連携コードは鍵なしのハッシュで"
              "保存されます。本番環境では設定してください。", file=sys.stderr)
    now = datetime.now(UTC)

    async def work(session: AsyncSession) -> int:
        targets = await _code_targets(session, prefecture, institution)
        if not targets:
            print("対象の医療機関がありません（都道府県コード・医療機関コードをご確認ください）。",
                  file=sys.stderr)
            return 1
        ids = [i.id for i in targets if i.id]
        if not reissue and (live := await live_codes(session, ids, now)):
            print(_reissue_refused(live, len(targets)), file=sys.stderr)
            return 2
        last_day, covered = await valid_through(session, prefecture, now,
                                                settings.link_code_days)
        ended = await expire_unused_codes(session, ids, now)
        rows = []
        for inst in sorted(targets, key=lambda i: i.code):
            code, _ = await issue_code(session, inst, now, settings.link_code_days,
                                       link_code_key(settings), expires=end_of_day(last_day))
            rows.append([inst.code, inst.name, code, last_day.isoformat()])
        try:
            _write_codes(out, rows)  # before the commit: unwritten codes are never valid
        except OSError as exc:
            await session.rollback()
            print(f"{out} に書き出せませんでした（{exc.strerror}）。連携コードは発行して"
                  "いません。", file=sys.stderr)
            return 2
        await session.commit()
        print(f"{len(rows)}件の連携コードを {out} に書き出しました（有効期限 {last_day} まで"
              + (f"：最後の督促（{covered.at.astimezone(JST):%Y-%m-%d}）の後も使えるように"
                 "しています" if covered else "") + "）。")
        if ended:
            print(f"以前に発行した未使用の連携コード {ended}件は無効になりました"
                  "（新しいコードをお送りください）。")
        return 0

    return await with_session(settings, work)


async def _code_targets(session: AsyncSession, prefecture: str, institution: str | None,
                        ) -> list[Institution]:
    """The named institution, or every one that must report."""
    stmt = select(Institution).where(Institution.prefecture_code == prefecture)
    if institution:
        stmt = stmt.where(Institution.code == institution)
    return [i for i in (await session.exec(stmt)).all()
            if institution or obligation(Facility(i.kind, i.special_function, i.dental,
                                                  i.closed_on_jan1)).required]


def _reissue_refused(live: int, institutions: int) -> str:
    return (f"対象の医療機関 {institutions}件に、まだ使われていない有効な連携コードが {live}件"
            "あります（案内文書で送付済みかもしれません）。発行し直すと、それらのコードは使えなく"
            "なり、新しいコードを送り直す必要があります。発行し直す場合は --reissue を付けて、"
            "もう一度実行してください。何も変更していません。")


def _write_codes(out: Path, rows: list[list[str]]) -> None:
    """UTF-8 with BOM so Excel opens it correctly; written before the codes are committed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["医療機関コード", "名称", "連携コード", "有効期限"])
        writer.writerows(rows)


async def run_revoke(settings: Settings, prefecture: str, institution: str) -> int:
    async def work(session: AsyncSession) -> int:
        revoked = await revoke_links(session, prefecture, institution, datetime.now(UTC))
        if revoked is None:
            print(f"都道府県 {prefecture} の名簿に医療機関コード {institution} はありません。",
                  file=sys.stderr)
            return 1
        accounts, codes = revoked
        print(f"{accounts}件のチャット連携を解除し、未使用の連携コード {codes}件を無効に"
              "しました。")
        return 0

    return await with_session(settings, work)
