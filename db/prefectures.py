"""The 47 prefectures (JIS X 0401 codes) and default reporting periods."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

NAMES: dict[str, str] = {
    "01": "北海道", "02": "青森県", "03": "岩手県", "04": "宮城県", "05": "秋田県",
    "06": "山形県", "07": "福島県", "08": "茨城県", "09": "栃木県", "10": "群馬県",
    "11": "埼玉県", "12": "千葉県", "13": "東京都", "14": "神奈川県", "15": "新潟県",
    "16": "富山県", "17": "石川県", "18": "福井県", "19": "山梨県", "20": "長野県",
    "21": "岐阜県", "22": "静岡県", "23": "愛知県", "24": "三重県", "25": "滋賀県",
    "26": "京都府", "27": "大阪府", "28": "兵庫県", "29": "奈良県", "30": "和歌山県",
    "31": "鳥取県", "32": "島根県", "33": "岡山県", "34": "広島県", "35": "山口県",
    "36": "徳島県", "37": "香川県", "38": "愛媛県", "39": "高知県", "40": "福岡県",
    "41": "佐賀県", "42": "長崎県", "43": "熊本県", "44": "大分県", "45": "宮崎県",
    "46": "鹿児島県", "47": "沖縄県",
}

_BY_NAME = {name: code for code, name in NAMES.items()}
# 「東京」「大阪」 as typed: the name without 都・府・県 (北海道 is its own short name), and only
# before a particle or the end: 「山口内科」「石川クリニック」 are surnames, not prefectures.
_BY_SHORT = {(name if code == "01" else name[:-1]): code for code, name in NAMES.items()}
_FULL = re.compile("|".join(sorted(NAMES.values(), key=len, reverse=True)))
_SHORT = re.compile(f"({'|'.join(sorted(_BY_SHORT, key=len, reverse=True))})"
                    r"(?=です|でした|の|で|に|から|と(?!申)|や|か|は|も|、|。|,|\.|\s|$)")


def named_in(text: str) -> set[str]:
    """The codes of the prefectures a short text names: 「東京都です」「大阪の診療所」「13」.
    Full names are read first, so 東京都 is not also 京都; a two-digit JIS code counts only as
    the whole text (「1」 is more likely a tap on a numbered choice)."""
    text = unicodedata.normalize("NFKC", text).strip()
    if text in NAMES:
        return {text}
    found = {_BY_NAME[m] for m in _FULL.findall(text)}
    return found | {_BY_SHORT[m] for m in _SHORT.findall(_FULL.sub("　", text))}


def default_period(today: date) -> tuple[date, date]:
    """The statutory window (1月1日〜3月31日) of the cycle that is current or next."""
    year = today.year if today.month <= 3 else today.year + 1
    return date(year, 1, 1), date(year, 3, 31)
