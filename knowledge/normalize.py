"""Japanese normalisation shared by indexing and querying, so both sides agree."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from sudachipy import Dictionary, SplitMode, Tokenizer
from sudachipy.errors import SudachiError

from knowledge.loader import KnowledgeBaseError, Problem, read_yaml
from knowledge.userdict import user_dictionary

SYNONYMS_FILE = Path(__file__).resolve().parent / "synonyms.yaml"
WORDS_FILE = Path(__file__).resolve().parent / "words.yaml"
MAX_QUERY_CHARS = 400  # long input is truncated for scoring, never rejected

_CONTENT_POS = {"名詞", "動詞", "形容詞", "形状詞", "代名詞", "副詞", "接頭辞", "接尾辞"}
_STOP = {
    "する", "ある", "いる", "なる", "れる", "られる", "おる", "下さる", "くださる", "頂く",
    "いただく", "申す", "致す", "こと", "もの", "よう", "ため", "方", "の", "ん", "ところ",
    "御", "お", "ご", "さん", "様", "教える", "知る", "思う", "分かる", "聞く", "伺う",
    "問う", "仕舞う", "しまう", "良い", "いい", "よい", "ちょっと", "すみません", "済みません",
    "質問", "みたい",
    "これ", "それ", "あれ", "ここ", "そこ", "うち", "私", "当院", "弊院", "ねえ", "あの",
    # Sudachi normalized forms of the same filler words (the check runs on normalized forms).
    "為る", "有る", "居る", "成る", "物", "為", "一寸", "遣る", "呉れる", "貰う", "御座る",
    "言う", "為さる", "御願い", "願う", "出来る", "どう", "すむ", "済む", "結局", "等",
    "此れ", "其れ", "彼れ", "此処", "其処", "所",
    # How officers frame a question ("管内の医療機関から…との照会がありました。取扱いを
    # ご教示ください"): the frame is in no entry, so it would count as a specific word
    # that no entry covers and sink the question.
    "管内", "取り扱い", "教示", "幸い", "恐れ入る", "示す", "受ける", "簡潔", "具体的",
    "資料", "作成", "検討", "可能", "次第", "頂戴", "存じる", "恐縮", "宜しい", "苦慮", "念",
    "手数", "差し支える", "理解", "忙しい", "申し訳", "何とぞ", "宜しく", "助かる",
    "手すき", "承知", "程", "申し上げる",
    # The greeting and self-introduction of an e-mail (いつもお世話になっております。〇〇
    # クリニック事務の者です).
    "御世話", "いつも", "者", "事務",
}
_KEEP_AUX = {"ない", "ず", "ぬ"}
# Verbs that are grammar after に (について, に関する, における, による, に対する, に基づく):
# compound particles, not content. Nearly every officer question has one, and so does every
# entry's 〜についてご教示ください phrasing: as terms they made unrelated questions look alike.
_AFTER_NI = {"つく", "関する", "おく", "よる", "対する", "基づく", "掛かる"}  # 係る, normalised
# 照会 frames a question (…との照会がありました) far more often than it is one (厚生労働省へ
# どう照会するか). Only the frame goes, and only in its reporting forms (had, received, is
# coming in). 相談 goes only as 相談がありました: 相談を受ける is itself a 1号 requirement
# (相談を受けた場合の記録, 相談を受け付ける窓口).
_FRAME = re.compile(
    r"(?:との|という|と|の)?(?:ご)?(?:(?:照会|問い?合わ?せ)(?:が|を)|相談が)"
    r"(?:複数|多数|多く|数件|何件か|何度か|度々|たびたび|相次いで|頻繁に)?"
    r"(?:(?:あり|ござい|受け|いただき|いただい|頂き|頂い|寄せられ|来)"
    r"(?:まし(?:た|て)|ます|た|て(?:おり(?:ます)?|います)?)|あり(?=[、,。]))")
# The greeting an e-mail or a polite chat opens with (handlers.escalation reads past it too).
MAIL_GREETING = r"(?:(?:いつも)?お世話になって(?:おります|います)[。、\s]*)?"
# 「〇〇病院事務長の山田です。」「山田内科の佐藤と申します。」: who is writing, first (after a
# greeting); the names are words no entry has, and they sank the question after them. Only
# a role (事務長, 担当, …課) or と申します makes it one: 「当院は無床の診療所です。」 is context,
# and so is 「都道府県の担当です。」 (an officer's question; the officer entries say it too).
_ROLES = ("事務長", "事務", "院長", "理事長", "看護師", "看護師長", "職員", "担当", "担当者",
          "医師", "受付", "スタッフ", "課", "係", "室")
_ROLE = "|".join(sorted(_ROLES, key=len, reverse=True))
_SELF_INTRO = re.compile(
    rf"^(?P<greeting>{MAIL_GREETING})(?!都道府県の担当)(?P<who>[^。\n?？]{{0,25}}?(?:{_ROLE})?)"
    r"(?P<name>(?:の|\s)?[\u4e00-\u9fff\u30a0-\u30ff〇○]{0,6}"
    r"(?:さん)?(?:です|と申します|でございます))[。\n]")
# What the writer's place says may be what the answer turns on (美容クリニックの事務です,
# 休院中の診療所の院長です): the place stays then, and only the name goes. A plain 〇〇病院
# or 山田内科 is a name too (every 病院 and 診療所 reports alike).
_FACILITY = re.compile(r"歯科|休院|休止|廃止|閉院|有床|無床|在宅|美容|特定機能|分院|新規|開設")
_PUNCT = re.compile(r"[\s\u3000、。，．,.!?！？「」『』（）()\[\]【】〈〉《》・…‥―\-_/:;'\"＃#*]+")
# Terminal escape sequences go whole (a pasted colour code is not words), then any other
# control or invisible formatting character.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
# Lone surrogates too: they cannot be encoded, so Sudachi (and the database) would raise.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff\ud800-\udfff]")


# 「200床の病院」: a bed count is context no entry has (every hospital must report); as
# 病床 it at least says beds, which the entries on beds use.
_BED_COUNT = re.compile(r"\d+\s*床")
# 「2号のハとニ」「2号機能イ・ロ」: a list of letters names each of those functions, as 「2号の
# ハ」 names one (the synonyms give each letter's function: 在宅医療 (ハ)).
_LETTER_LIST = re.compile(
    r"2号(?:機能)?の?\(?([イロハニ](?:(?:と|・|、|,|及び|および|や|か|も|〜|~|～|から)[イロハニ])+)"
    r"(?![ァ-ヶー])\)?")
_RANGE = re.compile(r"([イロハニ])(?:〜|~|～|から)([イロハニ])")  # イ〜ニ: each letter between
_LETTERS = "イロハニ"
_LETTERED = re.compile(r"\(([イロハニ])\)$")
_KANA_WORD = re.compile(r"[\u3041-\u30ff]{4,}")
_SPACE = re.compile(r"[ \u3000]")


def _without_name(match: re.Match[str]) -> str:
    """A self-introduction without the writer's name; without the place too, unless the
    place says what kind of institution is asking."""
    who, name = match.group("who"), match.group("name")
    if not (who.endswith(_ROLES) or name.endswith("と申します")):
        return match.group(0)  # 「当院は無床の診療所です。」: no introduction
    kept = who + "。" if _FACILITY.search(who) else ""
    return match.group("greeting") + kept


def _spelled_out(match: re.Match[str]) -> str:
    """イ〜ニ as イロハニ (written backwards, the same letters)."""
    a, b = sorted((_LETTERS.index(match.group(1)), _LETTERS.index(match.group(2))))
    return _LETTERS[a:b + 1]


def _spaced(variant: str) -> str:
    """A kana variant also matches with spaces between its sounds (かかりつけい きのう):
    phone users often space out kana, and a space never splits a kanji word the same way."""
    if not _KANA_WORD.fullmatch(variant):
        return re.escape(variant)
    return "[ \u3000]?".join(map(re.escape, variant))


def clean_user_text(text: str) -> str:
    """Strip control and invisible characters users paste by accident."""
    return _CONTROL.sub(" ", _ANSI.sub("", text)).strip()


def fold_kana(text: str) -> str:
    """Map katakana to hiragana so 'カカリツケ' and 'かかりつけ' compare equal."""
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in text)


@dataclass(frozen=True)
class Analysed:
    """A text in the two forms the retriever scores: a folded string and content terms."""

    folded: str
    terms: tuple[str, ...]
    reading: str = ""  # hiragana reading of the content words: survives kana input and typos


class Analyzer:
    """NFKC, domain synonyms, SudachiPy normalized forms (mode C) and kana folding."""

    def __init__(self, synonyms_file: Path = SYNONYMS_FILE,
                 words_file: Path | None = WORDS_FILE, cache_dir: Path | None = None) -> None:
        words = load_words(words_file) if words_file else {}
        self._readings = {w: x.reading for w, x in words.items()}
        self.cache_dir = cache_dir  # also where the retriever keeps its learned scores
        self._tokenizer = _tokenizer(self._readings, cache_dir)
        # Names of systems and institution types: specific enough that an entry which never
        # mentions one is not about a question that does. Folded like every term.
        self.named_words = frozenset(fold_kana(w) for w, x in words.items() if x.named)
        self.outside_gmis = frozenset(fold_kana(w) for w, x in words.items() if x.outside_gmis)
        self.other_desk = {fold_kana(w): x.name or w for w, x in words.items() if x.other_desk}
        self._synonyms = load_synonyms(synonyms_file)
        variants = sorted(self._synonyms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(_spaced, variants))) if variants else None
        self._function_of = {m.group(1): term for term in self._synonyms.values()
                             if (m := _LETTERED.search(term))}

    @functools.cached_property
    def fingerprint(self) -> str:
        """What decides how this analyser reads a text, besides the code: its synonyms, its
        words and Sudachi's versions. Part of the learned scores' cache key, so a start
        need not analyse every labelled question to know its cached weights still fit."""
        parts = [sorted(self._synonyms.items()), sorted(self._readings.items()),
                 sorted(self.named_words), sorted(self.outside_gmis),
                 sorted(self.other_desk.items()),
                 [importlib.metadata.version(p) for p in ("sudachipy", "sudachidict-core")]]
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()

    def canonical(self, text: str, limit: int | None = MAX_QUERY_CHARS) -> str:
        """NFKC, lower case, and every domain synonym replaced by its canonical term. A query
        is cut at `limit`; the knowledge base's own texts are analysed whole (limit=None)."""
        text = unicodedata.normalize("NFKC", clean_user_text(text))[:limit].lower()
        if (introduced := _SELF_INTRO.sub(_without_name, text)).strip(" 。"):
            text = introduced  # (an introduction alone is kept: it is all there is)
        text = _BED_COUNT.sub("病床", _FRAME.sub("", text))
        if self._function_of:
            text = _LETTER_LIST.sub(self._letters, text)
        if self._pattern is None:
            return text
        return self._pattern.sub(self._replacement, text)

    @property
    def functions(self) -> dict[str, str]:
        """The 2号 functions by letter, each as its own term (ハ: 在宅医療): siblings a
        question may name together, which an entry on one of them does not answer."""
        return {c: _LETTERED.sub("", term).strip() for c, term in self._function_of.items()}

    def _letters(self, match: re.Match[str]) -> str:
        letters = _RANGE.sub(_spelled_out, match.group(1))
        named = [self._function_of[c] for c in dict.fromkeys(letters) if c in self._function_of]
        if len(named) == len(_LETTERS):  # all four: 2号 as a whole, as 「2号のイロハニ」 is
            return "2号機能の" + self._synonyms.get("イロハニ", "と".join(named))
        return "と".join(named)

    def _replacement(self, match: re.Match[str]) -> str:
        found = match.group(0)
        if found.startswith(_PARTICLE_WORDS) and not _may_start_word(
                match.string[:match.start()]):
            return found  # ひとりしかいいん: the particle, not 歯科医院 (as the speller reads it)
        return self._synonyms.get(found) or self._synonyms[_SPACE.sub("", found)]

    def analyse(self, text: str, limit: int | None = MAX_QUERY_CHARS) -> Analysed:
        return self.analyse_canonical(self.canonical(text, limit))

    def analyse_canonical(self, canon: str) -> Analysed:
        """`analyse` for a text already in canonical form (canonical() is not idempotent:
        a canonical term may contain another term's variant)."""
        folded = fold_kana(_PUNCT.sub("", canon))
        terms, reading = self._terms(canon)
        return Analysed(folded=folded, terms=tuple(terms), reading=reading)

    def _terms(self, canon: str) -> tuple[list[str], str]:
        terms, readings = [], []
        previous = ""
        for m in self._tokenizer.tokenize(canon, SplitMode.C):
            pos, norm, after = m.part_of_speech()[0], m.normalized_form(), previous
            previous = m.surface()
            if pos == "助動詞" and norm in _KEEP_AUX:
                terms.append("ない")
            elif pos == "動詞" and after == "に" and norm in _AFTER_NI:
                continue  # について, による: a particle, not a word
            elif pos in _CONTENT_POS and norm not in _STOP and not _PUNCT.fullmatch(norm):
                terms.append(fold_kana(norm.lower()))
                readings.append(m.reading_form() if m.reading_form() else m.surface())
        return terms, fold_kana("".join(readings).lower())

    def speller(self, texts: Iterable[str]) -> KanaSpeller:
        """A speller for the nouns of `texts` (the knowledge base) as they are written there,
        then for the synonyms' and the domain words' own spellings. Readings come from the
        texts before synonym replacement (ていしゅつ is found as 提出), the spellings stored
        are canonical (提出 is spelled 報告); a reading written several ways takes its most
        frequent spelling."""
        counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for text in texts:
            text = unicodedata.normalize("NFKC", text).lower()
            for word in self._tokenizer.tokenize(text, SplitMode.C):
                if word.part_of_speech()[0] != "名詞" or not _WRITTEN.search(word.surface()):
                    continue
                parts = word.split(SplitMode.A)  # 医療機能情報提供制度, and 医療, 機能, …
                for m in [word, *parts] if len(parts) > 1 else [word]:
                    if m.part_of_speech()[0] == "名詞" and _WRITTEN.search(m.surface()):
                        counts[fold_kana(m.reading_form())][m.surface()] += 1
        spellings = {reading: c.most_common(1)[0][0] for reading, c in counts.items()}
        for variant in self._synonyms:
            if _WRITTEN.search(variant):
                reading = "".join(m.reading_form()
                                  for m in self._tokenizer.tokenize(variant, SplitMode.C))
                spellings.setdefault(fold_kana(reading), variant)
        for word, reading in self._readings.items():
            spellings.setdefault(fold_kana(reading), word)
        # Spelled words go into canonical text, so they are stored canonical themselves
        # (提出 as 報告): the query is never canonicalised twice.
        return KanaSpeller({reading: self.canonical(word, limit=None)
                            for reading, word in spellings.items()
                            if len(reading) >= SPELLING_MIN and HIRAGANA.fullmatch(reading)})


