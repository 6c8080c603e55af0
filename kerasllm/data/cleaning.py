"""Cleaning: normalize, filter and deduplicate documents, with a report.

The steps run in this order, each a transform (changes text) or a filter
(keeps or drops a document):

    unicode        NFC (default) or NFKC normalization             transform
    control        CR LF / CR -> LF; other control chars removed   transform
    whitespace     trailing spaces/tabs, runs of blank lines       transform
    length         min_chars <= len(text) <= max_chars             filter
    repeated_lines too much text in lines that repeat              filter
    pii            e-mail, phone, IP, card numbers -> <EMAIL> ...  transform (opt-in)
    language       keep listed languages (py3langid)               filter    (opt-in)
    quality        C4 / Gopher-style heuristics                    filter    (opt-in)
    inappropriate  word / regex list: drop, or mask with *         either    (opt-in)
    exact_dedup    identical text seen before                      filter
    near_dedup     MinHash + LSH Jaccard >= threshold              filter

Nothing here assumes ASCII or spaces between words: lengths are in code
points, whitespace rules touch only ASCII spaces and tabs at line ends (never
leading indentation, never U+3000), and near-duplicate shingles are character
n-grams, so Japanese or Chinese text is handled like any other.
"""

import dataclasses
import hashlib
import re
import unicodedata

import numpy as np

from kerasllm.data.atomic import atomic_write_json

_NORMALIZATIONS = ("NFC", "NFKC", "NFD", "NFKD")
# C0 and C1 control characters except \t (09) and \n (0a); \r is handled
# first, as a line ending.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TRAILING_SPACE = re.compile(r"[ \t]+(?=\n|\Z)")


