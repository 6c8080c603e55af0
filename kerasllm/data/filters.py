"""Content filters for cleaning: inappropriate words, quality, language, PII.

Each is a callable step of `clean_documents` (text in; text, changed text,
or `None` to drop out) with a `details` dict of counts that the cleaning
report shows beside the step's documents in/out:

    InappropriateContent  word / regex list, matched on folded text    drop or mask
    QualityFilter         C4 / Gopher-style heuristics, per reason      drop
    LanguageFilter        py3langid (model shipped in the wheel)        drop
    PiiScrubber           e-mail, phone, IP, card numbers (Luhn)        replace

Nothing assumes spaces between words: quality rules count characters and
lines, a "word" of Japanese or Chinese is two characters (see `word_count`),
and list entries in Japanese match anywhere, English ones at word edges.
"""

import functools
import re
import unicodedata

# Katakana (ァ..ヶ) to hiragana, so カタカナ and かたかな spellings match.
_KANA_FOLD = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
_WIDE = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"

# A small default list, so that the filter does something without a file of
# your own: unambiguous English profanity and Japanese abuse. It is a start,
# not a policy: give your own list (`inappropriate_words`) for real data.
DEFAULT_INAPPROPRIATE_WORDS = (
    # English (matched as whole words)
    "fuck", "fucking", "fucker", "motherfucker", "shit", "bullshit", "cunt",
    "asshole", "bitch", "dickhead", "wanker", "porn", "porno",
    # Japanese (matched anywhere; katakana and hiragana spellings alike, so
    # no short kana-only entry: しね would match シネマ and リネームしネーム)
    "死ね", "殺すぞ", "ぶっ殺す", "くそったれ", "クソ野郎", "ちんこ",
    "まんこ", "セックス", "エロ動画", "無修正",
)  # fmt: skip


def fold(text):
    """NFKC, case folding and katakana to hiragana: the form lists match on.

    Full-width ｆｕｌｌ and half-width ｶﾀｶﾅ become `full` and `かたかな`.
    """
    return unicodedata.normalize("NFKC", text).casefold().translate(_KANA_FOLD)


