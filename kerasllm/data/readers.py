"""Corpus readers: text files, directories, glob patterns, JSONL and gzip.

Everything here streams. Files are read in 1 MiB chunks and decoded
incrementally, so a document is the largest thing ever held in memory (a whole
file for plain text, one line's field for JSONL); the corpus never is.

Decoding is strict UTF-8 by default: an undecodable byte stops the read with an
error that names the file and the byte offset, because silently replacing bytes
would train the tokenizer on corrupted text. `errors="replace"` opts in to
U+FFFD replacement.
"""

import codecs
import fnmatch
import glob
import gzip
import json
import os
import zlib

_CHUNK_BYTES = 1 << 20
_DECODE_ERRORS = ("strict", "replace", "ignore")
TEXT_UNITS = ("file", "paragraph", "line")
HTML_MODES = ("auto", "always", "never")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


class CorpusError(ValueError):
    """A corpus that cannot be read: binary, undecodable, malformed or empty.

    Attributes:
        path: the file at fault, or `None` when the error is about the whole
            corpus (e.g. empty).
        offset: the byte offset in the (decompressed) file, when known.
    """

    def __init__(self, message, *, path=None, offset=None):
        super().__init__(message)
        self.path = path
        self.offset = offset


def corpus_files(paths, *, pattern=None, recursive=True):
    """Resolve corpus paths (files, directories, glob patterns) to a file list.

    The order is deterministic: the arguments in the order given, each
    directory walked in sorted order. Hidden files and directories (names
    starting with ".") inside a directory are skipped; a file named explicitly
    is always read.

    Args:
        paths: a path or a list of paths. Each is a file, a directory, or a
            glob pattern (`"data/*.txt"`, `"data/**/*.jsonl"`).
        pattern: a file-name pattern applied inside directories, e.g.
            `"*.txt"`. Defaults to `None` (every file).
        recursive: whether directories are walked recursively and `**` in
            glob patterns matches nested directories. Defaults to `True`.

    Returns:
        A list of file paths (strings), without duplicates.

    Raises:
        FileNotFoundError: a path does not exist or a pattern matches nothing.
        CorpusError: the paths resolve to no file at all.
    """
    path_list = _as_path_list(paths)
    files = []
    for path in path_list:
        if os.path.isfile(path):
            files.append(path)
        elif os.path.isdir(path):
            files.extend(_walk(path, pattern=pattern, recursive=recursive))
        elif glob.has_magic(path):
            matches = sorted(glob.glob(path, recursive=recursive))
            if not matches:
                raise FileNotFoundError(
                    f"No file matches the corpus pattern. Received: {path!r}"
                )
            for match in matches:
                if os.path.isdir(match):
                    files.extend(
                        _walk(match, pattern=pattern, recursive=recursive)
                    )
                else:
                    files.append(match)
        else:
            raise FileNotFoundError(
                f"Corpus path does not exist. Received: {path!r}"
            )
    files = list(dict.fromkeys(files))
    if not files:
        raise CorpusError(
            f"The corpus is empty: no file found. Received: paths={path_list!r}"
            + (f", pattern={pattern!r}" if pattern else "")
        )
    return files


def read_documents(
    paths,
    *,
    pattern=None,
    recursive=True,
    jsonl_field="text",
    errors="strict",
    text_unit="file",
    html="auto",
):
    """Stream the documents of a corpus as strings.

    A plain text file is one document (or one per paragraph / line, see
    `text_unit`). A `.jsonl` file holds one JSON object per line and the
    document is its `jsonl_field`. An `.html`, `.htm` or `.xhtml` file is
    turned into its readable text (`html_to_text`: scripts, styles and
    navigation dropped, paragraphs kept, `<pre>` verbatim). A `.gz` suffix (`.txt.gz`, `.jsonl.gz`) is
    decompressed on the fly. A leading UTF-8 byte-order mark is dropped; the
    text is otherwise returned exactly as stored (no newline translation).
    Empty documents are skipped.

    Paths are checked when this function is called, so a missing path fails
    at once; files are read as the iterator is consumed.

    Args:
        paths: a path or a list of paths: files, directories, glob patterns.
            See `corpus_files`.
        pattern: a file-name pattern applied inside directories, e.g.
            `"*.py"`. Defaults to `None` (every file).
        recursive: walk directories recursively. Defaults to `True`.
        jsonl_field: the field of each JSONL object that holds the text.
            Defaults to `"text"`.
        errors: what to do with bytes that are not valid UTF-8: `"strict"`
            raises a `CorpusError` naming the file and byte offset,
            `"replace"` substitutes U+FFFD, `"ignore"` drops them. Defaults to
            `"strict"`.
        text_unit: how a plain text file is split into documents: `"file"`
            (the whole file), `"paragraph"` (blocks separated by blank lines)
            or `"line"`; for an HTML file it applies to the extracted text.
            Defaults to `"file"`.
        html: `"auto"` extracts the text of files named `.html`, `.htm`,
            `.xhtml`; `"always"` treats every document as HTML (JSONL fields
            holding HTML, pages saved without a suffix); `"never"` reads the
            markup as text. Defaults to `"auto"`.

    Returns:
        An iterator of non-empty strings.

    Raises:
        FileNotFoundError: a path does not exist.
        CorpusError: a file is binary or undecodable, a JSONL line is
            malformed, or the corpus holds no document.

    Example:

    >>> docs = kerasllm.data.read_documents("corpus/", pattern="*.txt")
    >>> docs = kerasllm.data.read_documents(["a.jsonl.gz"], jsonl_field="body")
    >>> next(iter(docs))[:20]
    """
    if errors not in _DECODE_ERRORS:
        raise ValueError(
            f"`errors` must be one of {_DECODE_ERRORS}. Received: errors={errors!r}"
        )
    if text_unit not in TEXT_UNITS:
        raise ValueError(
            f"`text_unit` must be one of {TEXT_UNITS}. "
            f"Received: text_unit={text_unit!r}"
        )
    if html not in HTML_MODES:
        raise ValueError(f"`html` must be one of {HTML_MODES}. Received: html={html!r}")
    files = corpus_files(paths, pattern=pattern, recursive=recursive)
    return _iter_corpus(files, jsonl_field, errors, text_unit, html)


