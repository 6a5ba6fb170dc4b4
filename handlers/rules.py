"""Eligibility rules: one implementation for the chat self-check and for imported reports.

Facts (shared/seeds, DESIGN.md §1): every 病院 and 診療所 reports except 特定機能病院,
歯科医療機関 and institutions 休院 on 1月1日; 1号機能 is held when all three ★ items hold;
2号機能 is reported only with 1号, and each of イ〜ニ is held when any one of its items is
実施している / 実績がある.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FUNC1_ITEMS: dict[str, str] = {
    "posting": "かかりつけ医機能と報告事項の院内掲示",
    "primary_care": "17の診療領域のうち一つ以上での一次診療",
    "consultation": "患者からの医療に関する相談（継続的な相談を含む）への対応",
}

FUNC2: dict[str, str] = {
    "i": "（イ）通常の診療時間外の診療",
    "ro": "（ロ）入退院時の支援",
    "ha": "（ハ）在宅医療の提供",
    "ni": "（ニ）介護サービス等と連携した医療提供",
}


@dataclass(frozen=True)
class Facility:
    kind: str  # "hospital" | "clinic"
    special_function: bool = False
    dental: bool = False
    closed_on_jan1: bool = False


@dataclass(frozen=True)
class Obligation:
    required: bool
    reason: str


# The roster statuses of an institution whose report is in, on paper too: shown as in to the
# clerk and counted as reported in the staff digest (campaigns, which chase only 未報告 and
# 差し戻し, skip them as well).
REPORTED_STATUSES = ("報告済", "紙受付", "確認済")

# Why an institution does not report this year, by the Facility (and Institution) flag that
# says so. The one list: the chat check and status view read it here, and the campaigns'
# SQL (scheduler/campaigns.py) builds its filter from it, so the two cannot disagree.
# 特定機能病院 is a hospital by definition; the roster import refuses the flag on a clinic.
EXEMPTIONS: dict[str, str] = {
    "special_function": "特定機能病院は、かかりつけ医機能報告の対象外です。",
    "dental": "歯科医療機関は、かかりつけ医機能報告の対象外です。",
    "closed_on_jan1": "1月1日時点で休院している医療機関は、その年の報告の対象外です。",
}


def exemption(institution: object) -> str | None:
    """The first EXEMPTIONS flag set on a Facility, an Institution or a row with those
    columns; None when it must report."""
    return next((flag for flag in EXEMPTIONS if getattr(institution, flag)), None)


def obligation(f: Facility) -> Obligation:
    """Whether the institution must report this year, and why, in plain Japanese."""
    if flag := exemption(f):
        return Obligation(False, EXEMPTIONS[flag])
    kind = "病院" if f.kind == "hospital" else "診療所"
    return Obligation(True, f"{kind}（特定機能病院・歯科医療機関を除く）は報告の対象です。")


@dataclass(frozen=True)
class Judgement:
    """What the answers say about 1号 and 2号; None where an answer is missing."""

    func1: bool | None
    func1_missing: tuple[str, ...]
    func2: dict[str, bool | None]
    func1_failed: tuple[str, ...] = ()  # the ★ items answered "no"

    @property
    def must_report_func2(self) -> bool:
        return self.func1 is True


def judge(answers: Mapping[str, bool | None]) -> Judgement:
    """Judge 1号 from the ★ items (keys of FUNC1_ITEMS) and 2号 from keys of FUNC2."""
    missing = tuple(k for k in FUNC1_ITEMS if answers.get(k) is None)
    failed = tuple(k for k in FUNC1_ITEMS if answers.get(k) is False)
    func1 = False if failed else (None if missing else True)
    func2 = {k: answers.get(k) if func1 else None for k in FUNC2}
    return Judgement(func1, missing, func2, failed)


def describe(j: Judgement) -> str:
    """The judgement in plain words, for clinics and staff alike."""
    if j.func1 is None:
        return "1号機能：判定できません（未回答の項目があります）"
    if not j.func1:
        unmet = "、".join(FUNC1_ITEMS[k] for k in j.func1_failed)
        return f"1号機能：なし（満たしていない★の要件：{unmet}）→ 2号機能の報告は不要です"
    parts = [f"{FUNC2[k]}：{_mark(v)}" for k, v in j.func2.items()]
    return "1号機能：あり → 2号機能も報告します\n" + "\n".join(parts)


def judgement_text(report: Mapping[str, bool | None] | None) -> str | None:
    """The automatic judgement of imported report answers, as clinics and staff see it."""
    return f"報告内容からの自動判定（目安）：\n{describe(judge(report))}" if report else None


def _mark(value: bool | None) -> str:
    return {True: "あり", False: "なし", None: "未回答"}[value]
