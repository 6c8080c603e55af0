"""Size statistics of a document stream (what `kerasllm data stats` prints)."""


def corpus_statistics(documents, *, languages=False):
    """Count documents, characters, UTF-8 bytes and lines, in one pass.

    Args:
        documents: an iterable of strings (consumed).
        languages: also identify each document's language (py3langid) and
            report the share of characters in each. Defaults to `False`.

    Returns:
        A dict: `documents`, `chars`, `bytes`, `lines`, `min_chars`,
        `mean_chars`, `max_chars`, `non_ascii_fraction` (of characters) and
        `bytes_per_char`; with `languages=True`, `languages` too: a dict
        from ISO 639-1 code to share of characters, largest first.

    Example:

    >>> kerasllm.data.corpus_statistics(kerasllm.data.builtin_corpus())["bytes"]
    """
    count = chars = num_bytes = lines = non_ascii = 0
    shortest = longest = None
    language_chars = {}
    if languages:
        from kerasllm.data.filters import identify_language
    for document in documents:
        if languages:
            language = identify_language(document)[0]
            language_chars[language] = language_chars.get(language, 0) + len(document)
        length = len(document)
        encoded = len(document.encode("utf-8"))
        count += 1
        chars += length
        num_bytes += encoded
        lines += document.count("\n") + (not document.endswith("\n"))
        # Counted by what an ASCII encode drops: no Python loop per character.
        non_ascii += length - len(document.encode("ascii", "ignore"))
        shortest = length if shortest is None else min(shortest, length)
        longest = length if longest is None else max(longest, length)
    stats = {
        "documents": count,
        "chars": chars,
        "bytes": num_bytes,
        "lines": lines,
        "min_chars": shortest or 0,
        "mean_chars": round(chars / count, 1) if count else 0.0,
        "max_chars": longest or 0,
        "non_ascii_fraction": round(non_ascii / chars, 4) if chars else 0.0,
        "bytes_per_char": round(num_bytes / chars, 4) if chars else 0.0,
    }
    if languages:
        stats["languages"] = {
            language: round(n / chars, 4)
            for language, n in sorted(language_chars.items(), key=lambda item: -item[1])
        }
    return stats