@dataclasses.dataclass
class CleaningConfig:
    """What `clean_documents` does. The defaults keep ordinary text unchanged.

    Args:
        normalization: Unicode normalization form: `"NFC"`, `"NFKC"` (also
            folds full-width/half-width forms and ligatures), `"NFD"`,
            `"NFKD"`, or `None` to leave the text as is. Defaults to `"NFC"`.
        strip_control_characters: turn CR LF and lone CR into LF and remove
            other control characters (tab and newline are kept). Defaults to
            `True`.
        normalize_whitespace: remove spaces and tabs at line ends, leading
            blank lines, and more than `max_blank_lines` blank lines in a
            row; a document ends with at most one newline. Leading
            indentation is never touched. Defaults to `True`.
        max_blank_lines: the longest run of blank lines kept. Defaults to `2`.
        min_chars: drop documents shorter than this (in code points, after
            the transforms). Defaults to `1` (drop empty documents).
        max_chars: drop documents longer than this; `None` for no limit.
            Defaults to `None`.
        max_repeated_line_fraction: drop a document when more than this
            fraction of its non-blank characters sit in lines that repeat an
            earlier line (boilerplate, spam). `None` disables the filter.
            Defaults to `0.5` (source code reaches about 0.35).
        exact_dedup: drop documents identical to an earlier one. Defaults to
            `True`.
        near_dedup: drop documents whose estimated Jaccard similarity to an
            earlier kept one is at least `near_dedup_threshold` (MinHash over
            character shingles, LSH index from `datasketch`). Defaults to
            `True`.
        near_dedup_threshold: Jaccard similarity above which two documents
            are near duplicates. Defaults to `0.8`.
        num_perm: MinHash permutations (at least 16); more is more accurate
            and slower. Defaults to `128`.
        shingle_size: characters per shingle. Defaults to `5`.
        pii: replace e-mail addresses, phone numbers (Japanese and
            international), IP addresses and Luhn-valid card numbers with
            `<EMAIL>`, `<PHONE>`, `<IP>`, `<CREDIT_CARD>`. Defaults to
            `False`.
        languages: keep only documents identified (py3langid) as one of
            these ISO 639-1 codes, e.g. `["ja"]`; `None` keeps all. Defaults
            to `None`.
        language_threshold: the least probability of the identified
            language for a document to be kept. Defaults to `0.5`.
        quality: drop documents that fail the quality heuristics below.
            Defaults to `False`.
        quality_min_chars: shorter documents fail. Defaults to `50`.
        quality_min_mean_line_chars: documents whose non-blank lines average
            fewer characters fail (menus, link lists). Defaults to `10`.
        quality_max_symbol_word_ratio: `#` and ellipses per word above which
            a document fails; a Japanese word counts as two characters.
            Defaults to `0.1`.
        quality_min_terminal_punctuation: the least fraction of lines ending
            in sentence punctuation (`.!?"` and `。！？」`). Defaults to
            `0.1`.
        quality_lorem_ipsum: documents containing "lorem ipsum" fail.
            Defaults to `True`.
        inappropriate: filter inappropriate content with a word / regex
            list, matched after NFKC, case and kana folding. Defaults to
            `False`.
        inappropriate_words: a list file (one entry a line, `#` comments,
            `re:PATTERN` for a regex) used with the default English and
            Japanese list; `None`: the default list only. Defaults to `None`.
        inappropriate_action: `"drop"` the document or `"mask"` the matches
            with `*`. Defaults to `"drop"`.

    Example:

    >>> config = kerasllm.data.CleaningConfig(normalization="NFKC", min_chars=50)
    >>> docs, report = kerasllm.data.clean_documents(raw_docs, config)
    """

    normalization: str | None = "NFC"
    strip_control_characters: bool = True
    normalize_whitespace: bool = True
    max_blank_lines: int = 2
    min_chars: int = 1
    max_chars: int | None = None
    max_repeated_line_fraction: float | None = 0.5
    exact_dedup: bool = True
    near_dedup: bool = True
    near_dedup_threshold: float = 0.8
    num_perm: int = 128
    shingle_size: int = 5
    pii: bool = False
    languages: list | None = None
    language_threshold: float = 0.5
    quality: bool = False
    quality_min_chars: int | None = 50
    quality_min_mean_line_chars: float | None = 10
    quality_max_symbol_word_ratio: float | None = 0.1
    quality_min_terminal_punctuation: float | None = 0.1
    quality_lorem_ipsum: bool = True
    inappropriate: bool = False
    inappropriate_words: str | None = None
    inappropriate_action: str = "drop"

    def __post_init__(self):
        if self.normalization is not None and self.normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {_NORMALIZATIONS} or None. "
                f"Received: normalization={self.normalization!r}"
            )
        if self.max_blank_lines < 0:
            raise ValueError(
                "`max_blank_lines` must be >= 0. "
                f"Received: max_blank_lines={self.max_blank_lines}"
            )
        if self.min_chars < 0:
            raise ValueError(f"`min_chars` must be >= 0. Received: min_chars={self.min_chars}")
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(
                "`max_chars` must be >= `min_chars`. "
                f"Received: min_chars={self.min_chars}, max_chars={self.max_chars}"
            )
        fraction = self.max_repeated_line_fraction
        if fraction is not None and not 0 <= fraction <= 1:
            raise ValueError(
                "`max_repeated_line_fraction` must be in [0, 1] or None. "
                f"Received: max_repeated_line_fraction={fraction}"
            )
        if not 0 < self.near_dedup_threshold <= 1:
            raise ValueError(
                "`near_dedup_threshold` must be in (0, 1]. "
                f"Received: near_dedup_threshold={self.near_dedup_threshold}"
            )
        if self.num_perm < 16:
            raise ValueError(f"`num_perm` must be >= 16. Received: num_perm={self.num_perm}")
        if self.shingle_size < 1:
            raise ValueError(
                f"`shingle_size` must be >= 1. Received: shingle_size={self.shingle_size}"
            )
        self._check_filters()

    def _check_filters(self):
        if self.languages is not None:
            if isinstance(self.languages, str):
                self.languages = [code.strip() for code in self.languages.split(",")]
            if not self.languages or not all(isinstance(c, str) and c for c in self.languages):
                raise ValueError(
                    "`languages` must be a non-empty list of ISO 639-1 codes or None. "
                    f"Received: languages={self.languages!r}"
                )
        if not 0 <= self.language_threshold <= 1:
            raise ValueError(
                "`language_threshold` must be in [0, 1]. "
                f"Received: language_threshold={self.language_threshold}"
            )
        for name in ("quality_max_symbol_word_ratio", "quality_min_terminal_punctuation"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"`{name}` must be in [0, 1] or None. Received: {name}={value}")
        if self.inappropriate_action not in ("drop", "mask"):
            raise ValueError(
                "`inappropriate_action` must be 'drop' or 'mask'. "
                f"Received: inappropriate_action={self.inappropriate_action!r}"
            )

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config):
        return cls(**config)


