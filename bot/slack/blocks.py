"""Block Kit rendering of the desk's own data (cards, modals); no logic lives here."""

from __future__ import annotations

import json
from typing import Any

from handlers.desk_card import Card, staff_ref
from handlers.texts import cut

Block = dict[str, Any]
SECTION_MAX = 2900  # Slack refuses section text over 3000 characters

BUTTONS: dict[str, tuple[str, str, str | None]] = {
    # action name → (action_id, label, style)
    "claim": ("desk_claim", "担当する", "primary"),
    "answer": ("desk_answer", "回答する", "primary"),
    "forward": ("desk_forward", "厚労省へ転送", None),
    "resolve": ("desk_resolve", "解決", None),
    "kb": ("desk_kb", "KBに追加", None),
}
FORWARD_CONFIRM = {
    "title": {"type": "plain_text", "text": "厚生労働省へ転送しますか？"},
    "text": {"type": "mrkdwn",
             "text": "質問と会話の内容を厚生労働省の問合せ管理ツールに登録し、"
                     "医療機関には「厚生労働省に確認中」とお知らせします。"},
    "confirm": {"type": "plain_text", "text": "転送する"},
    "deny": {"type": "plain_text", "text": "やめる"},
}


def escape(text: str) -> str:
    """User text must not become Slack markup (<!channel>, links, mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> Block:
    if len(text) > SECTION_MAX:
        text = text[: SECTION_MAX - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in escape(text).splitlines() or [""])


def card_blocks(card: Card) -> list[Block]:
    """The escalation card: who, what, what the bot tried, what staff did, and buttons."""
    state = card.status_label + (f"（担当 {staff_ref(card.claimed_by)}）" if card.claimed_by
                                 else "")
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"問い合わせ {card.receipt}"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*状態*\n{state}"},
            {"type": "mrkdwn", "text": f"*受付*\n{card.received}（{card.age}）"},
            {"type": "mrkdwn", "text": f"*医療機関*\n{escape(card.clinic)}"},
            {"type": "mrkdwn", "text": f"*連絡手段*\n{escape(card.via) or '—'}"},
        ]},
        _section(f"*質問*\n{_quote(card.question)}"),
    ]
    if card.supplements:
        blocks += _supplement_blocks(card)
    if card.history:
        turns = "\n".join(f"• 質問：{escape(t.question)}\n　ボット：{escape(t.reply)}"
                          for t in card.history)
        blocks.append(_section(f"*これまでの会話*\n{turns}"))
    tried = "\n".join(f"{i}. {escape(t.question)}（スコア {t.score:.2f}）"
                      for i, t in enumerate(card.tried, 1)) or "候補なし"
    blocks.append(_section(f"*ボットが試した回答候補*\n{tried}"))
    blocks += _outcome_blocks(card)
    buttons = [_button(name, card.escalation_id) for name in card.actions]
    if buttons:
        blocks.append({"type": "actions", "block_id": f"desk:{card.escalation_id}",
                       "elements": buttons})
    return blocks


SUPPLEMENTS_SHOWN = 5
SUPPLEMENT_CUT = 500


def _supplement_blocks(card: Card) -> list[Block]:
    """The latest supplements, each in its own section and cut, so a long one never hides
    a newer one; older ones are counted (all of them are in the thread)."""
    shown = card.supplements[-SUPPLEMENTS_SHOWN:]
    older = len(card.supplements) - len(shown)
    head = "*医療機関からの補足*" + (f"（以前の{older}件はスレッドにあります）" if older else "")
    return [_section(head)] + [_section(_quote(cut(s, SUPPLEMENT_CUT))) for s in shown]


def _outcome_blocks(card: Card) -> list[Block]:
    out: list[Block] = []
    if card.forwarded_by:
        link = f"\n<{card.redmine_url}|問合せ管理ツールの課題>" if card.redmine_url else ""
        out.append(_section(f"*厚労省へ転送*（{staff_ref(card.forwarded_by)}）{link}"))
    if card.answer is not None and card.answered_by:
        out.append(_section(f"*回答*（{staff_ref(card.answered_by)}・医療機関へ送信）\n"
                            f"{_quote(card.answer)}"))
    if card.resolution is not None and card.resolved_by:
        out.append(_section(f"*解決*（{staff_ref(card.resolved_by)}）\n"
                            f"理由：{escape(card.resolution)}"))
    return out


def _button(name: str, escalation_id: int) -> Block:
    action_id, label, style = BUTTONS[name]
    button: Block = {"type": "button", "action_id": action_id, "value": str(escalation_id),
                     "text": {"type": "plain_text", "text": label}}
    if style:
        button["style"] = style
    if name == "forward":
        button["confirm"] = FORWARD_CONFIRM
    return button


def text_modal(callback_id: str, title: str, card: Card, channel_id: str, label: str,
               hint: str, submit: str, draft: str = "", notice: str = "") -> dict[str, Any]:
    """A modal with the question on top and one multi-line input (block/action id 'text').

    `seen` in the metadata is how many supplements the staff member had in view, so an
    answer written before a newer one arrived is not sent blind."""
    element: Block = {"type": "plain_text_input", "action_id": "text", "multiline": True,
                      "max_length": 2900}
    if draft:
        element["initial_value"] = draft[:2900]
    return {
        "type": "modal", "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "キャンセル"},
        "private_metadata": json.dumps({"id": card.escalation_id, "channel": channel_id,
                                        "seen": len(card.supplements)}),
        "blocks": [
            *([_section(f":warning: {notice}")] if notice else []),
            _section(f"*{card.receipt}* {escape(card.clinic)}\n{_quote(card.question)}"),
            *(_supplement_blocks(card) if card.supplements else []),
            {"type": "input", "block_id": "text",
             "label": {"type": "plain_text", "text": label},
             "hint": {"type": "plain_text", "text": hint},
             "element": element},
        ],
    }


def answer_modal(card: Card, channel_id: str, draft: str = "", notice: str = "",
                 ) -> dict[str, Any]:
    return text_modal("desk_answer", "回答する", card, channel_id, "医療機関への回答",
                      "この回答は医療機関のチャットにそのまま一度だけ送られます。"
                      "です・ます調でお書きください。", "送信", draft, notice)


def resolve_modal(card: Card, channel_id: str) -> dict[str, Any]:
    return text_modal("desk_resolve", "解決にする", card, channel_id, "解決の理由",
                      "例：電話で回答済み／重複した問い合わせ。医療機関には送られません。",
                      "解決にする")


def campaign_preview_blocks(campaign_id: int, title: str, summary: str, sample: str | None,
                            unlinked_csv: str, unlinked: int) -> list[Block]:
    """The approval card: counts, one message as it will be sent, the first unlinked
    institutions as CSV, and 送信 / 中止."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        _section(summary),
        _section(f"*送信する文面の例*\n{_quote(sample or '（送信対象がありません）')}"),
    ]
    if unlinked:
        blocks.append(_section(
            f"*チャット未連携の医療機関（{unlinked}件）*：電話・メールでのご連絡用です。"
            "全件のCSVファイルをこのチャンネルに添付します（Excelで開けます）。"
            f"先頭の数件：\n```{escape(unlinked_csv)}```"))
    blocks.append({"type": "actions", "block_id": f"campaign:{campaign_id}", "elements": [
        {"type": "button", "action_id": "campaign_send", "value": str(campaign_id),
         "style": "primary", "text": {"type": "plain_text", "text": "送信"},
         "confirm": {"title": {"type": "plain_text", "text": "送信しますか？"},
                     "text": {"type": "mrkdwn", "text": "送信時間帯の中で、順に送信します。"},
                     "confirm": {"type": "plain_text", "text": "送信する"},
                     "deny": {"type": "plain_text", "text": "やめる"}}},
        {"type": "button", "action_id": "campaign_cancel", "value": str(campaign_id),
         "style": "danger", "text": {"type": "plain_text", "text": "中止"}},
    ]})
    return blocks
