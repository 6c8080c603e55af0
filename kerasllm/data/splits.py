"""Train / validation / test splits of a corpus: by document, or by byte range.

Two rules, both reproducible (they depend only on the corpus's content and
order, never on a random state or the machine):

    document     each document goes to the split a SHA-256 of its text picks
                 (90/5/5), so identical copies never straddle train and val
    byte_range   the corpus, read as one stream of bytes in file order, is cut
                 at 90% and 95%: train is the first 90%, val the next 5%, test
                 the last 5%; each cut moves forward to the next line start
                 or document end (within 4 KiB and 1% of the corpus), else to a character
                 boundary, so no byte is in two splits

`split_rule(spec)` picks one for a corpus of files: `document` when the corpus
has at least `MIN_DOCUMENTS` documents and every split receives one, else
`byte_range`. So one text file (one document, whatever its size) still gets a
validation split, and a corpus of many files keeps the document split.
"""

import functools
import hashlib
import json

SPLITS = ("train", "val", "test")
# Percent of keys in each split, in order; the rest of 100 goes to the last.
SPLIT_PERCENT = {"train": 90, "val": 5, "test": 5}
SPLIT_RULES = ("document", "byte_range")
# Below this many documents, a hash split gives val and test a handful of
# documents at best (5% of 100 is 5), so the corpus is cut by bytes instead.
MIN_DOCUMENTS = 100
# How far past a cut point we look for the start of a line.
_SNAP_BYTES = 4096


def split_of(key):
    """The split ("train", "val" or "test") a key falls in, 90/5/5.

    The key is hashed with SHA-256, so the assignment is the same on every
    machine and in every Python process (unlike `hash()`).

    Args:
        key: a string: a relative file path, or a document's text.

    Returns:
        `"train"`, `"val"` or `"test"`.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    for split in SPLITS:
        if bucket < SPLIT_PERCENT[split]:
            return split
        bucket -= SPLIT_PERCENT[split]
    return SPLITS[-1]


def split_rule(spec, **reader_kwargs):
    """Which split rule a corpus of files gets, and why.

    Reads the corpus once (stopping early once it has `MIN_DOCUMENTS`
    documents and every split has one). The answer is remembered per corpus
    state (paths, sizes, modification times), so the train, val and test
    readers of one run agree without reading it again.

    Args:
        spec: a path or list of paths (files, directories, globs).
        **reader_kwargs: passed to `read_documents` (`text_unit`, ...).

    Returns:
        A dict: `rule` (`"document"` or `"byte_range"`), `documents` (the
        count, or at least `MIN_DOCUMENTS`), `bytes` (UTF-8 bytes of the whole
        corpus; only for `byte_range`) and `note` (one sentence for logs and
        run reports).
    """
    from kerasllm.data.token_cache import corpus_key

    key = json.dumps(corpus_key(spec, split="all", **reader_kwargs), sort_keys=True, default=str)
    return dict(_split_rule(key, _freeze(spec), _freeze(reader_kwargs)))


@functools.lru_cache(maxsize=64)
def _split_rule(key, spec, reader_kwargs):
    from kerasllm.data.readers import read_documents

    spec = list(spec) if isinstance(spec, tuple) else spec
    counts = dict.fromkeys(SPLITS, 0)
    documents = num_bytes = 0
    for document in read_documents(spec, **dict(reader_kwargs)):
        documents += 1
        num_bytes += len(document.encode("utf-8"))
        counts[split_of(document)] += 1
        if documents >= MIN_DOCUMENTS and all(counts.values()):
            return tuple(
                {
                    "rule": "document",
                    "documents": documents,
                    "bytes": None,
                    "note": (
                        f"split by document (at least {MIN_DOCUMENTS} documents): "
                        "each goes to train/val/test by a hash of its text, 90/5/5"
                    ),
                }.items()
            )
    why = (
        f"only {documents} document(s)"
        if documents < MIN_DOCUMENTS
        else "a document split would leave a split empty"
    )
    return tuple(
        {
            "rule": "byte_range",
            "documents": documents,
            "bytes": num_bytes,
            "note": (
                f"split by byte range ({why}): train is the first 90% of the "
                f"corpus's {num_bytes:,} bytes, val the next 5%, test the last 5%; "
                "set text_unit to paragraph or line, or name validation_corpus, "
                "for another split"
            ),
        }.items()
    )


def byte_range_split(documents, split, total_bytes):
    """The pieces of `documents` that fall in `split`'s contiguous byte range.

    The stream of documents is read as one sequence of `total_bytes` UTF-8
    bytes and cut at 90% and 95% (see the module docstring). A document that
    straddles a cut is split there, each part going to its own split.

    Args:
        documents: an iterable of strings, the same as when `total_bytes`
            was counted.
        split: `"train"`, `"val"` or `"test"`.
        total_bytes: the UTF-8 bytes of all the documents.

    Returns:
        An iterator of non-empty strings.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
    targets = []
    cumulative = 0
    for name in SPLITS[:-1]:
        cumulative += SPLIT_PERCENT[name]
        targets.append(total_bytes * cumulative // 100)
    # Cuts move at most 1% of the corpus, so a small split is never swallowed.
    snap = max(1, min(_SNAP_BYTES, total_bytes // 100))
    index = SPLITS.index(split)
    # The split owns [cut(index - 1), cut(index)); cuts are found lazily, in
    # the document where each target byte falls.
    start_target = targets[index - 1] if index > 0 else None
    end_target = targets[index] if index < len(targets) else None
    offset = 0  # bytes before the current document
    for document in documents:
        encoded = document.encode("utf-8")
        end_of_document = offset + len(encoded)
        start = 0 if start_target is None else _cut(encoded, offset, start_target, snap)
        end = len(encoded) if end_target is None else _cut(encoded, offset, end_target, snap)
        if start < end:
            yield encoded[start:end].decode("utf-8")
        offset = end_of_document
        if end_target is not None and offset > end_target:
            return


def _cut(encoded, offset, target, snap):
    """Where, in this document's bytes, the cut at corpus byte `target` falls."""
    local = target - offset
    if local <= 0:
        return 0
    if local >= len(encoded):
        return len(encoded)
    newline = encoded.find(b"\n", local - 1, local - 1 + snap)
    if newline >= 0:
        return newline + 1
    if len(encoded) - local <= snap:
        return len(encoded)  # the document's end is near: cut between documents
    while local < len(encoded) and encoded[local] & 0xC0 == 0x80:
        local += 1  # a UTF-8 continuation byte: move to the character's end
    return local


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
