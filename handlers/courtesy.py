"""What a message made only of courtesy phrases says: thanks, hello, yes, no, "that's wrong".

One vocabulary for every place that reads a typed reply instead of a tapped button: small
talk (handlers.smalltalk), a yes/no step of the wizard, the staff-question prompt. Pure
functions, no state: the handlers decide what a 「はい」 means from where the user is.
"""

from __future__ import annotations

import re
import unicodedata

from knowledge.normalize import fold_kana

# Each kind, as the phrases a message may be made of. Matched after NFKC, lower case and
# katakana folded to hiragana (アリガトウ, ｱﾘｶﾞﾄｳ, ハイ); longer alternatives first.
_POLITE_END = r"(?:します|いたします|致します|申し上げます)"
_PHRASES: dict[str, str] = {
    "thanks": r"(?:ご回答|ご丁寧に|丁寧に|いつも|本当に|ほんとうに|大変|たいへん|どうも)?"
              r"(?:ありがと|有難|有り難)(?:うございました|うございます|う)?(?:ね|ねー|な|です)?"
              r"|(?:大変|たいへん|本当に)?(?:助か|たすか)(?:りました|ります|った|る)"
              r"|感謝" + _POLITE_END + "?" + r"|おおきに"
              r"|さんきゅー?|thanks?(?: you)?|thx"
              r"|(?:大変|たいへん|とても|すごく)?(?:役に立(?:った|ちました)|参考になりました)"
              r"|よく(?:わか|分か)りました",
    "bye": r"さようなら|さよなら|失礼" + _POLITE_END + r"|またね|おやすみ(?:なさい)?|ばいばい"
           r"|以上です|以上になります"
           r"|(?:また)?(?:分から|わから|不明な点が|困ったことが)(?:ない)?(?:こと|点)?が?"
           r"(?:あったら|あれば)(?:聞きます|ききます|質問します|連絡します|相談します)",
    "please": r"(?:今後とも|引き続き|ひきつづき)?(?:どうぞ)?よろしく(?:お願い|おねがい)?"
              + _POLITE_END + "?"
              r"|(?:ぜひ|是非)?(?:お願い|おねがい)" + _POLITE_END + "?"
              r"|(?:送って|聞いて)(?:ください|下さい)?",
    "greeting": r"こんにち[はわ]|こんばん[はわ]|おはよう(?:ございます)?|はじめまして|初めまして"
                r"|(?:いつも)?お世話になって(?:おります|います)"
                r"|(?:お疲れ|おつかれ)(?:様|さま)?(?:です|でした)?|もしもし|hello|hi",
    "excuse": r"すみません|すいません|恐れ入ります|おそれいります|おーい|おい",
    "yes": r"はーい|はい|ええ|うん|そうです",
    "no": r"いいえ|いえ|いや|ううん",
    "decline": r"結構です|けっこうです|いらない|いりません|不要です|(?:もう)?大丈夫です"
               r"|送らないで(?:ください|下さい)?|送らない|(?:やっぱり)?(?:やめます|やめておきます|やめとく)"
               r"|もういいです",
    "wrong": r"(?:それは)?(?:違います|ちがいます|違う|ちがう|違いました)(?:よ|ね)?"
             r"|そうじゃない(?:です)?|そういうことではない(?:です)?|そういうことじゃない"
             r"|聞きたいのは(?:それ|そこ)じゃない|答えになっていない|的外れ(?:です)?"
             r"|(?:そういうこと|そう)じゃなくて|(?:そういうこと|そう)ではなくて",
    "ack": r"わかりました|分かりました|わかった|分かった|りょうかい(?:です|しました)?"
           r"|了解(?:です|しました|いたしました)?|承知(?:しました|いたしました|です)?"
           r"|かしこまりました|ok(?:です)?|おっけー(?:です)?|なるほど"
           r"|(?:すぐ|早速|さっそく|あとで|後で)?(?:電話|連絡|問い合わせ|確認)(?:して)?(?:みます|します)",
    # Venting, which is no question to send to staff (「めんどくさい」 had been offered).
    "vent": r"(?:ほんと|本当に|まじ)?(?:めんどくさい|めんどくせー|面倒くさい|面倒臭い|めんどい"
            r"|面倒(?:です|だ)|めんどう(?:です|だ)?|いそがしい|忙しい|つかれた|疲れた|むずかしい|難しい|むずい)"
            r"(?:なあ|なー|ね|よ|わ|です)?",
    # A remark on the weather or the season (「今日は寒いですね」) is no question for staff;
    # 「今日の天気は？」 asks something and stays a question.
    "weather": r"(?:今日は|きょうは|今日も|きょうも|最近は?|毎日|朝晩は?|外は|こちらは)?"
               r"(?:本当に|ほんとうに|ほんと|とても|すごく|だいぶ|随分|ずいぶん|めっきり|急に)?"
               r"(?:寒|さむ|暑|あつ|涼し|すずし|暖か|あたたか|蒸し暑|むしあつ)"
               r"(?:いです|かったです|くなりました|くなってきました|い|かった)(?:ね|ねー|なあ|な)"
               r"|(?:いい|良い|よい)(?:お)?(?:天気|天候)(?:です|でした)?(?:ね|ねー|なあ)"
               r"|(?:雨|雪)(?:です|が続きます|が降っています|が降ってきました)(?:ね|ねー)",
    # Insults: answered calmly, never offered on to staff as a question (「死ね」 had become
    # an inquiry with one tap).
    "abuse": r"(?:お前|おまえ|あんた|この)?(?:ほんと|本当に|まじで?)?(?:全然|ぜんぜん)?"
             r"(?:使えない|つかえない|役に立たない|やくにたたない|使えねー?|つかえねー?)"
             r"(?:な|ね|なあ|やつ|ぼっと)?|死ね|しね|氏ね|ばか(?:か|じゃないの|やろう)?|馬鹿|あほ"
             r"|くそ|糞|うざい|うぜー|ふざけるな|ふざけんな|だまれ|黙れ|ぽんこつ",
    # Asking for a person rather than the bot; katakana is folded, so おぺれーたー.
    "staff": r"(?:やっぱり|やはり|しょうがないので|仕方ないので|仕方がないので)?"
             r"(?:(?:この)?ぼっと(?:じゃなくて|ではなく(?:て)?)[、,]?)?"
             r"(?:人間の|にんげんの|県の|都道府県の|けんの)?"
             r"(?:担当者|担当の方|担当の人|担当|人間|人|おぺれーたー|職員|窓口|県の人"
             r"|たんとうしゃ|たんとうのひと|たんとう|にんげん|ひと|しょくいん|まどぐち)(?:さん)?"
             r"(?:と|に|へ)?(?:直接)?"
             r"(?:話したい|はなしたい|話せますか|話せる|相談したい|聞きたい|ききたい|きいてほしい"
             r"|聞いてほしい|お話し(?:させていただきたい|させてほしい|したい)"
             r"|質問したい|問い合わせたい|つないで|繋いで|つなげて|代わって|かわって)"
             r"(?:ほしい|欲しい|もらえますか|いただけますか|ください|下さい)?"
             r"(?:んです(?:が|けど)?|のですが|のですけど|です(?:が|けど)?)?",
    # Who is writing, and the announcement of a question to come: 「〇〇クリニックの事務長の
    # 山田です」「看護師長をしています」「何点かお伺いしたくご連絡いたしました」
    # 「いくつか質問してもいいですか」. They wait for the question; none is one. (After
    # "staff": 「担当者に聞きたいです」 asks for a person.)
    "intro": r"[^。?？\n]{0,40}?(?:事務長|事務|院長|理事長|看護師長|看護師|職員|担当者|担当"
             r"|受付|すたっふ|医師|管理者)"
             r"(?:(?:を|として)(?:しています|しております|務めております|勤めております)"
             r"|(?:の[\u4e00-\u9fff\u3041-\u30ff]{1,6}?)?(?:です|と申します|でございます))"
             r"|[^。?？\n]{0,30}?(?:くりにっく|病院|医院|診療所)の"
             r"(?!報告|提出|件|場合|こと|ため|方)[\u4e00-\u9fff\u3041-\u30ff]{1,8}?"
             r"(?:です|と申します|でございます)",
    "opener": r"(?:いくつか|何点か|なんてんか|一点|1点|ひとつ|追加で一点|もう一点|少し|ちょっと)?"
              r"(?:ご|お)?(?:質問|伺い|うかがい|相談|尋ね|確認|聞きたいこと)(?:が|を)?"
              r"(?:あります|ございます|あるのですが|あるんですが|したいのですが|したいです|したい"
              r"|させてください|させていただきます|いたしたく(?:ご連絡いたしました|存じます)"
              r"|したく(?:ご連絡いたしました|ご連絡しました|存じます)"
              r"|(?:して|させて|し)?(?:いただいて)?も?(?:よろしい|宜しい|いい|大丈夫)(?:でしょう|です)?か)"
              # 「かかりつけ医の報告のことで」: the matter named, the question still to come.
              r"|(?:かかりつけ医(?:機能)?の?報告|この報告|報告|この制度|制度)の(?:こと|件)で"
              r"(?:すが|す|質問です|ご相談です|お聞きしたいのですが|ちょっと)?",
}
_KIND = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _PHRASES.items()))
# What may sit between and around phrases: spaces, punctuation, emoji, ー, 笑, ww (not ?:
# 「大丈夫です？」 asks something; nor a w inside latin letters: "wok" is not ok).
_FILLER = re.compile(r"(?:[^\w?？]|[ー笑_]|(?<![a-z])w+(?![a-z]))+")


