"""Built-in corpora and corpus specs.

`python-stdlib` is the source of the running Python's standard library: about
12 MB of real, well-written text that is on every machine with Python, so the
demo and the tests need no download. Its test suites (`test/`, `tests/`,
`idle_test/`) are left out: they are half the bytes, full of deliberately odd
encodings, and would teach the model to write test fixtures.

Splits are by file (a file never straddles train and validation) and depend
only on the file's path relative to the standard library, so every machine with
the same Python gets the same split.
"""

import os
import sys
import sysconfig

from kerasllm.data.readers import CorpusError, read_documents
from kerasllm.data.splits import SPLITS, byte_range_split, split_of, split_rule

_STDLIB_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
)


def python_stdlib_files(split="train"):
    """The `*.py` files of the running Python's standard library in a split.

    Args:
        split: `"train"`, `"val"`, `"test"` or `"all"`. Defaults to `"train"`.

    Returns:
        A sorted list of absolute file paths.
    """
    _check_split(split)
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _STDLIB_SKIP_DIRS and not d.startswith(("config-", "."))
        )
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            if split == "all" or split_of(relative) == split:
                files.append(path)
    return files


# The Japanese HTML documentation of Debian packages: where each installs it.
DEBIAN_DOC_JA = {
    "debian-reference-ja": "/usr/share/debian-reference/*.ja.html",
    "debian-faq-ja": "/usr/share/doc/debian/FAQ/ja/*.ja.html",
    "maint-guide-ja": "/usr/share/doc/maint-guide-ja/html/*.ja.html",
    "developers-reference-ja": "/usr/share/developers-reference/ja/*.html",
}


def debian_doc_ja_files(split="train"):
    """The Japanese HTML pages of Debian's documentation packages in a split.

    The pages of whichever of `DEBIAN_DOC_JA`'s packages are installed, split
    by file like `python-stdlib` (a hash of `package/page.html`). About 4.7 MB
    of HTML in 55 pages, 1 MB of text once extracted: prose in Japanese with
    commands, configuration files and some untranslated English.

    Args:
        split: `"train"`, `"val"`, `"test"` or `"all"`. Defaults to `"train"`.

    Returns:
        A sorted list of absolute file paths.

    Raises:
        FileNotFoundError: none of the packages is installed; the message
            gives the apt-get command that installs them.
    """
    import glob

    _check_split(split)
    files = []
    for package, pattern in DEBIAN_DOC_JA.items():
        for path in sorted(glob.glob(pattern)):
            key = f"{package}/{os.path.basename(path)}"
            if split == "all" or split_of(key) == split:
                files.append(path)
    if not files and not any(glob.glob(pattern) for pattern in DEBIAN_DOC_JA.values()):
        raise FileNotFoundError(
            "The built-in corpus 'debian-doc-ja' is read from the Japanese "
            "documentation that Debian packages install, and none is installed. "
            f"Install it with: sudo apt-get install -y {' '.join(DEBIAN_DOC_JA)}"
        )
    return files


BUILTIN_CORPORA = {
    "python-stdlib": python_stdlib_files,
    "debian-doc-ja": debian_doc_ja_files,
}


def builtin_corpus(name="python-stdlib", split="train"):
    """Stream the documents of a built-in corpus, one split of it.

    Args:
        name: the corpus name; see `BUILTIN_CORPORA`. Defaults to
            `"python-stdlib"`.
        split: `"train"` (90% of files), `"val"` (5%), `"test"` (5%) or
            `"all"`. Defaults to `"train"`.

    Returns:
        An iterator of strings, one document per file.

    Example:

    >>> train = list(kerasllm.data.builtin_corpus("python-stdlib", "train"))
    >>> val = kerasllm.data.builtin_corpus(split="val")
    """
    return read_documents(builtin_corpus_files(name, split))


