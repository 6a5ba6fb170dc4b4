"""Operator commands of the staff desk: map a prefecture's Slack channel, queue a digest."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot import cli
from db.engine import async_url, sync_url


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(sync_url(async_url(url)))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()


def register(tmp_path: Path, *prefectures: str) -> None:
    """A roster for each prefecture: the desk commands refuse one that has none."""
    for code in prefectures:
        roster = tmp_path / f"roster-{code}.csv"
        roster.write_text("医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏\n"
                          f"{code}10001,テスト診療所,診療所,無,無,無,中央区,中央\n",
                          encoding="utf-8")
        assert cli.main(["import-roster", str(roster), "--prefecture", code]) == 0


def test_slack_channel_maps_once_and_refuses_a_taken_channel(
        database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    register(tmp_path, "13", "26")
    assert cli.main(["slack-channel", "--prefecture", "13", "--channel", "C0TOKYO"]) == 0
    assert query(database_url, "SELECT code, slack_channel FROM prefecture ORDER BY code") == [
        ("13", "C0TOKYO"), ("26", None)]
    assert cli.main(["slack-channel", "--prefecture", "26", "--channel", "C0TOKYO"]) == 1
    assert "すでに都道府県コード 13" in capsys.readouterr().err
    assert cli.main(["slack-channel", "--prefecture", "26", "--channel", "#総務"]) == 2
    assert cli.main(["slack-channel", "--prefecture", "13", "--channel", "C0TOKYO2"]) == 0
    assert query(database_url, "SELECT slack_channel FROM prefecture WHERE code = '13'") == [
        ("C0TOKYO2",)]


def test_desk_digest_queues_the_digest_for_slack(
        database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    register(tmp_path, "26")
    assert cli.main(["slack-channel", "--prefecture", "26", "--channel", "C0KYOTO"]) == 0
    assert cli.main(["desk", "digest", "--prefecture", "26"]) == 0
    [(channel, recipient, kind, body)] = query(
        database_url, "SELECT channel, recipient, kind, body FROM outbox")
    assert (channel, recipient, kind) == ("slack", "C0KYOTO", "digest")
    assert "日次まとめ" in str(body) and "報告状況" in str(body)


def test_kb_drafts_list_on_an_empty_desk(
        database_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["kb", "drafts", "list"]) == 0
    assert "下書きはありません" in capsys.readouterr().out
    assert cli.main(["kb", "drafts", "show", "99"]) == 1
    assert "#99 は見つかりません" in capsys.readouterr().err
