"""The English and Japanese documentation cannot drift apart.

Every English guide `docs/X.md` has a Japanese page `docs/ja/X.md` (and
`README.md` has `README.ja.md`); each links to the other near the top, and
both show the same shell commands and Python snippets, compared after
dropping comments, blank lines and the relative prefix of links.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
JA = DOCS / "ja"

# English guides whose Japanese page is still to be written. The test fails
# when a page listed here gains its Japanese counterpart (take it off the list)
# and when a guide is missing one without being listed: the list can only shrink.
JAPANESE_PAGE_PENDING: set[str] = set()

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.S | re.M)
SHELL = {"bash", "sh", "shell", "console"}


def english_guides():
    return sorted(p.name for p in DOCS.glob("*.md"))


def pairs():
    found = [(DOCS / name, JA / name) for name in english_guides() if (JA / name).exists()]
    if (ROOT / "README.ja.md").exists():
        found.append((ROOT / "README.md", ROOT / "README.ja.md"))
    return found


def _strip_comment(line):
    """Drop a trailing `# comment` (a `#` that starts a word outside quotes)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def snippets(path):
    """The page's code blocks as (language, normalized text) pairs."""
    text = path.read_text(encoding="utf-8")
    found = []
    for language, body in FENCE.findall(text):
        language = language.lower()
        if language not in SHELL | {"python", "py"}:
            continue
        language = "bash" if language in SHELL else "python"
        lines = [_strip_comment(line) for line in body.splitlines()]
        normalized = "\n".join(line for line in lines if line.strip())
        if normalized:
            found.append((language, normalized))
    return found


def test_every_english_guide_has_a_japanese_page_or_is_listed():
    missing = {name for name in english_guides() if not (JA / name).exists()}
    assert missing == JAPANESE_PAGE_PENDING, (
        "Japanese pages: take written pages off JAPANESE_PAGE_PENDING and write "
        f"the missing ones. Missing: {sorted(missing)}; listed: {sorted(JAPANESE_PAGE_PENDING)}"
    )


def test_no_japanese_page_without_an_english_one():
    orphans = sorted(p.name for p in JA.glob("*.md") if not (DOCS / p.name).exists())
    assert not orphans, f"docs/ja pages with no English page: {orphans}"


@pytest.mark.parametrize("english, japanese", pairs(), ids=lambda p: p.name)
def test_pages_link_to_each_other_at_the_top(english, japanese):
    for page, other in ((english, japanese), (japanese, english)):
        head = "\n".join(page.read_text(encoding="utf-8").splitlines()[:6])
        target = other.name
        assert re.search(r"\]\([^)]*" + re.escape(target) + r"\)", head), (
            f"{page.relative_to(ROOT)} must link to {other.relative_to(ROOT)} in its first lines"
        )


@pytest.mark.parametrize("english, japanese", pairs(), ids=lambda p: p.name)
def test_pages_show_the_same_commands_and_snippets(english, japanese):
    en, ja = snippets(english), snippets(japanese)
    only_en = [s for s in en if s not in ja]
    only_ja = [s for s in ja if s not in en]
    assert not only_en and not only_ja, (
        f"{english.relative_to(ROOT)} and {japanese.relative_to(ROOT)} differ.\n"
        f"Only in English: {only_en}\nOnly in Japanese: {only_ja}"
    )