def builtin_corpus_files(name="python-stdlib", split="train"):
    """The files of a built-in corpus in a split (see `builtin_corpus`)."""
    if name not in BUILTIN_CORPORA:
        raise ValueError(
            f"Unknown built-in corpus. Expected one of {sorted(BUILTIN_CORPORA)}. "
            f"Received: name={name!r}"
        )
    return BUILTIN_CORPORA[name](split)


def builtin_corpus_version(name):
    """A string that changes when the built-in corpus's content may change."""
    if name == "python-stdlib":
        return f"python-{sys.version.split()[0]}"
    files = builtin_corpus_files(name, "all")
    # The installed package versions decide the content: their files' sizes
    # and modification times stand for them.
    return [[path, os.path.getsize(path), os.stat(path).st_mtime_ns] for path in files]


def is_builtin(spec):
    """Whether `spec` names a built-in corpus."""
    return isinstance(spec, str) and spec in BUILTIN_CORPORA


def corpus_documents(spec, split="train", **reader_kwargs):
    """Documents of a corpus spec: a built-in name, or a path / list of paths.

    A built-in corpus is split by file (see `builtin_corpus`). Files of your
    own are split by `split_rule`: by a hash of each document's text (90/5/5)
    when there are enough documents, so identical copies never straddle train
    and validation; otherwise by contiguous byte ranges (the first 90% of the
    bytes, the next 5%, the last 5%), so a single text file still has a
    validation split. Pass `split="all"` to read everything.

    Args:
        spec: `"python-stdlib"`, or a path or list of paths (files,
            directories, glob patterns; see `read_documents`).
        split: `"train"`, `"val"`, `"test"` or `"all"`. Defaults to `"train"`.
        **reader_kwargs: passed to `read_documents` (`pattern`, `jsonl_field`,
            `errors`, `text_unit`, ...). Not accepted for a built-in corpus.

    Returns:
        An iterator of strings. It raises `CorpusError` at its end when the
        split holds no document, naming the split and how to pick another.

    Example:

    >>> docs = kerasllm.data.corpus_documents("python-stdlib", split="val")
    >>> docs = kerasllm.data.corpus_documents(["a.txt", "b/"], split="all")
    >>> docs = kerasllm.data.corpus_documents("book.txt", split="val")  # bytes 90-95%
    """
    _check_split(split)
    if is_builtin(spec):
        if reader_kwargs:
            raise ValueError(
                f"Reader options do not apply to the built-in corpus {spec!r}. "
                f"Received: {reader_kwargs!r}"
            )
        return builtin_corpus(spec, split)
    if isinstance(spec, str) and not os.path.exists(spec) and not _looks_like_path(spec):
        raise ValueError(
            "Unknown corpus: not a built-in corpus name and not an existing "
            f"path. Built-in corpora: {sorted(BUILTIN_CORPORA)}. "
            f"Received: {spec!r}"
        )
    documents = read_documents(spec, **reader_kwargs)
    if split == "all":
        return documents
    rule = split_rule(spec, **reader_kwargs)
    if rule["rule"] == "byte_range":
        chosen = byte_range_split(documents, split, rule["bytes"])
    else:
        chosen = (doc for doc in documents if split_of(doc) == split)
    return _non_empty(chosen, spec, split, rule)


def _non_empty(documents, spec, split, rule):
    count = 0
    for document in documents:
        count += 1
        yield document
    if count == 0:
        raise CorpusError(
            f"The {split!r} split of the corpus is empty ({rule['note']}). "
            "Read another split (--split all on the command line, split='all' "
            "in Python), split the text into more documents (text_unit / "
            "--text-unit paragraph or line), or use a larger corpus. "
            f"Received: corpus={spec!r}, split={split!r}"
        )


def _looks_like_path(spec):
    return any(c in spec for c in "/\\.*?[") or spec.startswith("~")


def _check_split(split):
    if split not in SPLITS + ("all",):
        raise ValueError(
            f"`split` must be one of {SPLITS + ('all',)}. Received: split={split!r}"
        )