def _iter_corpus(files, jsonl_field, errors, text_unit, html):
    count = 0
    for path in files:
        for document in _read_file(path, jsonl_field, errors, text_unit, html):
            count += 1
            yield document
    if count == 0:
        shown = files if len(files) <= 5 else files[:5] + ["..."]
        raise CorpusError(
            f"The corpus is empty: {len(files)} file(s) hold no text. "
            f"Received: files={shown!r}"
        )


def _read_file(path, jsonl_field, errors, text_unit, html):
    from kerasllm.data.html import html_to_text, is_html_path

    name = path[:-3] if path.endswith(".gz") else path
    with _open_binary(path) as raw:
        chunks = _decoded_chunks(raw, path, errors)
        if name.endswith(_JSONL_SUFFIXES):
            documents = _jsonl_documents(chunks, path, jsonl_field)
            if html == "always":
                documents = (text for text in map(html_to_text, documents) if text)
            yield from documents
            return
        if html == "always" or (html == "auto" and is_html_path(path)):
            # Markup is parsed whole; text_unit then splits the extracted text.
            chunks = [html_to_text("".join(chunks))]
        if text_unit == "file":
            text = "".join(chunks)
            if text:
                yield text
        elif text_unit == "line":
            for line in _lines(chunks):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line
        else:
            yield from _paragraphs(_lines(chunks))


def _open_binary(path):
    if path.endswith(".gz"):
        return _GzipErrors(gzip.open(path, "rb"), path)
    return open(path, "rb")


class _GzipErrors:
    """Wrap a gzip stream so a corrupt archive names its file."""

    def __init__(self, stream, path):
        self._stream = stream
        self._path = path

    def read(self, size):
        try:
            return self._stream.read(size)
        except (OSError, EOFError, zlib.error) as error:
            raise CorpusError(
                f"Cannot decompress {self._path!r}: {error}", path=self._path
            ) from error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stream.close()


def _decoded_chunks(raw, path, errors):
    """Decode a binary stream as UTF-8 chunk by chunk, keeping byte offsets."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
    offset = 0  # bytes consumed before the current chunk
    first = True
    while True:
        chunk = raw.read(_CHUNK_BYTES)
        final = not chunk
        # A NUL byte does not occur in text (UTF-8 or JSON); it is the cheap,
        # reliable sign of a binary file (or UTF-16, which we do not guess).
        nul = chunk.find(b"\x00")
        if nul >= 0:
            raise CorpusError(
                f"{path!r} looks like a binary file (NUL byte at offset "
                f"{offset + nul}); only UTF-8 text is read. If it is UTF-16 "
                "text, convert it to UTF-8 first.",
                path=path,
                offset=offset + nul,
            )
        pending = len(decoder.getstate()[0])  # bytes held from the last chunk
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as error:
            bad = offset - pending + error.start
            raise CorpusError(
                f"Cannot decode {path!r} as UTF-8 at byte offset {bad} "
                f"({error.object[error.start:error.end]!r}: {error.reason}). "
                'Pass errors="replace" to replace undecodable bytes with U+FFFD.',
                path=path,
                offset=bad,
            ) from None
        offset += len(chunk)
        if first and text:
            text = text.removeprefix("\ufeff")
            first = False
        if text:
            yield text
        if final:
            return


def _lines(chunks):
    """Split a stream of text chunks into lines, each with its line ending."""
    rest = ""
    for chunk in chunks:
        lines = (rest + chunk).split("\n")
        rest = lines.pop()
        for line in lines:
            yield line + "\n"
    if rest:
        yield rest


def _paragraphs(lines):
    block = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block).rstrip("\r\n")
            block = []
    if block:
        yield "".join(block).rstrip("\r\n")


def _jsonl_documents(chunks, path, field):
    for number, line in enumerate(_lines(chunks), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorpusError(
                f"{path!r} line {number} is not valid JSON ({error.msg}). "
                f"Received: {line[:80]!r}",
                path=path,
            ) from None
        if not isinstance(record, dict) or field not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise CorpusError(
                f"{path!r} line {number} has no field {field!r} "
                f"(pass jsonl_field=...). Received keys: {keys!r}",
                path=path,
            )
        text = record[field]
        if not isinstance(text, str):
            raise CorpusError(
                f"{path!r} line {number}: field {field!r} must be a string. "
                f"Received: {type(text).__name__} {text!r:.80}",
                path=path,
            )
        if text:
            yield text


def _as_path_list(paths):
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    try:
        path_list = [os.fspath(path) for path in paths]
    except TypeError:
        raise TypeError(
            "`paths` must be a path or a list of paths. "
            f"Received: paths={paths!r}"
        ) from None
    if not path_list:
        raise CorpusError("The corpus is empty: no path given. Received: paths=[]")
    return path_list


def _walk(directory, *, pattern, recursive):
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(names):
            if name.startswith("."):
                continue
            if pattern is None or fnmatch.fnmatch(name, pattern):
                files.append(os.path.join(root, name))
    return files