# A reaction typed as an emoji says what the button would: 👍 after an answer is thanks.
_EMOJI = str.maketrans({"👍": "ok ", "👌": "ok ", "🙆": "ok ", "👎": "違う ", "🙅": "違う ",
                        "🙏": "ありがとう "})


def kinds_of(text: str) -> list[str]:
    """The kinds of phrase `text` is made of, in order; [] if anything else is in it."""
    return made_of(text, _KIND)


def made_of(text: str, phrases: re.Pattern[str]) -> list[str]:
    """The named groups of `phrases` that `text` is made of, in order; [] if anything else is
    in it. Read as `kinds_of` reads (NFKC, lower case, katakana as hiragana, emoji as words,
    fillers between), so a place with a vocabulary of its own for one question (the 連携解除
    confirmation) reads 「ハイ、解除して！」 as every other place reads 「はい」."""
    text = fold_kana(unicodedata.normalize("NFKC", text).lower()).translate(_EMOJI)
    kinds: list[str] = []
    pos = _skip(text, 0)
    while pos < len(text):
        m = phrases.match(text, pos)
        if m is None or m.lastgroup is None:
            return []
        kinds.append(m.lastgroup)
        pos = _skip(text, m.end())
    return kinds


def _skip(text: str, pos: int) -> int:
    m = _FILLER.match(text, pos)
    return m.end() if m else pos


def yes_or_no(text: str) -> str | None:
    """'yes' or 'no' for a typed answer to a yes/no question (「はい」「うん」「いいえ」
    「違います」, 「はい、お願いします」), None for anything else, 「お願いします」 and
    「大丈夫です」 alone included: neither answers 「歯科医療機関ですか」."""
    if "👎" in text:  # "your last reading was wrong", not an answer to this question
        return None
    kinds = set(kinds_of(text))
    if "yes" in kinds and kinds <= {"yes", "please", "ack"}:
        return "yes"
    if kinds and kinds <= {"no", "wrong"}:
        return "no"
    return None