def load_word_list(path):
    """Entries of a list file: one a line, `#` comments, `re:` for a regex."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line)
    return entries


class InappropriateContent:
    """Drop documents that contain a listed word or regex, or mask the matches.

    Entries are folded (`fold`) and so is the text, so `ＦＵＣＫ`, `Fuck`
    and `ｼﾈ` match `fuck` and `しね`. An entry of ASCII letters matches only
    as a whole word (`shit` does not match `shitake`); any other entry
    matches anywhere. `re:PATTERN` entries are regular expressions, matched
    on the folded text.

    Args:
        words: entries (strings). Defaults to `DEFAULT_INAPPROPRIATE_WORDS`.
        action: `"drop"` the document or `"mask"` each match with `*`.
            Defaults to `"drop"`.
    """

    def __init__(self, words=None, action="drop"):
        if action not in ("drop", "mask"):
            raise ValueError(f"`action` must be 'drop' or 'mask'. Received: action={action!r}")
        words = list(DEFAULT_INAPPROPRIATE_WORDS if words is None else words)
        patterns = []
        for word in words:
            if word.startswith("re:"):
                patterns.append(f"(?:{word[3:]})")
                continue
            folded = fold(word)
            if not folded:
                continue
            escaped = re.escape(folded)
            if re.fullmatch(r"[a-z0-9' ]+", folded):
                escaped = rf"(?<![a-z0-9]){escaped}(?![a-z0-9])"
            patterns.append(escaped)
        if not patterns:
            raise ValueError("The inappropriate-content list is empty.")
        # Longer entries first, so a mask covers `motherfucker` whole.
        patterns.sort(key=len, reverse=True)
        self.pattern = re.compile("|".join(patterns))
        self.action = action
        self.details = {"matches": 0}

    def __call__(self, text):
        folded = fold(text)
        matches = list(self.pattern.finditer(folded))
        if not matches:
            return text
        self.details["matches"] += len(matches)
        if self.action == "drop":
            return None
        if folded == text:
            spans = [m.span() for m in matches]
        else:
            spans = _source_spans(text, [m.span() for m in matches])
        pieces, last = [], 0
        for start, end in spans:
            if start < last:
                continue
            pieces.append(text[last:start])
            pieces.append("*" * (end - start))
            last = end
        pieces.append(text[last:])
        return "".join(pieces)


def _source_spans(text, spans):
    """Map spans of `fold(text)` back to spans of `text`, character by character."""
    source = []  # source index of each folded character
    for index, char in enumerate(text):
        folded = fold(char)
        if folded and unicodedata.combining(folded[0]) and source:
            # A half-width voiced mark (ﾞ) folds into the previous character.
            continue
        source.extend([index] * len(folded))
    source.append(len(text))
    # fold() of the whole text composes what per-character folding leaves
    # apart, so the two can differ in length by a few characters; clamp.
    last = len(source) - 1
    return [
        (source[min(start, last)], source[min(end, last)] if end <= last else len(text))
        for start, end in spans
    ]


# ------------------------------------------------------------------- quality

_TERMINAL = tuple(".!?。！？…」』）)\"'”’:：")
_SYMBOLS = re.compile(r"#|…|\.\.\.|・・・")
_LATIN_WORD = re.compile(r"[^\s" + _WIDE + r"]+")
_WIDE_CHAR = re.compile(r"[" + _WIDE + r"]")


def word_count(text):
    """Words of `text`, for any script: spaced tokens plus wide characters / 2.

    Text between spaces (English, code) counts one word per token; Japanese
    and Chinese characters, which have no spaces, count two characters per
    word (the mean length of a Japanese word in characters is close to 2).
    """
    wide = len(_WIDE_CHAR.findall(text))
    return len(_LATIN_WORD.findall(text)) + wide / 2


class QualityFilter:
    """C4 / Gopher-style document heuristics that hold for unspaced scripts.

    Drops a document when it is shorter than `min_chars` characters, when
    its non-blank lines average fewer than `min_mean_line_chars` characters
    (menus, lists of links), when it has more than `max_symbol_word_ratio`
    `#` / ellipses per word (Gopher), when fewer than
    `min_terminal_punctuation` of its lines end in sentence punctuation
    (C4; `。！？」` count as well as `.!?"`), or when it contains "lorem
    ipsum" (C4). `details` counts the documents dropped by each reason.
    """

    def __init__(
        self,
        min_chars=50,
        min_mean_line_chars=10,
        max_symbol_word_ratio=0.1,
        min_terminal_punctuation=0.1,
        lorem_ipsum=True,
    ):
        self.min_chars = min_chars
        self.min_mean_line_chars = min_mean_line_chars
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.min_terminal_punctuation = min_terminal_punctuation
        self.lorem_ipsum = lorem_ipsum
        self.details = {
            "too_short": 0,
            "short_lines": 0,
            "symbols": 0,
            "no_punctuation": 0,
            "lorem_ipsum": 0,
        }

    def reason(self, text):
        """Why `text` would be dropped (a `details` key), or `None`."""
        if self.min_chars is not None and len(text) < self.min_chars:
            return "too_short"
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if not lines:
            return "too_short"
        if self.min_mean_line_chars is not None:
            if sum(map(len, lines)) / len(lines) < self.min_mean_line_chars:
                return "short_lines"
        if self.max_symbol_word_ratio is not None:
            words = word_count(text)
            if words and len(_SYMBOLS.findall(text)) / words > self.max_symbol_word_ratio:
                return "symbols"
        if self.min_terminal_punctuation is not None:
            ended = sum(line.endswith(_TERMINAL) for line in lines)
            if ended / len(lines) < self.min_terminal_punctuation:
                return "no_punctuation"
        if self.lorem_ipsum and "lorem ipsum" in text.casefold():
            return "lorem_ipsum"
        return None

    def __call__(self, text):
        reason = self.reason(text)
        if reason is None:
            return text
        self.details[reason] += 1
        return None


# ------------------------------------------------------------------ language

_LANGUAGE_SAMPLE_CHARS = 4000


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify_language(text):
    """`(language, probability)` of `text`: an ISO 639-1 code, from py3langid.

    The model ships inside the `py3langid` wheel (97 languages); nothing is
    downloaded. Long texts are judged on their first 4,000 characters.
    """
    language, probability = _identifier().classify(text[:_LANGUAGE_SAMPLE_CHARS])
    return language, float(probability)


class LanguageFilter:
    """Keep documents in `languages` identified with at least `threshold`.

    `details` counts the documents of each identified language (kept or
    not), so the report shows what was there.
    """

    def __init__(self, languages, threshold=0.5):
        self.languages = frozenset(languages)
        self.threshold = threshold
        self.details = {"languages": {}, "low_confidence": 0}

    def __call__(self, text):
        language, probability = identify_language(text)
        counts = self.details["languages"]
        counts[language] = counts.get(language, 0) + 1
        if language not in self.languages:
            return None
        if probability < self.threshold:
            self.details["low_confidence"] += 1
            return None
        return text


# ------------------------------------------------------------------------ PII

PII_PLACEHOLDERS = {
    "credit_card": "<CREDIT_CARD>",
    "email": "<EMAIL>",
    "ip": "<IP>",
    "phone": "<PHONE>",
}
_PII_PATTERNS = (
    # 13-19 digits written as card numbers are: in one run, in groups of four
    # (4-4-4-4, up to 4-4-4-4-3) or 4-6-5 (Amex), one separator throughout;
    # then checked with Luhn.
    (
        "credit_card",
        re.compile(
            r"(?<![\d-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"
            r"|\d{4}([ -])\d{6}\2\d{5})(?![\d-])"
        ),
    ),
    ("email", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    (
        "ip",
        re.compile(
            r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
            r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"
            r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
            r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}(?![\w:])"
        ),
    ),
    (
        "phone",
        re.compile(
            # International: +81 3-1234-5678, +1 (415) 555-0100, +44 20 7946 0958
            r"(?<![\w+])\+\d{1,3}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{1,4}(?:[ -]\d{2,4}){1,3}(?!\d)"
            # Japanese: 03-1234-5678, 090-1234-5678, 0120-123-456, (03) 1234-5678
            r"|(?<![\w-])(?:0\d{1,4}-\d{1,4}-\d{3,4}|\(0\d{1,4}\) ?\d{1,4}-\d{4})(?![\w-])"
            # North American: (415) 555-0100, 415-555-0100
            r"|(?<![\w-])(?:\(\d{3}\) ?|\d{3}-)\d{3}-\d{4}(?![\w-])"
        ),
    ),
)


_MAYBE_PII = re.compile(r"[0-9@:]")


def luhn_valid(digits):
    """Whether a string of digits passes the Luhn checksum (card numbers do)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


class PiiScrubber:
    """Replace e-mail addresses, phone numbers, IPs and card numbers.

    Each becomes its placeholder in `PII_PLACEHOLDERS` (`<EMAIL>`, ...).
    A digit run counts as a card number only when its 13-19 digits pass the
    Luhn check, so order numbers and dates are left alone. `details` counts
    the replacements of each kind. Full-width digits are matched after NFKC
    normalization (`normalization="NFKC"`).
    """

    def __init__(self):
        self.details = {kind: 0 for kind in PII_PLACEHOLDERS}

    def __call__(self, text):
        if not _MAYBE_PII.search(text):
            return text  # fast path: nothing here can be PII
        for kind, pattern in _PII_PATTERNS:
            text = pattern.sub(functools.partial(self._replace, kind), text)
        return text

    def _replace(self, kind, match):
        if kind == "credit_card":
            digits = re.sub(r"\D", "", match.group())
            if not luhn_valid(digits):
                return match.group()
        self.details[kind] += 1
        return PII_PLACEHOLDERS[kind]