_HIRAGANA = "\u3041-\u309fー"
_KANA_RUN = re.compile(f"[{_HIRAGANA}]{{3,}}")
HIRAGANA = re.compile(f"[{_HIRAGANA}]+")
_WRITTEN = re.compile(r"[\u4e00-\u9fff\u30a1-\u30fa]")  # kanji or katakana: a word as written
_NEVER_AFTER_WORD = frozenset("ぁぃぅぇぉゃゅょゎー")  # ていし|ゅつ is not 停止 + ゅつ
SPELLING_MIN = 3  # two-sound readings (しか, いし) are mostly particles and verb pieces
# A reading that starts like a particle is that particle after a word: ひとりしかいいんに
# いない is "only one person", not 歯科医院 (an exemption), and うちはいしゃ is not 歯科
# (はいしゃ). Such a word counts only at the start of the text or a sentence, or after a
# particle that cannot precede the particle itself (うちはしかいいんです); spaces between
# do not change that (ひとり しか いいん).
_PARTICLE_WORDS = ("しか", "は")
_PARTICLES = "のはもがを"
_SENTENCE_MARKS = "。、,.!?！？「」『』()（）\n"


def _may_start_word(before: str) -> bool:
    """Whether a word that starts like a particle can start right after `before`."""
    before = before.rstrip(" \u3000")
    return not before or before[-1] in _PARTICLES or before[-1] in _SENTENCE_MARKS


