"""The CLI as an operator and a new user run it: real processes, real files."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bot.demo import demo_clock
from bot.settings import Settings
from scheduler.calendar import JST, slot_on
from scheduler.templates import format_deadline

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None,
        tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LOG_LEVEL": "WARNING", **(env or {})}
    if tmp is not None:
        full_env.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'cli.db'}")
        full_env.setdefault("DEMO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'demo.db'}")
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], input=stdin,
                          capture_output=True, text=True, env=full_env, timeout=120, cwd=tmp)


def test_ask_json_is_exactly_one_object_with_the_public_contract(tmp_path: Path) -> None:
    out = run("ask", "--json", "紙で報告できますか", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # raises if anything else was printed
    assert set(data) == {"action", "route", "entry_id", "answer", "score", "candidates"}
    assert data["action"] == "answer" and data["entry_id"] == "method-paper-allowed"
    assert data["route"] == "prefecture" and data["answer"] and isinstance(data["score"], float)
    assert all(set(c) == {"entry_id", "question", "score"} for c in data["candidates"])


def test_ask_json_escalates_the_weather(tmp_path: Path) -> None:
    data = json.loads(run("ask", "--json", "今日の天気は", tmp=tmp_path).stdout)
    assert data["action"] == "escalate" and data["entry_id"] is None and data["answer"] is None


def test_ask_suggestions_print_each_candidate_and_the_way_to_a_person(tmp_path: Path) -> None:
    question = "2号機能ってみんな答えなきゃダメ？"
    data = json.loads(run("ask", "--json", question, tmp=tmp_path).stdout)
    assert data["action"] == "suggest"
    lines = run("ask", question, tmp=tmp_path).stdout.splitlines()
    assert lines == ["もしかして:", *(f"  [{i}] {c['question']}"
                                    for i, c in enumerate(data["candidates"], 1)),
                     "  どれでもない場合は、都道府県の担当者へお問い合わせください。"]


def test_kb_check_names_file_and_line_and_refuses_to_start(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "scope.yaml").write_text("entries:\n  - id: scope-x\n    question: [broken\n",
                                   encoding="utf-8")
    env = {"KNOWLEDGE_DIR": str(kb)}
    check = run("kb", "check", env=env, tmp=tmp_path)
    assert check.returncode == 2
    assert f"{kb / 'scope.yaml'}:" in check.stderr and "YAML syntax" in check.stderr
    demo = run("demo", stdin="報告期間は\n", env=env, tmp=tmp_path)
    assert demo.returncode == 2 and "scope.yaml" in demo.stderr
    assert "ボット>" not in demo.stdout


def test_a_broken_labelled_question_is_named_by_kb_check_and_stops_the_start(
        tmp_path: Path) -> None:
    """The labelled questions train the retriever at every start, so a bad one is an error
    with its file and line, as a bad entry is; a label naming no entry is only counted."""
    labelled = tmp_path / "eval"
    labelled.mkdir()
    (labelled / "mine.yaml").write_text(
        "questions:\n- q: 紙で出せる？\n  expect: [method-paper-allowed]\n"
        "- q: 夜は電話番だけ\n  expect: [no-such-entry]\n", encoding="utf-8")
    check = run("kb", "check", env={"LABELLED_DIR": str(labelled)}, tmp=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "2 labelled questions" in check.stdout and "no-such-entry" in check.stdout
    (labelled / "mine.yaml").write_text(
        "questions:\n- q: 紙で出せる？\n  expect: [method-paper-allowed]\n- q: ''\n",
        encoding="utf-8")
    env = {"LABELLED_DIR": str(labelled)}
    check = run("kb", "check", env=env, tmp=tmp_path)
    assert check.returncode == 2 and f"{labelled / 'mine.yaml'}:4" in check.stderr
    demo = run("demo", stdin="報告期間は\n", env=env, tmp=tmp_path)
    assert demo.returncode == 2 and "mine.yaml" in demo.stderr


def test_kb_eval_asks_a_new_blind_set_without_training_on_it(tmp_path: Path) -> None:
    """A set written by a new writer is measured whole before it joins knowledge/eval, with
    and without the learned scores, while those still train on the labelled folder."""
    blind = tmp_path / "blind"
    blind.mkdir()
    (blind / "questions_new.yaml").write_text(
        "questions:\n- q: 紙で報告できますか\n  expect: [method-paper-allowed]\n"
        "- q: 今日の天気は？\n  expect: []\n", encoding="utf-8")
    for flags in ([], ["--no-learned"]):
        out = run("kb", "eval", "--split", "all", "--questions", str(blind), *flags,
                  tmp=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "questions: 2 (1 in scope, 1 out of scope)" in out.stdout
        ours = next(line for line in out.stdout.splitlines() if line.startswith("ours"))
        assert ours.split()[2] == "100.0%"  # top-1


def test_a_knowledge_base_without_an_entry_the_chat_names_fails_at_load(tmp_path: Path) -> None:
    """The chat answers a pasted 督促 letter with reminder-what-to-do by id; a deployment whose
    own entries lack it must hear so from `kb check` and at start-up, not from a clinic."""
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "knowledge" / "entries", kb)
    path = kb / "reminder.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["entries"] = [e for e in data["entries"] if e["id"] != "reminder-what-to-do"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    env = {"KNOWLEDGE_DIR": str(kb)}
    check = run("kb", "check", env=env, tmp=tmp_path)
    assert check.returncode == 2
    assert "entry reminder-what-to-do" in check.stderr and "handlers/qa.py" in check.stderr
    demo = run("demo", stdin="報告期間は\n", env=env, tmp=tmp_path)
    assert demo.returncode == 2 and "reminder-what-to-do" in demo.stderr
    assert "ボット>" not in demo.stdout


def test_a_deployment_s_own_synonyms_and_words_files_are_the_ones_used(tmp_path: Path) -> None:
    """An operator with their own entries adds words for them; the bot must read those."""
    synonyms = tmp_path / "synonyms.yaml"
    synonyms.write_text((ROOT / "knowledge" / "synonyms.yaml").read_text(encoding="utf-8")
                        .replace("報告期間: [", "報告期間: [ふにゃら, ", 1), encoding="utf-8")
    question = "ふにゃらはいつまでですか"
    before = json.loads(run("ask", "--json", question, tmp=tmp_path).stdout)
    after = json.loads(run("ask", "--json", question, env={"SYNONYMS_FILE": str(synonyms)},
                           tmp=tmp_path).stdout)
    assert before["action"] != "answer"
    assert after["action"] == "answer" and after["entry_id"] == "schedule-reporting-period"
    words = tmp_path / "words.yaml"
    words.write_text("外来機能報告: がいらい\n", encoding="utf-8")
    check = run("kb", "check", env={"WORDS_FILE": str(words)}, tmp=tmp_path)
    assert check.returncode == 2 and f"{words}:1" in check.stderr and "katakana" in check.stderr


def test_the_demo_never_writes_its_made_up_institutions_to_the_real_database(
        tmp_path: Path) -> None:
    out = run("demo", stdin="報告期間は\n", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(tmp_path / "demo.db") as demo:
        assert demo.execute("select count(*) from institution").fetchone()[0] > 0
    real = tmp_path / "cli.db"
    if real.exists():
        with sqlite3.connect(real) as db:
            tables = {r[0] for r in db.execute("select name from sqlite_master")}
            assert "institution" not in tables or not db.execute(
                "select count(*) from institution").fetchone()[0]


def test_demo_reads_piped_stdin_and_numbered_choices(tmp_path: Path) -> None:
    out = run("demo", stdin="報告期間はいつからいつまで\n対象か確認\n9\n2\n\n😀\n",
              tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1月1日" in out.stdout and "3月31日" in out.stdout
    assert "その番号の選択肢はありません。1〜3の番号" in out.stdout  # 9: off the list
    assert "[1] 病院" in out.stdout and "歯科医療機関" in out.stdout  # "2" picked 診療所
    assert out.stdout.count("ボット>") == 6 and "Traceback" not in out.stderr


def test_the_demo_prints_a_link_code_that_shows_a_clinics_status(tmp_path: Path) -> None:
    """報告状況 is half of what a clinic gets; the demo must let anyone try it."""
    out = run("demo", stdin="報告状況\n連携 TRYME-23456\n報告状況\n", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    banner = out.stdout.split("ボット>")[0]
    assert "「連携 TRYME-23456」と送ってください" in banner
    assert "起動し直すと再び使えます" in banner
    before, _, after = out.stdout.partition("連携が完了しました")
    assert "連携がまだお済みでない" in before
    assert "報告状況：差し戻し" in after and "修正の理由" in after
    # A 差し戻し makes sense only once reporting has opened: whatever the date, the demo
    # runs inside the reporting period (and says so when that is not today).
    assert re.search(r"報告期限：\d+年3月31日.*あと\d+日です", after), after
    again = run("demo", stdin="連携 TRYME-23456\n", tmp=tmp_path)  # the next run too
    assert "連携が完了しました" in again.stdout


@pytest.mark.parametrize(("now", "shown"), [
    (datetime(2026, 12, 1, 9, tzinfo=UTC), date(2027, 2, 1)),  # before the window opens
    (datetime(2027, 6, 30, 9, tzinfo=UTC), date(2028, 2, 1)),  # after it closed
    (datetime(2027, 3, 10, 9, tzinfo=UTC), date(2027, 3, 10)),  # inside: today itself
])
def test_the_demo_runs_inside_the_reporting_period(now: datetime, shown: date) -> None:
    clock, banner = demo_clock(lambda: now)
    assert clock().date() == shown
    assert (f"{shown.year}年{shown.month}月{shown.day}日" in banner) == (shown != now.date())


@pytest.mark.parametrize(("command", "code"), [
    (["import-roster", "x.csv"], "48"), (["issue-codes", "--out", "x"], "99"),
    (["calendar", "show"], "0"), (["slack-channel", "--channel", "C0123456789"], "kyoto")])
def test_operator_commands_refuse_bad_prefecture_in_japanese(
        tmp_path: Path, command: list[str], code: str) -> None:
    out = run(*command, "--prefecture", code, tmp=tmp_path)
    assert out.returncode == 2 and "--prefecture" in out.stderr
    assert f"都道府県コードは 01〜47 の数字で指定してください（例：26）: {code!r}" in out.stderr
    assert "invalid" not in out.stderr and not (tmp_path / "cli.db").exists()


def test_a_bad_default_prefecture_setting_is_refused_in_the_same_words() -> None:
    """DEFAULT_PREFECTURE had been refused in English while --prefecture was in Japanese."""
    with pytest.raises(ValidationError, match="都道府県コードは 01〜47 の数字で指定してください"):
        Settings(default_prefecture="99")


def test_import_reports_bad_rows_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "roster.csv"
    bad.write_bytes("医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏\n"
                    "123,テスト医院,診療所,無,無,無,市,圏\n".encode("cp932"))
    out = run("import-roster", str(bad), "--prefecture", "26", tmp=tmp_path)
    assert out.returncode == 1
    assert "Shift_JIS" in out.stdout
    assert (f"{bad}:2行目 「医療機関コード」 値='123'" in out.stderr
            and "何も取り込みません" in out.stderr)


def test_every_bad_row_is_reported_and_a_failed_import_leaves_no_trace(tmp_path: Path) -> None:
    header = "医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏\n"
    bad = tmp_path / "roster.csv"
    bad.write_text(header + "".join(f"X{i},医院{i},診療所,無,無,無,市,圏\n" for i in range(250)),
                   encoding="utf-8")
    out = run("import-roster", str(bad), "--prefecture", "13", tmp=tmp_path)
    assert out.returncode == 1
    assert "エラーが250件" in out.stderr and f"{bad}:251行目" in out.stderr  # the last one too
    with sqlite3.connect(tmp_path / "cli.db") as db:  # not even the new prefecture was kept
        assert db.execute("select count(*) from prefecture where code = '13'").fetchone() == (0,)


def test_a_runaway_field_is_a_precise_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "roster.csv"
    bad.write_text("医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏\n"
                   "2610001,\"さくら" + "あ" * 200_000 + ",診療所\n", encoding="utf-8")
    out = run("import-roster", str(bad), "--prefecture", "26", tmp=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{bad}:" in out.stderr and "引用符" in out.stderr


def test_issue_codes_writes_excel_friendly_csv_once(tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    imported = run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path)
    assert imported.returncode == 0  # the sample's codes have no prefecture number: said
    assert "7桁の医療機関コード 5件は都道府県番号を含まないため、都道府県 26 の" in imported.stdout
    out_file = tmp_path / "codes.csv"
    first = run("issue-codes", "--prefecture", "26", "--out", str(out_file), tmp=tmp_path)
    assert first.returncode == 0, first.stderr
    raw = out_file.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0] == "医療機関コード,名称,連携コード,有効期限" and len(lines) == 3
    expiry = lines[1].rsplit(",", 1)[1]  # the date printed is the one in the letters' file
    assert f"（有効期限 {expiry} まで" in first.stdout
    assert date.fromisoformat(expiry) >= datetime.now(JST).date() + timedelta(days=120)
    again = run("issue-codes", "--prefecture", "26", "--out", str(out_file), tmp=tmp_path)
    assert again.returncode == 2 and out_file.read_bytes() == raw
    # Codes already printed in letters: told how many would stop working, before; nothing done
    forced = run("issue-codes", "--prefecture", "26", "--out", str(out_file), "--force",
                 tmp=tmp_path)
    assert forced.returncode == 2 and out_file.read_bytes() == raw
    assert "有効な連携コードが 2件" in forced.stderr and "--reissue" in forced.stderr
    other = run("issue-codes", "--prefecture", "26", "--out", str(tmp_path / "new.csv"),
                tmp=tmp_path)  # a new file name is no way around it
    assert other.returncode == 2 and not (tmp_path / "new.csv").exists()
    reissued = run("issue-codes", "--prefecture", "26", "--out", str(out_file), "--force",
                   "--reissue", tmp=tmp_path)
    assert reissued.returncode == 0 and "未使用の連携コード 2件は無効" in reissued.stdout
    assert out_file.read_bytes() != raw


def test_a_campaign_is_reached_only_through_its_own_prefecture(tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    plan = run("campaign", "plan", "--prefecture", "26", "--kind", "annai", "--tag", "t",
               tmp=tmp_path)
    assert plan.returncode == 0 and "キャンペーン 1" in plan.stdout, plan.stderr
    own = run("campaign", "status", "1", "--prefecture", "26", tmp=tmp_path)
    assert own.returncode == 0 and "キャンペーン 1" in own.stdout
    other = run("campaign", "unlinked", "1", "--prefecture", "13", "--out",
                str(tmp_path / "x.csv"), tmp=tmp_path)
    assert other.returncode == 1 and "見つかりません" in other.stdout
    assert not (tmp_path / "x.csv").exists()
    mine = tmp_path / "unlinked.csv"
    assert run("campaign", "unlinked", "1", "--prefecture", "26", "--out", str(mine),
               tmp=tmp_path).returncode == 0
    mine.write_text("handed on", encoding="utf-8")  # a list already given to someone
    kept = run("campaign", "unlinked", "1", "--prefecture", "26", "--out", str(mine),
               tmp=tmp_path)
    assert kept.returncode == 2 and "--force" in kept.stderr
    assert mine.read_text(encoding="utf-8") == "handed on"
    forced = run("campaign", "unlinked", "1", "--prefecture", "26", "--out", str(mine),
                 "--force", tmp=tmp_path)
    assert forced.returncode == 0 and mine.read_text(encoding="utf-8-sig") != "handed on"
    assert run("campaign", "status", "1", tmp=tmp_path).returncode == 2  # whose is required
    listed = run("campaign", "status", "--prefecture", "13", tmp=tmp_path)
    assert listed.returncode == 0 and "キャンペーン 1" not in listed.stdout


def test_campaign_commands_say_what_really_happens(tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    run("campaign", "plan", "--prefecture", "26", "--kind", "annai", "--tag", "t", tmp=tmp_path)
    preview = run("campaign", "preview", "1", "--prefecture", "26", tmp=tmp_path)
    assert "Slackの担当チャンネルが未設定のため、確認カードは届きません" in preview.stdout
    sent = run("campaign", "send", "1", "--prefecture", "26", "--by", "me", tmp=tmp_path,
               env={"TELEGRAM_TOKEN": "", "LINE_CHANNEL_ACCESS_TOKEN": ""})
    assert "承認しました" in sent.stdout  # and, with no token, that nothing goes out yet
    assert "TELEGRAM_TOKEN も LINE_CHANNEL_ACCESS_TOKEN も未設定のため" in sent.stdout
    again = run("campaign", "send", "1", "--prefecture", "26", "--by", "me", tmp=tmp_path)
    assert "承認済みです" in again.stdout
    run("campaign", "plan", "--prefecture", "26", "--kind", "annai", "--tag", "t2", tmp=tmp_path)
    run("campaign", "cancel", "2", "--prefecture", "26", "--by", "me", tmp=tmp_path)
    refused = run("campaign", "send", "2", "--prefecture", "26", "--by", "me", tmp=tmp_path)
    assert refused.returncode == 1 and "中止のため送信できません" in refused.stdout


@pytest.mark.parametrize(("given", "missing"), [
    ({"SLACK_BOT_TOKEN": "xoxb-1111-secret-bot-token"}, "SLACK_SIGNING_SECRET is not"),
    ({"SLACK_SIGNING_SECRET": "s3cret-signing-value"}, "SLACK_BOT_TOKEN is not"),
    ({"SLACK_BOT_TOKEN": "xoxb-1111-secret-bot-token", "SLACK_SIGNING_SECRET": ""},
     "SLACK_SIGNING_SECRET is not"),  # copied empty from .env.example
])
def test_run_names_the_missing_slack_setting_not_no_channel(
        tmp_path: Path, given: dict[str, str], missing: str) -> None:
    """Half a Slack configuration had read as "No chat channel is configured"."""
    out = run("run", tmp=tmp_path, env={"TELEGRAM_TOKEN": "", "SLACK_BOT_TOKEN": "",
                                        "SLACK_SIGNING_SECRET": "", **given})
    assert out.returncode == 2, out.stderr
    assert missing in out.stderr and "nothing was started" in out.stderr
    assert "No chat channel is configured" not in out.stderr
    assert not any(value and value in out.stderr for value in given.values())


def test_a_setting_left_blank_is_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """`CACHE_DIR=` copied from .env.example had put the compiled dictionary and the learned
    weights in whatever folder the bot was started from."""
    monkeypatch.setenv("CACHE_DIR", "")
    monkeypatch.setenv("KNOWLEDGE_DIR", "")
    monkeypatch.setenv("TELEGRAM_TOKEN", "")
    settings = Settings(_env_file=None)
    assert settings.cache_dir is None and settings.telegram_token is None
    assert settings.knowledge_dir == Settings.model_fields["knowledge_dir"].default


def test_env_example_documents_every_setting() -> None:

    documented = {line.lstrip("# ").split("=", 1)[0].strip()
                  for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
                  if "=" in line}
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert missing == set(), f".env.example does not document {sorted(missing)}"


def test_demo_never_echoes_terminal_escape_codes(tmp_path: Path) -> None:
    out = run("demo", stdin="\x1b[2J\x1b[31m報告期間はいつからいつまで\n", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout
    assert "あなた> 報告期間はいつからいつまで" in out.stdout
    assert "3月31日" in out.stdout  # the question behind the codes is still understood


def test_database_trouble_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    down = run("calendar", "show", "--prefecture", "26", tmp=tmp_path,
               env={"DATABASE_URL": "postgresql://bot:s3cret@127.0.0.1:9/kakaritsuke"})
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert "データベースのエラーです" in down.stderr and "Connection refused" in down.stderr
    assert "s3cret" not in down.stderr  # a password never reaches the terminal
    port = run("calendar", "show", "--prefecture", "26", tmp=tmp_path,
               env={"DATABASE_URL": "postgresql://bot:s3cret@127.0.0.1:abc/kakaritsuke"})
    assert port.returncode == 2 and "DATABASE_URL:" in port.stderr
    assert "Traceback" not in port.stderr and "s3cret" not in port.stderr
    fresh = run("issue-codes", "--prefecture", "26", "--out", str(tmp_path / "c.csv"),
                tmp=tmp_path)  # a new database: migrated first, then "nothing to do"
    assert fresh.returncode == 1 and "Traceback" not in fresh.stderr
    assert "対象の医療機関がありません" in fresh.stderr
    revoke = run("revoke-link", "--prefecture", "26", "--institution", "2610001", tmp=tmp_path)
    assert revoke.returncode == 1 and "医療機関コード 2610001 はありません" in revoke.stderr
    other = run("calendar", "show", "--prefecture", "26", tmp=tmp_path,
                env={"DATABASE_URL": "mysql://bot@127.0.0.1/kakaritsuke"})
    assert other.returncode == 2 and "DATABASE_URL:" in other.stderr
    assert "Traceback" not in other.stderr
    folder = run("issue-codes", "--prefecture", "26", "--out", str(tmp_path), "--force",
                 tmp=tmp_path)
    assert folder.returncode == 2 and "フォルダです" in folder.stderr


def yesterday() -> date:
    return datetime.now(JST).date() - timedelta(days=1)  # the CLI checks against real today


def next_period(start: date, end: date) -> tuple[date, date]:
    """`start`–`end` (month and day) in next year's reporting period: always in the future."""
    year = datetime.now(JST).year + 1
    return start.replace(year=year), end.replace(year=year)


