"""A tokenized corpus on disk: one flat token array, memory-mapped.

Tokenizing is the slow part of the data path, so it happens once. The corpus
is tokenized document by document, an end-of-text id follows each document,
and all ids go into one flat `.npy` array. Training then memory-maps it
(`lm_dataset` slices windows out of it), so later epochs and later runs read
ids straight from the page cache.

A cache directory holds two files:

    tokens.npy        the ids, uint16 (vocabulary <= 65536) or uint32
    token_cache.json  num_tokens, num_documents, num_bytes (UTF-8 bytes of the
                      source text, for bits-per-byte), dtype, tokenizer and
                      corpus fingerprints, build time

The JSON is written last and removed first when a cache is rebuilt, so a
directory with the JSON always holds a complete, matching token array.
"""

import hashlib
import io
import json
import os
import sys
import tempfile
import time

import numpy as np

from kerasllm.data.atomic import atomic_path, atomic_write_json

TOKENS_FILE = "tokens.npy"
METADATA_FILE = "token_cache.json"
FORMAT_VERSION = 1
_PROBE_TEXT = "The quick brown fox.\n日本語のテキスト、絵文字🙂 e\u0301\t  def f(x):\n"


class TokenCache:
    """A memory-mapped array of token ids, with what produced it.

    Build one with `TokenCache.build` (always tokenizes) or
    `TokenCache.get_or_build` (reuses a cache made by the same tokenizer from
    the same corpus), open an existing one with `TokenCache.open`.

    Attributes:
        directory: the cache directory.
        tokens: the ids, a read-only `np.memmap` of shape `(num_tokens,)`.
        metadata: the dict stored in `token_cache.json`.

    Example:

    >>> tokenizer = kerasllm.tokenizers.load("tokenizer/")
    >>> cache = kerasllm.data.TokenCache.get_or_build(
    ...     "python-stdlib", tokenizer, "cache/stdlib-train", split="train")
    >>> cache.num_tokens, cache.bytes_per_token
    >>> dataset = kerasllm.data.lm_dataset(cache, context_length=256, batch_size=16)
    """

    def __init__(self, directory, tokens, metadata):
        self.directory = os.fspath(directory)
        self.tokens = tokens
        self.metadata = metadata

    @property
    def num_tokens(self):
        return self.metadata["num_tokens"]

    @property
    def num_documents(self):
        return self.metadata["num_documents"]

    @property
    def num_bytes(self):
        """UTF-8 bytes of the text that was tokenized."""
        return self.metadata["num_bytes"]

    @property
    def bytes_per_token(self):
        """Source bytes per token: converts a loss per token to bits per byte.

        bits_per_byte = loss_in_nats_per_token / ln(2) / bytes_per_token.
        """
        return self.num_bytes / self.num_tokens

    @property
    def fingerprint(self):
        return self.metadata.get("fingerprint")

    @property
    def end_token_id(self):
        return self.metadata["end_token_id"]

    @property
    def vocabulary_size(self):
        return self.metadata["vocabulary_size"]

    def __len__(self):
        return self.num_tokens

    def __repr__(self):
        return (
            f"TokenCache({self.directory!r}, num_tokens={self.num_tokens:,}, "
            f"num_documents={self.num_documents:,}, dtype={self.tokens.dtype})"
        )

    @classmethod
    def open(cls, directory):
        """Open a cache directory; the ids are memory-mapped, not read.

        Args:
            directory: a directory written by `TokenCache.build`.

        Returns:
            A `TokenCache`.

        Raises:
            FileNotFoundError: the directory holds no complete cache.
            ValueError: the token array does not match its metadata.
        """
        directory = os.fspath(directory)
        metadata_path = os.path.join(directory, METADATA_FILE)
        tokens_path = os.path.join(directory, TOKENS_FILE)
        if not os.path.exists(metadata_path) or not os.path.exists(tokens_path):
            raise FileNotFoundError(
                f"No token cache in {directory!r}: expected {METADATA_FILE} and "
                f"{TOKENS_FILE} (build one with TokenCache.build)."
            )
        with open(metadata_path, encoding="utf-8") as f:
            metadata = json.load(f)
        tokens = np.load(tokens_path, mmap_mode="r")
        if tokens.shape != (metadata["num_tokens"],) or tokens.dtype != np.dtype(
            metadata["dtype"]
        ):
            raise ValueError(
                f"Token cache {directory!r} is inconsistent: {TOKENS_FILE} has "
                f"shape {tokens.shape} and dtype {tokens.dtype}, but "
                f"{METADATA_FILE} says ({metadata['num_tokens']},) and "
                f"{metadata['dtype']}. Rebuild it."
            )
        return cls(directory, tokens, metadata)

    @classmethod
    def build(
        cls,
        documents,
        tokenizer,
        directory,
        *,
        append_eot=True,
        show_progress=True,
        batch_size=256,
        fingerprint=None,
        corpus=None,
    ):
        """Tokenize a stream of documents into a cache directory.

        Documents are encoded `batch_size` at a time with
        `tokenizer.encode_batch`, each followed by `tokenizer.end_token_id`,
        and streamed to disk, so memory stays flat however large the corpus.
        The token array and the metadata are written atomically: if anything
        fails (an unreadable file in the corpus, an interrupt), the directory
        is left without a cache, never with half of one.

        Args:
            documents: an iterable of strings.
            tokenizer: an object with `encode_batch(list[str]) ->
                list[list[int]]`, `end_token_id` and `vocabulary_size` (every
                `kerasllm.tokenizers` tokenizer).
            directory: where to write; created if needed. An existing cache
                there is replaced.
            append_eot: append the end-of-text id after each document, so the
                model learns where documents end. Defaults to `True`.
            show_progress: show a tqdm progress bar (on stderr). Defaults to
                `True`.
            batch_size: documents per `encode_batch` call. Defaults to `256`.
            fingerprint: a string stored in the metadata, compared by
                `get_or_build`. Defaults to `None`.
            corpus: a JSON-able description of the corpus, stored in the
                metadata for the record. Defaults to `None`.

        Returns:
            The `TokenCache`, opened.
        """
        from tqdm.auto import tqdm

        directory = os.fspath(directory)
        vocabulary_size = int(tokenizer.vocabulary_size)
        end_token_id = int(tokenizer.end_token_id) if append_eot else None
        dtype = np.dtype(np.uint16 if vocabulary_size <= 1 << 16 else np.uint32)
        # An older cache here stops being valid the moment we start writing.
        _remove(os.path.join(directory, METADATA_FILE))

        start = time.perf_counter()
        counts = {"num_tokens": 0, "num_documents": 0, "num_bytes": 0, "num_chars": 0}
        progress = tqdm(
            desc="tokenizing",
            unit="B",
            unit_scale=True,
            disable=not show_progress,
            file=sys.stderr,
        )
        with progress, atomic_path(os.path.join(directory, TOKENS_FILE)) as tmp:
            with open(tmp, "wb") as f:
                header_size = _write_npy_header(f, dtype, 0)
                for batch in _batched(documents, batch_size):
                    ids = _encode(tokenizer, batch, end_token_id, vocabulary_size, dtype)
                    ids.tofile(f)
                    num_bytes = sum(len(doc.encode("utf-8")) for doc in batch)
                    counts["num_tokens"] += len(ids)
                    counts["num_documents"] += len(batch)
                    counts["num_bytes"] += num_bytes
                    counts["num_chars"] += sum(len(doc) for doc in batch)
                    progress.update(num_bytes)
                    progress.set_postfix(tokens=f"{counts['num_tokens']:,}", refresh=False)
                if counts["num_documents"] == 0:
                    raise ValueError(
                        "No documents to tokenize: the document stream was empty. "
                        f"Received: directory={directory!r}"
                    )
                # Now that the length is known, fill in the real header. Its
                # size does not change: numpy pads the shape field so that an
                # array can grow in place.
                f.seek(0)
                if _write_npy_header(f, dtype, counts["num_tokens"]) != header_size:
                    raise RuntimeError("numpy .npy header size changed; cannot finish.")
        seconds = time.perf_counter() - start
        metadata = {
            "format": FORMAT_VERSION,
            **counts,
            "dtype": dtype.name,
            "vocabulary_size": vocabulary_size,
            "end_token_id": end_token_id,
            "append_eot": append_eot,
            "fingerprint": fingerprint,
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
            "corpus": corpus,
            "seconds": round(seconds, 3),
            "bytes_per_second": round(counts["num_bytes"] / max(seconds, 1e-9)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(os.path.join(directory, METADATA_FILE), metadata)
        return cls.open(directory)

    @classmethod
    def get_or_build(
        cls,
        corpus,
        tokenizer,
        directory,
        *,
        split="train",
        cleaning=None,
        documents=None,
        append_eot=True,
        show_progress=True,
        **reader_kwargs,
    ):
        """Open the cache in `directory` if it matches, else build it.

        The cache matches when its fingerprint does: a hash of the tokenizer
        (its files), the corpus (a built-in corpus's name and Python version,
        or each file's path, size and modification time), the split, the
        cleaning config and `append_eot`. So a second run with the same
        tokenizer and corpus opens the memory map at once, and changing any of
        them rebuilds.

        Args:
            corpus: a corpus spec (`"python-stdlib"`, a path or a list of
                paths; see `corpus_documents`). With `documents`, any string
                that names those documents (it goes into the fingerprint).
            tokenizer: see `TokenCache.build`.
            directory: the cache directory.
            split: `"train"`, `"val"`, `"test"` or `"all"`. Defaults to
                `"train"`.
            cleaning: a `CleaningConfig` to clean the documents with before
                tokenizing (the report is saved as `cleaning_report.json`), or
                `None`. Defaults to `None`.
            documents: an iterable of strings to tokenize instead of reading
                `corpus`. Defaults to `None`.
            append_eot: see `TokenCache.build`. Defaults to `True`.
            show_progress: see `TokenCache.build`. Defaults to `True`.
            **reader_kwargs: passed to `read_documents`.

        Returns:
            A `TokenCache`.
        """
        from kerasllm.data.builtin import corpus_documents

        key = corpus_key(corpus, split=split, documents=documents, **reader_kwargs)
        fingerprint = _hash_json(
            {
                "tokenizer": tokenizer_fingerprint(tokenizer),
                "corpus": key,
                "cleaning": cleaning.to_dict() if cleaning else None,
                "append_eot": append_eot,
                "format": FORMAT_VERSION,
            }
        )
        try:
            cache = cls.open(directory)
        except (FileNotFoundError, ValueError):
            cache = None
        if cache is not None and cache.fingerprint == fingerprint:
            return cache

        if documents is None:
            documents = corpus_documents(corpus, split, **reader_kwargs)
        report = None
        if cleaning is not None:
            from kerasllm.data.cleaning import clean_documents

            documents, report = clean_documents(documents, cleaning, stream=True)
        cache = cls.build(
            documents,
            tokenizer,
            directory,
            append_eot=append_eot,
            show_progress=show_progress,
            fingerprint=fingerprint,
            corpus=key,
        )
        if report is not None:
            report.save(os.path.join(directory, "cleaning_report.json"))
        return cache


def corpus_key(corpus, *, split="train", documents=None, **reader_kwargs):
    """A JSON-able description of a corpus that changes when its content may.

    Built-in corpora are identified by name and version (the Python version
    for `python-stdlib`); files by path, size and modification time, which is
    cheap and catches edits without reading the files.
    """
    from kerasllm.data.builtin import builtin_corpus_version, is_builtin
    from kerasllm.data.readers import corpus_files

    if documents is not None:
        if not isinstance(corpus, str):
            raise TypeError(
                "With `documents`, `corpus` must be a string naming them (it "
                f"goes into the cache fingerprint). Received: corpus={corpus!r}"
            )
        return {"name": corpus, "split": split}
    if is_builtin(corpus):
        return {
            "builtin": corpus,
            "version": builtin_corpus_version(corpus),
            "split": split,
        }
    reader_keys = ("pattern", "recursive")
    files = corpus_files(corpus, **{k: v for k, v in reader_kwargs.items() if k in reader_keys})
    stats = []
    for path in files:
        status = os.stat(path)
        stats.append([os.path.abspath(path), status.st_size, status.st_mtime_ns])
    return {
        "files": stats,
        "split": split,
        # Version of the rules that pick a split's documents (splits.py).
        "split_rules": 2,
        "reader": {k: reader_kwargs[k] for k in sorted(reader_kwargs)},
    }


def tokenizer_fingerprint(tokenizer):
    """A hash that identifies a tokenizer's behaviour.

    Uses, in order: the tokenizer's own `fingerprint` (attribute or method);
    a hash of the files in its `directory` / `path`; a hash of the files its
    `save(directory)` writes; or, for a tokenizer with none of these, a
    hash of its class, vocabulary size, end-of-text id and the ids it gives a
    fixed multilingual probe text.
    """
    own = getattr(tokenizer, "fingerprint", None)
    if callable(own):
        own = own()
    if isinstance(own, str):
        return own
    for attribute in ("directory", "path"):
        location = getattr(tokenizer, attribute, None)
        if isinstance(location, (str, os.PathLike)) and os.path.isdir(location):
            return _hash_directory(location)
    if callable(getattr(tokenizer, "save", None)):
        # The files the tokenizer writes are what defines it.
        with tempfile.TemporaryDirectory() as directory:
            tokenizer.save(os.path.join(directory, "tokenizer"))
            return _hash_directory(directory)
    probe = tokenizer.encode_batch([_PROBE_TEXT])[0]
    return _hash_json(
        {
            "class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
            "vocabulary_size": int(tokenizer.vocabulary_size),
            "end_token_id": int(tokenizer.end_token_id),
            "probe": [int(i) for i in probe],
        }
    )


def _encode(tokenizer, batch, end_token_id, vocabulary_size, dtype):
    encoded = tokenizer.encode_batch(batch)
    if end_token_id is not None:
        pieces = []
        for ids in encoded:
            pieces.append(np.asarray(ids, dtype=np.int64))
            pieces.append(np.array([end_token_id], dtype=np.int64))
    else:
        pieces = [np.asarray(ids, dtype=np.int64) for ids in encoded]
    ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= vocabulary_size):
        raise ValueError(
            f"The tokenizer returned ids outside [0, {vocabulary_size}). "
            f"Received: min id {ids.min()}, max id {ids.max()}."
        )
    return ids.astype(dtype)


def _write_npy_header(f, dtype, length):
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (length,),
    }
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    f.write(buffer.getvalue())
    return len(buffer.getvalue())


def _batched(iterable, size):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _hash_json(obj):
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hash_directory(directory):
    digest = hashlib.sha256()
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, directory).encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