class KanaSpeller:
    """Spells the words of a hiragana-typed question the way the knowledge base writes them
    (にゅうりょくのとちゅうでえらー → 入力の途中でエラー). Sudachi cannot find words in a
    run of hiragana without spaces, so such a question otherwise matches on sound bigrams
    alone. Only nouns the knowledge base uses are known, so chit-chat stays as typed; the
    longest reading wins."""

    def __init__(self, spellings: Mapping[str, str]) -> None:
        self._words = dict(spellings)
        # The reading lengths under each two-sound start, longest first: a run is tried
        # only at the lengths a word there can have (a few, not every length up to 21).
        lengths: defaultdict[str, set[int]] = defaultdict(set)
        for reading in self._words:
            lengths[reading[:2]].add(len(reading))
        self._lengths = {start: sorted(n, reverse=True) for start, n in lengths.items()}

    def spell(self, text: str) -> str:
        return _KANA_RUN.sub(lambda m: self._run(m.group(0), text[:m.start()]), text)

    def _run(self, run: str, before: str) -> str:
        out, i = [], 0
        while i < len(run):
            guarded = run.startswith(_PARTICLE_WORDS, i) and not _may_start_word(
                before + run[:i])
            for n in () if guarded else self._lengths.get(run[i:i + 2], ()):
                j = i + n
                word = self._words.get(run[i:j]) if j <= len(run) else None
                if word and (j == len(run) or run[j] not in _NEVER_AFTER_WORD):
                    out.append(word)
                    i = j
                    break
            else:
                out.append(run[i])
                i += 1
        return "".join(out)