@dataclasses.dataclass
class StepStats:
    """Documents and characters in and out of one cleaning step."""

    name: str
    documents_in: int = 0
    documents_out: int = 0
    chars_in: int = 0
    chars_out: int = 0
    changed: int = 0  # documents whose text a transform changed
    details: dict = dataclasses.field(default_factory=dict)  # a filter's own counts

    @property
    def removed(self):
        return self.documents_in - self.documents_out


@dataclasses.dataclass
class CleaningReport:
    """Per-step counts of a `clean_documents` run.

    `print(report)` shows a table; `report.save(path)` writes JSON atomically;
    `report.to_dict()` gives the same content as a dict.
    """

    config: CleaningConfig
    steps: list

    @property
    def documents_in(self):
        return self.steps[0].documents_in if self.steps else 0

    @property
    def documents_out(self):
        return self.steps[-1].documents_out if self.steps else 0

    @property
    def chars_in(self):
        return self.steps[0].chars_in if self.steps else 0

    @property
    def chars_out(self):
        return self.steps[-1].chars_out if self.steps else 0

    def step(self, name):
        """The `StepStats` of the step called `name`."""
        for stats in self.steps:
            if stats.name == name:
                return stats
        raise KeyError(
            f"No cleaning step {name!r}. Steps: {[s.name for s in self.steps]}"
        )

    def to_dict(self):
        return {
            "config": self.config.to_dict(),
            "documents_in": self.documents_in,
            "documents_out": self.documents_out,
            "chars_in": self.chars_in,
            "chars_out": self.chars_out,
            "steps": [
                {**dataclasses.asdict(stats), "removed": stats.removed}
                for stats in self.steps
            ],
        }

    def save(self, path):
        """Write the report as JSON to `path` (atomically)."""
        atomic_write_json(path, self.to_dict())

    def __str__(self):
        header = ("step", "docs in", "docs out", "removed", "changed", "chars in", "chars out")
        rows = [
            (
                s.name,
                f"{s.documents_in:,}",
                f"{s.documents_out:,}",
                f"{s.removed:,}",
                f"{s.changed:,}",
                f"{s.chars_in:,}",
                f"{s.chars_out:,}",
            )
            for s in self.steps
        ]
        widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
        lines = []
        for row in [header] + rows:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells))
        lines.insert(1, "-" * len(lines[0]))
        for stats in self.steps:
            if stats.details:
                lines.append(f"{stats.name}: {_format_details(stats.details)}")
        return "\n".join(lines)


def _format_details(details):
    parts = []
    for key, value in details.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:,}" for k, v in sorted(value.items(), key=lambda i: -i[1]))
            parts.append(f"{key} ({value})")
        else:
            parts.append(f"{key} {value:,}")
    return "; ".join(parts)


