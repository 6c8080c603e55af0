"""`OutputFilter`: stop a completion that says something it must not.

A list file holds one entry per line: a word or phrase (matched anywhere,
ignoring case), or `re:` and a regular expression; `#` starts a comment line.
A classifier hook (any callable `text -> bool`, e.g. a wrapper around a
`SequenceClassifier`) can flag text the list misses. A flagged completion is
cut where the match begins (or emptied, for the classifier) and reported with
`finish_reason: "content_filter"`, as the OpenAI API does.

    blocked words
    re:\\b\\d{3}-\\d{4}-\\d{4}\\b      # phone numbers
"""

import pathlib
import re


class OutputFilter:
    """Word / regex list and optional classifier over generated text.

    Args:
        patterns: a list of entries in the list file's syntax.
        classifier: a callable `text -> bool` (True: block). Defaults to none.

    Example:
    ```python
    >>> OutputFilter(["secret", "re:\\\\d{4}"]).check("the code is 1234")
    ('the code is ', True)
    ```
    """

    def __init__(self, patterns=(), classifier=None):
        self.classifier = classifier
        regexes, words = [], []
        for entry in patterns:
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            if entry.startswith("re:"):
                regexes.append(entry[3:])
            else:
                words.append(entry)
        parts = [re.escape(w) for w in words] + [f"(?:{r})" for r in regexes]
        self._pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        # A streamed piece is held back by this many characters, so a word
        # that arrives split over pieces is caught before its start is sent.
        self.holdback = max((len(w) for w in words), default=1) - 1

    @classmethod
    def from_file(cls, path, classifier=None):
        lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
        return cls(lines, classifier=classifier)

    def check(self, text):
        """`(text, flagged)`: the text cut before the first match, and whether one was found."""
        if self._pattern is not None:
            match = self._pattern.search(text)
            if match:
                return text[: match.start()], True
        if self.classifier is not None and text and self.classifier(text):
            return "", True
        return text, False