def _tokenizer(words: dict[str, str], cache_dir: Path | None) -> Tokenizer:
    """Sudachi's core dictionary plus the domain words; a damaged cached file is built again."""
    if not words:
        return Dictionary(dict="core").tokenizer()
    path = user_dictionary(words, cache_dir)
    try:
        return Dictionary(dict="core", config=json.dumps({"user": [str(path)]})).tokenizer()
    except SudachiError:  # replaced where it lay if that place is ours, else built aside
        path = user_dictionary(words, cache_dir, reuse=False)
        return Dictionary(dict="core", config=json.dumps({"user": [str(path)]})).tokenizer()


class _UniqueKeys(yaml.SafeLoader):
    """A repeated canonical term would silently drop the first list of variants."""


def _unique_mapping(loader: _UniqueKeys, node: yaml.MappingNode) -> dict[object, object]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_synonyms(path: Path) -> dict[str, str]:
    """Variant → canonical term, from a YAML mapping canonical: [variants]."""
    with path.open(encoding="utf-8") as stream:  # errors then name the file and line
        data = yaml.load(stream, Loader=_UniqueKeys) or {}  # noqa: S506
    table: dict[str, str] = {}
    for canonical, variants in data.items():
        canon = unicodedata.normalize("NFKC", str(canonical)).lower()
        # The canonical term is a variant of itself, so the longest-first match takes it whole:
        # 特定機能病院 must not have its 特定機能 replaced by 特定機能病院 again.
        table.setdefault(canon.replace(" ", ""), canon)
        for variant in variants or []:
            table[unicodedata.normalize("NFKC", str(variant)).lower()] = canon
    return table