def clean_documents(documents, config=None, *, stream=False):
    """Normalize, filter and deduplicate documents.

    Args:
        documents: an iterable of strings.
        config: a `CleaningConfig`. Defaults to `CleaningConfig()`.
        stream: return an iterator instead of a list, so a large corpus is
            never held in memory; the report fills in as the iterator is
            consumed. Defaults to `False`.

    Returns:
        A tuple `(documents, report)`: the kept documents (a list, or an
        iterator with `stream=True`) and a `CleaningReport`.

    Example:

    >>> docs, report = kerasllm.data.clean_documents(
    ...     kerasllm.data.builtin_corpus(split="train"))
    >>> print(report)
    >>> report.save("cleaning_report.json")
    """
    config = config or CleaningConfig()
    if not isinstance(config, CleaningConfig):
        raise TypeError(
            "`config` must be a CleaningConfig. "
            f"Received: config={type(config).__name__}"
        )
    steps = _build_steps(config)
    report = CleaningReport(config=config, steps=[stats for stats, _ in steps])
    cleaned = _run_steps(documents, steps)
    return (cleaned, report) if stream else (list(cleaned), report)


def _run_steps(documents, steps):
    for text in documents:
        for stats, apply in steps:
            stats.documents_in += 1
            stats.chars_in += len(text)
            result = apply(text)
            if result is None:
                break
            stats.documents_out += 1
            stats.chars_out += len(result)
            stats.changed += result != text
            text = result
        else:
            yield text


def _build_steps(config):
    steps = []
    if config.normalization:
        form = config.normalization
        steps.append((f"unicode_{form.lower()}", lambda text: _normalize(text, form)))
    if config.strip_control_characters:
        steps.append(("control_characters", strip_control_characters))
    if config.normalize_whitespace:
        blank = config.max_blank_lines
        steps.append(("whitespace", lambda text: normalize_whitespace(text, blank)))
    steps.append(("length", lambda text: _length_filter(text, config)))
    if config.max_repeated_line_fraction is not None:
        limit = config.max_repeated_line_fraction
        steps.append(
            ("repeated_lines", lambda text: text if repeated_line_fraction(text) <= limit else None)
        )
    steps.extend(_filter_steps(config))
    if config.exact_dedup:
        steps.append(("exact_dedup", _ExactDedup()))
    if config.near_dedup:
        steps.append(("near_dedup", _NearDedup(config)))
    built = []
    for name, apply in steps:
        stats = StepStats(name)
        if hasattr(apply, "details"):
            stats.details = apply.details  # the filter counts into the report
        built.append((stats, apply))
    return built


def _filter_steps(config):
    """The opt-in content filters (kerasllm.data.filters), in pipeline order."""
    from kerasllm.data import filters

    steps = []
    if config.pii:
        steps.append(("pii", filters.PiiScrubber()))
    if config.languages:
        steps.append(
            ("language", filters.LanguageFilter(config.languages, config.language_threshold))
        )
    if config.quality:
        steps.append(
            (
                "quality",
                filters.QualityFilter(
                    min_chars=config.quality_min_chars,
                    min_mean_line_chars=config.quality_min_mean_line_chars,
                    max_symbol_word_ratio=config.quality_max_symbol_word_ratio,
                    min_terminal_punctuation=config.quality_min_terminal_punctuation,
                    lorem_ipsum=config.quality_lorem_ipsum,
                ),
            )
        )
    if config.inappropriate:
        words = list(filters.DEFAULT_INAPPROPRIATE_WORDS)
        if config.inappropriate_words:
            words += filters.load_word_list(config.inappropriate_words)
        steps.append(
            ("inappropriate", filters.InappropriateContent(words, config.inappropriate_action))
        )
    return steps


def _normalize(text, form):
    # is_normalized is a fast scan; most text is already NFC.
    if unicodedata.is_normalized(form, text):
        return text
    return unicodedata.normalize(form, text)