def stored(tmp: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp / "cli.db") as db:
        return db.execute(sql).fetchall()


def test_calendar_set_refuses_night_hours_and_bad_values_and_keeps_the_contact(
        tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    start, end = next_period(date(1, 1, 13), date(1, 2, 26))
    for bad, says in ((["--hours", "0-24"], "夜間には送りません"),
                      (["--deadline", "2027/13/40"], "日付になっていません"),
                      (["--deadline", str(yesterday())], "過去の日付"),
                      (["--reminders", "7,-1"], "1 以上"),
                      (["--start", str(end), "--deadline", str(start)], "より後")):
        out = run("calendar", "set", "--prefecture", "26", *bad, tmp=tmp_path)
        assert out.returncode == 1 and says in out.stdout and "Traceback" not in out.stderr
    good = run("calendar", "set", "--prefecture", "26", "--deadline", str(end),
               "--start", str(start), "--contact", "医療政策課 075-000-0000", tmp=tmp_path)
    assert good.returncode == 0, good.stderr
    shown = run("calendar", "show", "--prefecture", "26", tmp=tmp_path).stdout
    assert f"報告期限 {end.year}年{end.month}月{end.day}日" in shown
    assert f"受付開始 {start.year}年{start.month}月{start.day}日" in shown
    assert "送信時間帯 9:00〜17:00" in shown and "問い合わせ先 医療政策課 075-000-0000" in shown


def test_template_set_reads_a_notepad_file_and_names_a_missing_one(tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    sjis = tmp_path / "annai.txt"
    sjis.write_bytes("{prefecture}の医療機関の皆様へ。期限は{deadline}です。\n"
                     "お問い合わせ：{contact}\n".encode("cp932"))
    saved = run("template", "set", "--prefecture", "26", "--kind", "annai", "--file", str(sjis),
                tmp=tmp_path)
    assert saved.returncode == 0 and "{prefecture}の医療機関の皆様へ" in saved.stdout
    missing = run("template", "set", "--prefecture", "26", "--kind", "annai",
                  "--file", str(tmp_path / "none.txt"), tmp=tmp_path)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"ファイルが見つかりません: {tmp_path / 'none.txt'}" in missing.stdout
    assert "Errno" not in missing.stdout


def test_calendar_set_keeps_the_period_inside_1_1_to_3_31_and_saves_nothing(
        tmp_path: Path) -> None:
    """Prefectures may shorten the 1月1日〜3月31日 period (DESIGN.md), not leave it: a deadline
    in April would run the 督促 into June, a December start would open before 1月1日."""
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    before = stored(tmp_path, "select period_start, period_end from prefecture")
    start, end = next_period(date(1, 1, 13), date(1, 2, 26))
    late, early = end.replace(month=4, day=15), start.replace(year=start.year - 1, month=12)
    outside = "は報告期間（毎年1月1日〜3月31日）の外です"
    for bad, says in (
            (["--deadline", str(late)], f"--deadline {late} {outside}"),
            (["--start", str(early), "--deadline", str(end)], f"--start {early} {outside}"),
            (["--start", str(start), "--deadline", str(end.replace(year=end.year + 1))],
             "別の年です")):
        out = run("calendar", "set", "--prefecture", "26", *bad, tmp=tmp_path)
        assert out.returncode == 1 and says in out.stdout, out.stdout
        assert "保存しました" not in out.stdout
    assert stored(tmp_path, "select period_start, period_end from prefecture") == before


def test_calendar_set_refuses_a_reminder_before_reporting_opens(tmp_path: Path) -> None:
    """A D-400 督促 would go out before the period starts (and show as 済): refused, naming
    the offset and the day it would fall on; nothing of the command is kept."""
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    start, end = next_period(date(1, 1, 13), date(1, 2, 26))
    out = run("calendar", "set", "--prefecture", "26", "--start", str(start), "--deadline",
              str(end), "--reminders", "400,7", "--contact", "医療政策課", tmp=tmp_path)
    on = format_deadline(slot_on(end - timedelta(days=400)).date())
    assert out.returncode == 1, out.stdout
    assert (f"督促 D-400 は {on} になり、受付開始（{format_deadline(start)}）より前です"
            in out.stdout)
    assert stored(tmp_path, "select count(*) from campaignsettings") == [(0,)]
    assert stored(tmp_path, "select inquiry_contact from prefecture") != [("医療政策課",)]
    default = run("calendar", "set", "--prefecture", "26", "--start", str(end - timedelta(20)),
                  "--deadline", str(end), tmp=tmp_path)  # the default D-30 is before it too
    assert default.returncode == 1 and "督促 D-30 は" in default.stdout
    good = run("calendar", "set", "--prefecture", "26", "--start", str(start), "--deadline",
               str(end), "--reminders", "30,7", tmp=tmp_path)
    assert good.returncode == 0 and "保存しました" in good.stdout, good.stdout


def test_a_dunning_campaign_before_reporting_opens_is_refused(tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    start, end = next_period(date(1, 1, 13), date(1, 2, 26))
    assert run("calendar", "set", "--prefecture", "26", "--start", str(start), "--deadline",
               str(end), tmp=tmp_path).returncode == 0
    out = run("campaign", "plan", "--prefecture", "26", "--kind", "dunning", tmp=tmp_path)
    assert out.returncode == 1 and "作成しました" not in out.stdout
    # campaigns.plan refuses it (for the jobs and Slack too); the CLI prints its reason
    assert out.stdout.splitlines() == [
        f"督促は受付開始（{format_deadline(start)}）より前には送れません。受付開始後にもう一度"
        "計画してください（受付開始は calendar set --start で変更できます）。"], out.stdout
    assert stored(tmp_path, "select count(*) from campaign") == [(0,)]
    assert stored(tmp_path, "select count(*) from outbox") == [(0,)]
    annai = run("campaign", "plan", "--prefecture", "26", "--kind", "annai", tmp=tmp_path)
    assert annai.returncode == 0 and "作成しました" in annai.stdout  # the 案内 goes before it
    # Planned again the same day without a tag (a retry, a second operator): the same
    # campaign, so no clinic gets the 案内 twice.
    again = run("campaign", "plan", "--prefecture", "26", "--kind", "annai", tmp=tmp_path)
    assert again.returncode == 0 and "作成済みです" in again.stdout
    assert stored(tmp_path, "select count(*) from campaign") == [(1,)]


def test_slack_channel_refuses_a_name_with_an_example_before_writing(tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    for bad in ("notachannel", "#kyoto-desk", "c0123456789", "U0123456789", "C01 23"):
        out = run("slack-channel", "--prefecture", "26", "--channel", bad, tmp=tmp_path)
        assert out.returncode == 2 and "送ります" not in out.stdout
        assert (f"SlackのチャンネルIDではありません: {bad!r}。チャンネルIDは C または G で始まる"
                "英大文字と数字です（例：C0123456789）" in out.stderr), out.stderr
    assert stored(tmp_path, "select slack_channel from prefecture") == [(None,)]


def template_set(tmp: Path, kind: str, text: str | None,
                 ) -> subprocess.CompletedProcess[str]:
    """`template set` from tmp/<kind>.txt holding `text` (None: no such file)."""
    path = tmp / f"{kind}.txt"
    path.unlink(missing_ok=True)
    if text is not None:
        path.write_text(text, encoding="utf-8")
    return run("template", "set", "--prefecture", "26", "--kind", kind, "--file", str(path),
               tmp=tmp)


def test_template_set_names_file_line_and_column_and_saves_nothing(tmp_path: Path) -> None:
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    file = tmp_path / "dunning.txt"
    typo = template_set(tmp_path, "dunning", "{institution_name} 様\n期限は{deadlin}です。"
                        "\nお問い合わせ：{contact}\n")
    assert typo.returncode == 1 and "Traceback" not in typo.stderr
    assert f"{file}:2行目: 使えない差し込み項目 {{deadlin}} があります" in typo.stdout
    assert "{deadline} のことでしょうか" in typo.stdout
    # Blank lines before the text are cut when saved, but still counted as the file's lines.
    brace = template_set(tmp_path, "dunning", "\n\nお問い合わせ：{contact}\n期限は{deadline です")
    assert (f"{file}:4行目 4文字目: 「{{」に対応する「}}」がありません" in brace.stdout
            and "expected" not in brace.stdout), brace.stdout
    closing = template_set(tmp_path, "dunning", "期限は}です。{contact}")
    assert f"{file}:1行目 4文字目: 「}}」に対応する「{{」がありません" in closing.stdout
    missing = template_set(tmp_path, "dunning", None)
    assert missing.returncode == 1 and "Errno" not in missing.stdout
    assert f"ファイルが見つかりません: {file}" in missing.stdout
    assert stored(tmp_path, "select count(*) from messagetemplate") == [(0,)]


def test_a_template_without_the_contact_is_refused(tmp_path: Path) -> None:
    """README: {contact} is in every message; nothing appends it, so a template must have it."""
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    out = template_set(tmp_path, "dunning", "{institution_name} 様\n期限は{deadline}です。\n")
    assert out.returncode == 1 and "テンプレートを保存しました" not in out.stdout
    assert (f"{tmp_path / 'dunning.txt'}: 差し込み項目 {{contact}}（都道府県の問い合わせ先）が"
            "ありません" in out.stdout), out.stdout
    assert stored(tmp_path, "select count(*) from messagetemplate") == [(0,)]


def test_setup_commands_for_a_prefecture_without_a_roster_are_refused(tmp_path: Path) -> None:
    """`slack-channel 01` created 北海道 silently with default dates, and `template set` and
    `desk digest` said they had done their work for it (an operator test). The first import
    says it created the prefecture with provisional dates; the next does not."""
    roster = ROOT / "docs" / "samples" / "roster.csv"
    first = run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path)
    assert first.returncode == 0 and "京都府（26）を新しく登録しました" in first.stdout
    assert "calendar set で実際の期限と連絡先を設定してください" in first.stdout
    again = run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path)
    assert again.returncode == 0 and "新しく登録しました" not in again.stdout
    none = run("campaign", "status", "--prefecture", "26", tmp=tmp_path)
    assert none.returncode == 0 and "キャンペーンはまだありません" in none.stdout
    folder = run("import-roster", str(tmp_path), "--prefecture", "26", tmp=tmp_path)
    assert folder.returncode == 2 and "フォルダーが指定されています" in folder.stderr
    template = tmp_path / "annai.txt"
    template.write_text("{name} 様\n{deadline} までにご報告ください。\n{contact}\n", "utf-8")
    for command in (("slack-channel", "--prefecture", "01", "--channel", "C0123456789"),
                    ("template", "set", "--prefecture", "01", "--kind", "annai",
                     "--file", str(template)),
                    ("desk", "digest", "--prefecture", "01")):
        out = run(*command, tmp=tmp_path)
        assert out.returncode == 1, command
        assert "都道府県 01 が登録されていません（名簿を先に取り込んでください）" in out.stdout
    assert stored(tmp_path, "select code from prefecture") == [("26",)]
    assert stored(tmp_path, "select count(*) from outbox") == [(0,)]


def test_calendar_set_warns_that_planned_messages_keep_the_old_deadline(
        tmp_path: Path) -> None:
    """An operator test: a new deadline left a planned 案内 with the old one in its text,
    silently. `calendar set` now names the campaign, what it still says and the way out."""
    roster = ROOT / "docs" / "samples" / "roster.csv"
    assert run("import-roster", str(roster), "--prefecture", "26", tmp=tmp_path).returncode == 0
    start, end = next_period(date(1, 1, 13), date(1, 2, 26))
    assert run("calendar", "set", "--prefecture", "26", "--start", str(start), "--deadline",
               str(end), tmp=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "cli.db") as db:  # one clinic reachable in Telegram
        db.execute("insert into chataccount (channel, external_user_id, prefecture_code, "
                   "institution_id, reachable, created_at) select 'telegram', 'u1', '26', id, "
                   "1, '2026-11-24 00:00:00.000000' from institution where status = '未報告' "
                   "limit 1")
    plan = run("campaign", "plan", "--prefecture", "26", "--kind", "annai", "--tag", "t",
               tmp=tmp_path)
    assert "送信対象 1件" in plan.stdout, plan.stdout
    later = end + timedelta(days=14)
    moved = run("calendar", "set", "--prefecture", "26", "--deadline", str(later),
                tmp=tmp_path)
    assert moved.returncode == 0 and "保存しました" in moved.stdout
    assert (f"注意：送信前のメッセージがあるキャンペーンが 1件あり、その文面は変更前の報告期限"
            f"（{format_deadline(end)}）のままです" in moved.stdout), moved.stdout
    assert f"未送信 1件（文面の報告期限 {format_deadline(end)}）" in moved.stdout
    assert ("campaign cancel 1 --prefecture 26 で中止してから calendar show --prefecture 26"
            in moved.stdout and "--kind annai --tag 新しい名前" in moved.stdout)
    hours = run("calendar", "set", "--prefecture", "26", "--hours", "9-16", tmp=tmp_path)
    assert hours.returncode == 0 and "注意" not in hours.stdout  # the text did not change
    run("campaign", "cancel", "1", "--prefecture", "26", tmp=tmp_path)
    contact = run("calendar", "set", "--prefecture", "26", "--contact", "医療政策課",
                  tmp=tmp_path)
    assert contact.returncode == 0 and "注意" not in contact.stdout  # nothing left to send


def test_a_header_only_file_is_not_a_successful_import(tmp_path: Path) -> None:
    """An operator test: a file with only the header row reported 「取り込み完了」 with 0件
    (and registered the prefecture). It is refused, naming the file, and nothing is kept."""
    empty = tmp_path / "roster.csv"
    empty.write_text("医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏\n\n",
                     encoding="utf-8")
    out = run("import-roster", str(empty), "--prefecture", "13", tmp=tmp_path)
    assert out.returncode == 1 and "取り込み完了" not in out.stdout
    assert (f"取り込めませんでした: {empty}: データの行がありません（見出しの1行目だけです）"
            in out.stderr), out.stderr
    assert "新しく登録しました" not in out.stdout
    assert stored(tmp_path, "select count(*) from prefecture") == [(0,)]
