"""Rendering rules Telegram enforces: message size, sentence-safe splits, 64-byte buttons."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.render import EMPTY_TEXT, split_text, utf16_len
from bot.telegram.render import CALLBACK_LIMIT, TEXT_LIMIT, CallbackCodec, keyboard, parts
from handlers.messages import Button, Link, Reply


def test_short_text_is_one_message() -> None:
    assert split_text("報告期間は1月から3月です。", TEXT_LIMIT) == ["報告期間は1月から3月です。"]


def test_split_happens_only_after_a_sentence_end() -> None:
    text = "".join(f"文{i}は制度の説明です。" for i in range(50))
    chunks = split_text(text, limit=100)
    assert all(utf16_len(c) <= 100 and c.endswith("。") for c in chunks)
    assert "".join(chunks) == text


def test_line_breaks_are_sentence_ends_too() -> None:
    text = "\n".join(f"・項目{i} 院内掲示" for i in range(40))
    chunks = split_text(text, limit=60)
    assert "\n".join(chunks) == text
    assert all(not c.startswith("\n") and not c.endswith("\n") for c in chunks)


def test_one_endless_sentence_is_cut_without_halving_an_emoji() -> None:
    text = "😀" * 150
    chunks = split_text(text, limit=101)
    assert "".join(chunks) == text
    assert all(utf16_len(c) <= 101 for c in chunks)


def test_empty_text_becomes_a_polite_prompt() -> None:
    assert split_text("   ", TEXT_LIMIT) == [EMPTY_TEXT]


@given(st.text(alphabet=st.sampled_from(list("あいう。\n😀abc ")), max_size=600))
def test_splitting_never_loses_text_or_exceeds_the_limit(text: str) -> None:
    chunks = split_text(text, limit=50)
    assert all(0 < utf16_len(c) <= 50 for c in chunks)
    if text.strip():
        squeeze = "".join(text.split())
        assert "".join("".join(chunks).split()) == squeeze


def test_long_payloads_become_stable_short_tokens() -> None:
    codec = CallbackCodec()
    payload = "wiz:" + "選択肢" * 20
    token = codec.encode(payload)
    assert len(token.encode()) <= CALLBACK_LIMIT
    assert codec.encode(payload) == token and codec.decode(token) == payload
    assert codec.encode("fb:up:x") == "fb:up:x"
    assert codec.decode("~unknown") is None
    sneaky = codec.encode("~looks-like-a-token")
    assert sneaky != "~looks-like-a-token" and codec.decode(sneaky) == "~looks-like-a-token"


def test_token_table_is_bounded() -> None:
    codec = CallbackCodec(capacity=3)
    tokens = [codec.encode("x" * 70 + str(i)) for i in range(5)]
    assert codec.decode(tokens[0]) is None and codec.decode(tokens[-1]) == "x" * 70 + "4"


def test_buttons_one_per_row_and_links_as_url_buttons() -> None:
    reply = Reply("選んでください。", (Button("はい", "wiz:yes"), Button("いいえ", "wiz:no")),
                  (Link("厚生労働省", "https://www.mhlw.go.jp/"),))
    markup = keyboard(reply, CallbackCodec())
    assert markup is not None
    rows = markup.inline_keyboard
    assert [[b.text for b in row] for row in rows] == [["はい"], ["いいえ"], ["厚生労働省"]]
    assert rows[2][0].url == "https://www.mhlw.go.jp/" and rows[0][0].callback_data == "wiz:yes"


def test_links_telegram_would_refuse_are_written_into_the_text() -> None:
    reply = Reply("連絡先です。", links=(Link("電話", "tel:0312345678"),))
    [only] = parts([reply])
    assert only.text.endswith("電話: tel:0312345678") and only.links == ()


def test_buttons_stay_under_the_last_part() -> None:
    reply = Reply("長い説明です。" * 1000, (Button("👍", "fb:up:x"),))
    out = parts([reply, Reply("次のメッセージ。")])
    assert len(out) >= 3
    assert [bool(p.buttons) for p in out] == [False] * (len(out) - 2) + [True, False]