def strip_control_characters(text):
    """CR LF and lone CR become LF; other C0/C1 control characters go.

    Tab and newline are kept. Format characters (zero-width joiner, etc.) are
    not control characters and are kept: emoji sequences need them.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def normalize_whitespace(text, max_blank_lines=2):
    """Trim spaces/tabs at line ends and long runs of blank lines.

    Only ASCII spaces and tabs at the end of a line are removed: leading
    indentation (code) and U+3000 ideographic spaces (Japanese) are kept.
    Leading blank lines are dropped and the text ends with at most one
    newline.
    """
    text = _TRAILING_SPACE.sub("", text)
    newlines = max_blank_lines + 1
    text = re.sub("\n{%d,}" % (newlines + 1), "\n" * newlines, text)
    text = text.lstrip("\n")
    if text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n"
    return text


def repeated_line_fraction(text):
    """Fraction of non-blank characters in lines that repeat an earlier line.

    Lines are compared after stripping surrounding whitespace; blank lines do
    not count.
    """
    seen = set()
    total = repeated = 0
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        total += len(line)
        if line in seen:
            repeated += len(line)
        else:
            seen.add(line)
    return repeated / total if total else 0.0


def _length_filter(text, config):
    if len(text) < config.min_chars:
        return None
    if config.max_chars is not None and len(text) > config.max_chars:
        return None
    return text


class _ExactDedup:
    """Keep the first of identical documents (16-byte BLAKE2 digests in a set)."""

    def __init__(self):
        self._seen = set()

    def __call__(self, text):
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in self._seen:
            return None
        self._seen.add(digest)
        return text


class _NearDedup:
    """Keep a document unless an earlier kept one is a near duplicate.

    LSH gives candidates in sub-linear time; each candidate is confirmed with
    the MinHash Jaccard estimate, so LSH's false positives are not dropped.
    """

    def __init__(self, config):
        from datasketch import MinHashLSH

        self._config = config
        # The index only proposes candidates; each is checked against the real
        # threshold below. Capping the index's threshold keeps datasketch's
        # band/row search valid (it needs 2+ bands) for thresholds near 1.
        self._lsh = MinHashLSH(
            threshold=min(config.near_dedup_threshold, 0.85), num_perm=config.num_perm
        )
        self._minhashes = {}

    def __call__(self, text):
        minhash = document_minhash(text, self._config.num_perm, self._config.shingle_size)
        for key in self._lsh.query(minhash):
            if minhash.jaccard(self._minhashes[key]) >= self._config.near_dedup_threshold:
                return None
        key = len(self._minhashes)
        self._lsh.insert(key, minhash)
        self._minhashes[key] = minhash
        return text


def _identity(value):
    return value


def shingle_hashes(text, shingle_size=5):
    """Distinct 32-bit hashes of the character n-grams of `text` (numpy).

    Characters, not words: Japanese has no spaces between words. The hash is a
    polynomial over code points, vectorized, so a 1 MB document takes
    milliseconds instead of a Python loop over a million shingles.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) <= shingle_size:
        windows = 1
        shingle_size = len(codes)
    else:
        windows = len(codes) - shingle_size + 1
    hashes = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrap-around is the hash
        for i in range(shingle_size):
            hashes = hashes * np.uint64(0x100000001B3) + codes[i : i + windows]
        hashes ^= hashes >> np.uint64(29)
        hashes *= np.uint64(0xBF58476D1CE4E5B9)
        hashes ^= hashes >> np.uint64(32)
    return np.unique((hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))


def document_minhash(text, num_perm=128, shingle_size=5):
    """A `datasketch.MinHash` of the character shingles of `text`."""
    from datasketch import MinHash

    minhash = MinHash(num_perm=num_perm, hashfunc=_identity)
    hashes = shingle_hashes(text, shingle_size).tolist()
    # Bounded batches: update_batch makes a (batch, num_perm) array.
    for start in range(0, len(hashes), 8192):
        minhash.update_batch(hashes[start : start + 8192])
    return minhash