_KATAKANA = re.compile(r"[\u30a1-\u30fcー]+")


@dataclass(frozen=True)
class Word:
    """A word Sudachi keeps whole. `named`: it names something specific (another system, an
    institution type, a billing item), so an entry that never mentions it is not about a
    question that does. `outside_gmis`: a system with its own login (e-Tax), so its login
    questions are not for the G-MIS call center. `other_desk`: it has its own office (a
    billing item, another report), where a question the bot cannot answer belongs first.
    `name`: the word as words.yaml writes it (「e-Tax」), for showing; matching folds case."""

    reading: str
    name: str = ""
    named: bool = True
    outside_gmis: bool = False
    other_desk: bool = False


_WORD_FIELDS = {"reading", "named", "outside_gmis", "other_desk"}


def load_words(path: Path) -> dict[str, Word]:
    """Word → Word, from a YAML mapping of a reading or {reading, named, outside_gmis,
    other_desk};
    a bad one names the file and line."""
    data, node = read_yaml(path, _UniqueKeys)  # refuses a repeated word, with its line
    data = data or {}
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if node else {}
    words: dict[str, Word] = {}
    for word, value in data.items():
        spec = value if isinstance(value, dict) else {"reading": value}
        word_text = unicodedata.normalize("NFKC", str(word)).lower()
        reading = str(spec.get("reading") or "")
        flags = {k: v for k, v in spec.items() if k != "reading"}
        problem = None
        if not word_text or "," in word_text or not _KATAKANA.fullmatch(reading):
            problem = f"{word!r} needs a reading in katakana and no comma (got {reading!r})"
        elif set(spec) - _WORD_FIELDS or not all(isinstance(v, bool) for v in flags.values()):
            problem = (f"{word!r}: only reading, and named, outside_gmis or other_desk "
                       f"(true/false) are allowed (got {spec!r})")
        if problem:
            raise KnowledgeBaseError([Problem(str(path), lines.get(str(word)), None, None,
                                              problem)])
        words[word_text] = Word(reading, unicodedata.normalize("NFKC", str(word)), **flags)
    return words
