"""CLI: every operator action is a subcommand; settings are loaded once and passed down."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from bot.settings import RedactingFormatter, Settings, prefecture_code, secret_values
from knowledge.loader import KnowledgeBaseError
from scheduler.templates import KINDS

logger = logging.getLogger("bot")
Command = Callable[[argparse.Namespace, Settings], int]
# Slack conversation IDs: C… (channel) or G… (older private channel), uppercase letters and
# digits. Slack calls them opaque, so the length is bounded loosely; a name ("kyoto-desk",
# "#総務") or a user ID (U…) is what this catches.
SLACK_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{6,20}")


def prefecture_arg(text: str) -> str:
    """argparse type for every --prefecture: argparse shows only an ArgumentTypeError's
    message (for a ValueError it prints "invalid prefecture_code value")."""
    try:
        return prefecture_code(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def slack_channel_problem(channel: str) -> str:
    """Why `channel` is not a Slack channel ID ("" when it is): checked before the database
    is touched, so a name never becomes a mapping or re-addresses waiting cards."""
    if SLACK_CHANNEL_ID.fullmatch(channel):
        return ""
    return (f"SlackのチャンネルIDではありません: {channel!r}。チャンネルIDは C または G で始まる"
            "英大文字と数字です（例：C0123456789）。Slackでチャンネル名をクリックして開く詳細"
            "画面のいちばん下に表示されます。")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kakaritsuke-bot",
                                description="かかりつけ医機能報告 support bot")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="chat in the terminal on the embedded defaults")
    sub.add_parser("run", help="start every configured chat channel")
    ask = sub.add_parser("ask", help="ask one question and print the reply")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    kb = sub.add_parser("kb", help="knowledge-base tools")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    kb_sub.add_parser("check", help="validate every entry")
    kb_eval = kb_sub.add_parser("eval", help="accuracy on the labelled questions")
    kb_eval.add_argument("--split", default="heldout", choices=["tune", "heldout", "all"])
    kb_eval.add_argument("--misses", action="store_true",
                         help="list every miss (use with --split tune when tuning)")
    kb_eval.add_argument("--phrasings", action="store_true",
                         help="instead: each entry phrasing held out in turn (needs no labels)")
    kb_eval.add_argument("--questions", type=Path, metavar="DIR",
                         help="ask the labelled questions of DIR instead (a new blind set; "
                              "the learned scores still train on LABELLED_DIR only)")
    kb_eval.add_argument("--no-learned", action="store_true",
                         help="score without the learned scores (what they add)")
    _desk_parsers(sub, kb_sub)
    _campaign_parsers(sub)
    for name, what in (("import-roster", "institutions (roster) CSV"),
                       ("import-status", "report status CSV exported from G-MIS"),
                       ("import-report", "report answers CSV (1号 ★ items, 2号 イ〜ニ)")):
        imp = sub.add_parser(name, help=f"import a {what}; all or nothing")
        imp.add_argument("file", type=Path)
        imp.add_argument("--prefecture", required=True, type=prefecture_arg)
    codes = sub.add_parser("issue-codes", help="issue one-time link codes to a CSV file")
    codes.add_argument("--prefecture", required=True, type=prefecture_arg)
    codes.add_argument("--institution",
                       help="医療機関コード (default: every reporting institution)")
    codes.add_argument("--out", required=True, type=Path)
    codes.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    codes.add_argument("--reissue", action="store_true",
                       help="issue new codes even where unused ones are live: those stop "
                            "working (the command says how many first)")
    revoke = sub.add_parser("revoke-link", help="unlink every chat account of an institution")
    revoke.add_argument("--prefecture", required=True, type=prefecture_arg)
    revoke.add_argument("--institution", required=True)
    db = sub.add_parser("db", help="database tools")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to the latest")
    return p


def _desk_parsers(sub: argparse._SubParsersAction, kb_sub: argparse._SubParsersAction,
                  ) -> None:
    """Staff desk: Slack channel per prefecture, digest now, KB draft review."""
    drafts = kb_sub.add_parser("drafts", help="review answers staff proposed for the KB")
    d_sub = drafts.add_subparsers(dest="drafts_command", required=True)
    d_sub.add_parser("list", help="every draft with its status")
    for name in ("show", "reject"):
        d_sub.add_parser(name, help=f"{name} one draft").add_argument("id", type=int)
    approve = d_sub.add_parser("approve", help="append a draft to knowledge/entries/C.yaml")
    approve.add_argument("id", type=int)
    approve.add_argument("--category", required=True)
    approve.add_argument("--phrasing", action="append", default=[],
                         help="another way people ask it (repeatable; 2 or more in all)")
    approve.add_argument("--entry-id", help="default: <category>-desk-<draft id>")
    approve.add_argument("--url", help="public source URL instead of the staff answer")
    approve.add_argument("--force", action="store_true",
                         help="approve even with a phone number, mail address, prefecture "
                              "site or name in the answer (national content only)")
    edit = d_sub.add_parser("edit", help="replace a draft's answer with a file's text")
    edit.add_argument("id", type=int)
    edit.add_argument("--file", required=True, type=Path, help="the new answer (UTF-8 or CP932)")
    slack = sub.add_parser("slack-channel", help="map a prefecture to its Slack staff channel")
    slack.add_argument("--prefecture", required=True, type=prefecture_arg)
    slack.add_argument("--channel", required=True, type=str.strip,
                       help="Slack channel ID, e.g. C0123456789")
    desk = sub.add_parser("desk", help="staff desk tools")
    desk_sub = desk.add_subparsers(dest="desk_command", required=True)
    digest = desk_sub.add_parser("digest", help="queue the daily digest for Slack now")
    digest.add_argument("--prefecture", required=True, type=prefecture_arg)


def _campaign_parsers(sub: argparse._SubParsersAction) -> None:
    """Campaigns (案内・督促), each prefecture's calendar, and message templates."""
    camp = sub.add_parser("campaign", help="案内・督促 campaigns: plan, preview, send, ...")
    c_sub = camp.add_subparsers(dest="campaign_command", required=True)
    plan = c_sub.add_parser("plan", help="compute recipients now (nothing is sent)")
    plan.add_argument("--prefecture", required=True, type=prefecture_arg)
    plan.add_argument("--kind", required=True, choices=KINDS)
    plan.add_argument("--tag", help="run name (default: manual:<today>); same tag, same campaign")
    for name, what in (("preview", "show a sample and post the approval card to Slack"),
                       ("send", "approve: send from the next allowed slot"),
                       ("cancel", "stop: nothing more is sent"),
                       ("status", "counts by outcome (no id: recent campaigns)"),
                       ("unlinked", "CSV of target institutions with no chat account")):
        cmd = c_sub.add_parser(name, help=what)
        cmd.add_argument("id", type=int, nargs="?" if name == "status" else None)
        # A campaign id alone could name another prefecture's campaign (and its CSV of
        # contacts): the operator always says whose.
        cmd.add_argument("--prefecture", required=True, type=prefecture_arg)
        if name in ("send", "cancel"):
            cmd.add_argument("--by", default="cli", help="who approves or cancels")
        if name == "unlinked":
            cmd.add_argument("--out", required=True, type=Path)
            cmd.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    cal = sub.add_parser("calendar", help="a prefecture's campaign calendar")
    cal_sub = cal.add_subparsers(dest="calendar_command", required=True)
    for name in ("show", "set"):
        cmd = cal_sub.add_parser(name, help=f"{name} the calendar")
        cmd.add_argument("--prefecture", required=True, type=prefecture_arg)
        if name == "set":
            cmd.add_argument("--deadline", help="報告期限 YYYY-MM-DD")
            cmd.add_argument("--start", help="受付開始 YYYY-MM-DD (shown to linked clinics)")
            cmd.add_argument("--contact", help="問い合わせ先, e.g. '医療政策課 075-000-0000' "
                             "({contact} in messages)")
            cmd.add_argument("--hours", help="sending hours JST, e.g. 9-17")
            cmd.add_argument("--annai", help="案内 date MM-DD (default 11-10)")
            cmd.add_argument("--reminders", help="督促 days before the deadline, e.g. 30,14,7,3,1")
            cmd.add_argument("--after-every", type=int, help="days between 督促 after it")
            cmd.add_argument("--after-count", type=int, help="督促 after the deadline, how many")
            cmd.add_argument("--returned-days", type=int,
                             help="business days after a 差し戻し before the reminder")
            cmd.add_argument("--auto-send", choices=["on", "off"])
            cmd.add_argument("--enabled", choices=["on", "off"])
    tpl = sub.add_parser("template", help="campaign message templates")
    t_sub = tpl.add_subparsers(dest="template_command", required=True)
    for name in ("show", "set"):
        cmd = t_sub.add_parser(name, help=f"{name} a template (checked when saved)")
        cmd.add_argument("--prefecture", required=True, type=prefecture_arg)
        cmd.add_argument("--kind", required=True, choices=KINDS)
        if name == "set":
            cmd.add_argument("--file", required=True, type=Path)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # .env or the environment: name each setting and why
        print("設定（.env または環境変数）に誤りがあります:", file=sys.stderr)
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            print(f"  {name}: {error['msg']}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            secret_values(settings)))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    for noisy in ("alembic", "bm25s", "httpx", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    key = args.command + ("." + getattr(args, f"{args.command}_command", "")
                          if hasattr(args, f"{args.command}_command") else "")
    try:
        return COMMANDS[key](args, settings)
    except KnowledgeBaseError as exc:
        print("The knowledge base is invalid" + ("" if key.startswith("kb.") else
                                                 "; nothing was started") + ":", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except OperationalError as exc:  # unreachable server, wrong URL, locked file
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(f"データベースのエラーです（接続先の設定とサーバーの状態をご確認ください）: "
              f"{reason}", file=sys.stderr)
        return 2
    except (ArgumentError, NoSuchModuleError) as exc:  # DATABASE_URL is not a database URL
        print(f"データベースの URL を読み取れません（例: sqlite+aiosqlite:///var/bot.db、"
              f"postgresql://user@host/db）: {exc}".split("\n")[0], file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("中断しました。", file=sys.stderr)
        return 130
    except Exception as exc:  # one line through the redacting log, not a bare traceback
        # (a rejected Telegram token is quoted in full in python-telegram-bot's error)
        logging.getLogger("bot").error(
            "%s を実行できませんでした: %s: %s", key, type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
            exc_info=logging.getLogger().isEnabledFor(logging.DEBUG))
        return 1


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_retriever
    from handlers.answers import contact_line

    retriever = build_retriever(settings)
    decision = retriever.decide(args.question)
    if args.json:
        print(json.dumps(decision.to_dict(), ensure_ascii=False))
        return 0
    if decision.action == "answer" and decision.entry_id:
        print(retriever.by_id[decision.entry_id].answer)
        if retriever.by_id[decision.entry_id].with_gmis_contact:  # as the chat adds it
            print(contact_line(settings.gmis_contact))
    elif decision.action == "suggest":
        print("もしかして:")
        for i, c in enumerate(decision.candidates, 1):
            print(f"  [{i}] {c.question}")
        print("  どれでもない場合は、都道府県の担当者へお問い合わせください。")
    elif decision.route == "gmis_callcenter":
        print(f"G-MISの操作やログインについては G-MIS事務局へ: {settings.gmis_contact}")
    else:
        print("確実にお答えできる情報が見つかりませんでした。都道府県の担当者へのお問い合わせをおすすめします。")
    return 0


def cmd_kb_check(_args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import check_named_entries
    from knowledge.labelled import load_questions
    from knowledge.loader import load_knowledge_base
    from knowledge.model import CATEGORIES
    from knowledge.normalize import load_synonyms, load_words

    entries = load_knowledge_base(settings.knowledge_dir)
    check_named_entries(entries, settings.knowledge_dir)
    words = load_words(settings.words_file)  # a bad one would stop the bot at start-up
    load_synonyms(settings.synonyms_file)
    labelled = load_questions("all", settings.labelled_dir)  # so would a bad labelled file
    known = {e.id for e in entries} | {old for e in entries for old in e.replaces}
    trains = sum(1 for q in labelled if q.split == "tune" and q.expect & known)
    unknown = sorted({i for q in labelled for i in q.expect} - known)
    counts = {c: sum(e.category == c for e in entries) for c in CATEGORIES}
    print(f"OK: {len(entries)} entries, {len(words)} domain words, {len(labelled)} labelled "
          f"questions ({trains} train the learned scores)")
    if unknown:
        print(f"  labels naming no entry, left out: {', '.join(unknown[:10])}"
              + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    for category, n in counts.items():
        print(f"  {category:13} {CATEGORIES[category]}: {n}")
    return 0


def cmd_kb_eval(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_analyzer, build_retriever
    from knowledge.evaluate import run_eval, run_phrasing_holdout
    from knowledge.labelled import training_examples
    from knowledge.loader import load_knowledge_base
    from knowledge.retriever import Retriever

    if args.phrasings:
        return run_phrasing_holdout(load_knowledge_base(settings.knowledge_dir),
                                    build_analyzer(settings),
                                    () if args.no_learned else
                                    training_examples(settings.labelled_dir))
    retriever = build_retriever(settings)
    if args.no_learned:
        retriever = Retriever(retriever.entries, retriever.analyzer,
                              replace(retriever.tuning, w_learned=0.0))
    return run_eval(retriever, args.split, args.misses, args.questions or settings.labelled_dir)


def cmd_db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import upgrade

    upgrade(settings.database_url)
    print("database is up to date")
    return 0


def cmd_demo(_args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_app, build_retriever
    from bot.demo import demo_clock, demo_link_hint, run_demo
    from bot.settings import link_code_key
    from db.migrate import upgrade
    from db.seed import seed_demo
    from scheduler.calendar import JST

    if settings.log_level.upper() == "INFO":  # keep the chat readable in the terminal
        logging.getLogger().setLevel(logging.WARNING)
    retriever = build_retriever(settings)
    settings = settings.model_copy(update={"database_url": settings.demo_database_url})
    upgrade(settings.database_url)

    async def go() -> None:
        app = build_app(settings, retriever)
        clock, dated = demo_clock(app.context.clock)
        ctx = replace(app.context, clock=clock)
        try:
            async with ctx.session() as session:
                today = ctx.clock().astimezone(JST).date()
                await seed_demo(session, settings.default_prefecture, today, settings.gmis_contact,
                                current=True)
                hint = await demo_link_hint(session, settings.default_prefecture,
                                            ctx.clock(), link_code_key(settings))
            await run_demo(ctx, hint=dated + hint)
        finally:
            await app.close()

    asyncio.run(go())
    return 0


def cmd_run(_args: argparse.Namespace, settings: Settings) -> int:
    from bot.runner import NO_CHANNEL, run

    code = run(settings)  # any other failure is logged by the runner, naming the setting
    if code == NO_CHANNEL:
        print("No chat channel is configured (set TELEGRAM_TOKEN, LINE_CHANNEL_SECRET with "
              "LINE_CHANNEL_ACCESS_TOKEN, or SLACK_BOT_TOKEN in .env).\n"
              "To try the bot locally without any token, run: python main.py demo",
              file=sys.stderr)
    return code


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from bot.admin import run_import
    from db.migrate import upgrade

    upgrade(settings.database_url)
    kind = args.command.removeprefix("import-")
    return asyncio.run(run_import(settings, kind, args.file, args.prefecture))


def cmd_issue_codes(args: argparse.Namespace, settings: Settings) -> int:
    from bot.admin import run_issue_codes
    from db.migrate import upgrade

    upgrade(settings.database_url)
    return asyncio.run(run_issue_codes(settings, args.prefecture, args.institution, args.out,
                                       args.force, args.reissue))


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from bot.admin import run_revoke
    from db.migrate import upgrade

    upgrade(settings.database_url)
    return asyncio.run(run_revoke(settings, args.prefecture, args.institution))


def cmd_slack_channel(args: argparse.Namespace, settings: Settings) -> int:
    from bot.desk_admin import run_slack_channel
    from db.migrate import upgrade

    if problem := slack_channel_problem(args.channel):
        print(problem, file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    return asyncio.run(run_slack_channel(settings, args.prefecture, args.channel))


def cmd_desk_digest(args: argparse.Namespace, settings: Settings) -> int:
    from bot.desk_admin import run_digest
    from db.migrate import upgrade

    upgrade(settings.database_url)
    return asyncio.run(run_digest(settings, args.prefecture))


def cmd_kb_drafts(args: argparse.Namespace, settings: Settings) -> int:
    from bot.desk_admin import run_drafts
    from db.migrate import upgrade

    upgrade(settings.database_url)
    return asyncio.run(run_drafts(settings, args.drafts_command, getattr(args, "id", None),
                                  getattr(args, "category", None), getattr(args, "phrasing", []),
                                  getattr(args, "entry_id", None), getattr(args, "url", None),
                                  getattr(args, "force", False), getattr(args, "file", None)))


def cmd_campaign(args: argparse.Namespace, settings: Settings) -> int:
    from bot.campaign_admin import run_calendar, run_campaign, run_template
    from db.migrate import upgrade

    upgrade(settings.database_url)
    run = {"campaign": run_campaign, "calendar": run_calendar,
           "template": run_template}[args.command]
    return asyncio.run(run(settings, args))


COMMANDS: dict[str, Command] = {
    "import-roster": cmd_import,
    "import-status": cmd_import,
    "import-report": cmd_import,
    "issue-codes": cmd_issue_codes,
    "revoke-link": cmd_revoke,
    "ask": cmd_ask,
    "demo": cmd_demo,
    "run": cmd_run,
    "kb.check": cmd_kb_check,
    "kb.eval": cmd_kb_eval,
    "db.upgrade": cmd_db_upgrade,
    "slack-channel": cmd_slack_channel,
    "desk.digest": cmd_desk_digest,
    "kb.drafts": cmd_kb_drafts,
    **{f"campaign.{c}": cmd_campaign
       for c in ("plan", "preview", "send", "cancel", "status", "unlinked")},
    "calendar.show": cmd_campaign,
    "calendar.set": cmd_campaign,
    "template.show": cmd_campaign,
    "template.set": cmd_campaign,
}
