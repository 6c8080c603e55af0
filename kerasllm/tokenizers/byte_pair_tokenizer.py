"""`BytePairTokenizer`: byte-level BPE, in-graph and in Python, same ids.

Why not `keras_hub.tokenizers.BytePairTokenizer`? We checked it against our
files (keras-hub 0.32) and it fails both things this tokenizer must do
(Hugging Face's ids, and a SavedModel that exports):

- Its pre-tokenizer regex is fixed in the module and written with `\\p{L}`,
  `\\p{N}` and `\\s`, which RE2 and Oniguruma read differently (see
  `split_pattern.py`), and it emulates GPT-2's lookahead in a second pass;
  it cannot use our pattern, so its ids are not Hugging Face's.
- Its word cache is a `tf.lookup.experimental.MutableHashTable` written to
  during `tokenize`, which `tf.saved_model.save` cannot export
  (keras-team/keras-hub#2015).

So this module has its own in-graph BPE: text is cut into words by
character-class rules equal to the tokenizer's stored pattern
(`word_splitter.py`); frequent words are looked up in a static table of their
ids (collected when training, `word_cache.json`); the rest go through a merge
loop vectorized over all words at once. Special tokens are cut out first
(wrapped in 0xFF marks by a regex replace, then split there). Everything is
TF core ops, and every table is static, so it exports and needs no
tensorflow-text at serving time for BPE.
"""

import functools
import itertools
import json
import pathlib
import re
import types

from kerasllm.tokenizers import files
from kerasllm.tokenizers.tokenizer import Tokenizer, fingerprint_of, tf

if tf is not None:  # without TensorFlow only the Python side exists
    from kerasllm.tokenizers.word_splitter import class_table, segment_ids, split_words

# Above any merge rank: "this pair does not merge".
_NO_MERGE = 2**62


@functools.lru_cache(maxsize=1)
def bytes_to_unicode():
    """GPT-2's map from each byte to a printable character (a list of 256).

    Byte-level BPE vocabularies store tokens in this alphabet, so `vocab.json`
    and `merges.txt` stay printable, whitespace-free text.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    extra = 0
    table = {}
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[byte] for byte in range(256)]


@functools.lru_cache(maxsize=1)
def _unicode_to_byte():
    return {c: b for b, c in enumerate(bytes_to_unicode())}


def _token_to_bytes(token):
    """The raw bytes of a vocabulary token written in GPT-2's alphabet."""
    unicode_to_byte = _unicode_to_byte()
    return bytes(unicode_to_byte[c] for c in token)


def read_merges(path):
    """Read `merges.txt` as a list of `(left, right)` token pairs, in rank order."""
    merges = []
    for line in pathlib.Path(path).read_text(encoding="utf-8").split("\n"):
        if not line or line.startswith("#version"):
            continue
        try:
            left, right = line.split(" ")
        except ValueError:
            raise ValueError(
                f"{path} is damaged: expected two tokens per line. Received: "
                f"{line!r:.80}"
            ) from None
        merges.append((left, right))
    return merges


# The in-graph code below avoids `tf.boolean_mask`, ragged `tf.concat`,
# `merge_dims` and ragged factories that validate: each adds dozens of graph
# nodes or an assertion branch, and tf.data instantiates the whole map
# function again for every new iterator (every epoch, every pass), at about
# 0.25 ms per node here. Measured: the tokenizer's graph went from 1,651 nodes
# and 25 assertion branches (0.31 s per iterator) to ~500 nodes.


def _select(values, mask):
    """`tf.boolean_mask` for 1-D tensors, in four graph nodes."""
    return tf.gather(values, tf.reshape(tf.where(mask), [-1]))


def _ragged(values, row_splits):
    """A ragged tensor from splits that are valid by construction (unchecked)."""
    return tf.RaggedTensor.from_row_splits(values, row_splits, validate=False)


def _interleave(mask, if_true, if_false):
    """Rows of `if_true` where `mask`, of `if_false` elsewhere, in mask order.

    `if_true` has one row per True in `mask` and `if_false` one per False.
    """
    mask_int = tf.cast(mask, tf.int64)
    order = tf.where(
        mask,
        tf.cumsum(mask_int, exclusive=True),
        tf.reduce_sum(mask_int) + tf.cumsum(1 - mask_int, exclusive=True),
    )
    both = _ragged(
        tf.concat([if_true.values, if_false.values], axis=0),
        tf.concat(
            [if_true.row_splits, if_false.row_splits[1:] + if_true.row_splits[-1]],
            axis=0,
        ),
    )
    return tf.gather(both, order)


class BytePairTokenizer(Tokenizer):
    """Byte-level BPE whose in-graph ids equal Hugging Face `tokenizers`'.

    Usually made by `kerasllm.tokenizers.train_tokenizer(kind="bpe")` or
    `kerasllm.tokenizers.load(directory)`; construct it directly only to wrap
    files you wrote yourself.

    Special tokens that appear in text are matched as special tokens (as
    Hugging Face does), so a chat template written as text
    (`"<|im_start|>user\\n..."`) encodes to the reserved ids. Encode untrusted
    text with care: a user who types `<|endoftext|>` gets the end id.

    Args:
        directory: a tokenizer directory with `vocab.json`, `merges.txt`,
            `tokenizer.json`, `word_cache.json` and `kerasllm_tokenizer.json`.
        name: the `tf.Module` name. Defaults to `"byte_pair_tokenizer"`.

    Example:

    >>> tokenizer = kerasllm.tokenizers.load("bpe-8k/")
    >>> ids = tokenizer("print('hello')")  # in-graph, int32
    >>> tokenizer.encode("print('hello')") == ids.numpy().tolist()
    True
    >>> tokenizer.decode(ids)
    "print('hello')"
    """

    kind = "bpe"

    def __init__(self, directory, name="byte_pair_tokenizer"):
        super().__init__(name=name)
        from tokenizers import Tokenizer as HFTokenizer

        directory = pathlib.Path(directory)
        metadata = files.read_metadata(directory)
        self._metadata = json.dumps(metadata)  # a str: not tracked by tf.Module
        self._split_pattern = metadata["split_pattern"]
        self._end_token = metadata["end_token"]
        self._pad_token = metadata["pad_token"]
        try:
            hf = HFTokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as error:  # the Rust library raises plain Exception
            raise ValueError(
                f"{directory / 'tokenizer.json'} is damaged or missing ({error}). "
                "Train or copy the tokenizer again."
            ) from None
        special_tokens = {
            token: hf.token_to_id(token) for token in metadata["special_tokens"]
        }
        vocabulary = files.read_json(directory / "vocab.json")
        vocabulary.update(special_tokens)
        vocabulary_size = max(vocabulary.values()) + 1
        token_bytes = [b""] * vocabulary_size
        for token, i in vocabulary.items():
            token_bytes[i] = (
                token.encode("utf-8")
                if token in special_tokens
                else _token_to_bytes(token)
            )
        self._vocabulary_size = vocabulary_size
        self._special_tokens = special_tokens
        cache = files.read_json(directory / "word_cache.json")["words"]
        # Python-side state in a plain namespace: tf.Module would wrap lists
        # and dicts in tracking wrappers, which are slow and not for saving.
        self._py = types.SimpleNamespace(
            hf=hf,
            vocabulary=vocabulary,
            id_to_token={i: token for token, i in vocabulary.items()},
            token_bytes=token_bytes,
            cache=cache,
        )
        merges = read_merges(directory / "merges.txt")
        self._fingerprint = fingerprint_of(
            "bpe", metadata, json.dumps(sorted(vocabulary.items())), json.dumps(merges)
        )
        if tf is not None:
            self._build_tables(vocabulary, merges, cache)
            self._classes = tf.constant(class_table(metadata["split_classes"]))  # int8

    # ------------------------------------------------------------ tables

    def _build_tables(self, vocabulary, merges, cache):
        vocabulary_size = self._vocabulary_size
        self._pair_key_base = vocabulary_size
        byte_to_char = bytes_to_unicode()
        # Initial id of each byte.
        # int64 ids inside the merge loop: they are packed into int64 keys.
        self._byte_ids = tf.constant(
            [vocabulary[byte_to_char[b]] for b in range(256)], tf.int64
        )
        # (left id, right id) packed into one int64 -> merge rank; the rank's
        # result id is a gather. Ranks are what BPE compares, ids what it emits.
        left = [vocabulary[a] for a, _ in merges]
        right = [vocabulary[b] for _, b in merges]
        keys = tf.constant(left, tf.int64) * vocabulary_size + tf.constant(
            right, tf.int64
        )
        self._merge_ranks = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                keys, tf.range(len(merges), dtype=tf.int64)
            ),
            default_value=_NO_MERGE,
        )
        self._merge_results = tf.constant(
            [vocabulary[a + b] for a, b in merges], tf.int64
        )
        # Word cache: word (raw UTF-8) -> row of a ragged constant of ids.
        # Special tokens are words of the cache too: the splitter keeps a
        # special piece whole, so its one word looks up its one id.
        rows = dict(cache)
        rows.update((token, [vocabulary[token]]) for token in self._special_tokens)
        words = list(rows) or [""]
        rows = list(rows.values()) or [[]]
        self._cache_index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(words, tf.string), tf.range(len(words), dtype=tf.int64)
            ),
            default_value=-1,
        )
        self._cache_ids = tf.constant([i for row in rows for i in row], tf.int32)
        self._cache_row_splits = tf.constant(
            [0] + list(itertools.accumulate(len(row) for row in rows)), tf.int64
        )
        # Special tokens: matched first, longest first (Hugging Face matches
        # added tokens leftmost-longest; RE2 alternation is leftmost-first, so
        # ordering the literals by length gives the same matches).
        specials = sorted(self._special_tokens, key=len, reverse=True)
        self._special_pattern = "|".join(re.escape(token) for token in specials)
        self._special_tokens_tensor = tf.constant(specials or [""], tf.string)
        self._id_bytes = tf.constant(self._py.token_bytes, tf.string)

    # ------------------------------------------------------------ in-graph

    def _tokenize_strings(self, strings):
        # 1. Cut out special tokens: pieces [batch, P], special ones whole.
        pieces = self._split_special_tokens(strings)
        piece_text = pieces.flat_values
        is_special = tf.reduce_any(
            piece_text[:, tf.newaxis] == self._special_tokens_tensor, axis=1
        )
        # 2. Pre-tokenize the pieces into words: [P, W].
        words = split_words(piece_text, self._classes, keep_whole=is_special)
        # 3. Words to ids: [words, T], then [batch, T].
        word_ids = self._encode_words(words.flat_values)
        splits = tf.gather(
            tf.gather(word_ids.row_splits, words.row_splits), pieces.row_splits
        )
        return _ragged(word_ids.values, splits)

    def _split_special_tokens(self, strings):
        """Strings -> ragged pieces `[batch, P]`, each special token a piece.

        Each special token is wrapped in 0xFF bytes, then the strings are
        split at them. 0xFF never occurs in UTF-8, and invalid input is first
        made valid (bad bytes become U+FFFD, as the splitter reads them
        anyway), so only the marks are cut. Unlike `tf_text.regex_split`,
        both ops read past NUL characters. Empty pieces (between two marks)
        have no words and give no ids.
        """
        if not self._special_pattern:
            return _ragged(strings, tf.range(tf.size(strings, tf.int64) + 1))
        text = tf.strings.unicode_transcode(
            strings, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        marked = tf.strings.regex_replace(
            text, "(" + self._special_pattern + ")", b"\xff\\1\xff"
        )
        return tf.strings.split(marked, sep=b"\xff")

    def _encode_words(self, words):
        """1-D words -> ragged ids [words, None]: cached ones looked up, the rest merged."""
        index = self._cache_index.lookup(words)
        hit = index >= 0
        cache = _ragged(self._cache_ids, self._cache_row_splits)
        return _interleave(
            hit,
            tf.gather(cache, _select(index, hit)),
            self._merge(_select(words, ~hit)),
        )

    def _merge(self, words):
        """BPE over 1-D words, all at once -> ragged ids [words, None].

        Each round finds, in every word, the lowest merge rank among its
        adjacent pairs and merges the pairs of that rank, except one that
        follows another pair of that rank (they share a token: in "a a a a"
        round one merges pair 0 only, and the rest wait for later rounds,
        where "a a" is still the lowest). That gives the order of Hugging
        Face's priority queue (lowest rank, then leftmost), because a merge
        only creates pairs of higher rank.

        A word with no pair in `merges.txt` is finished: its tokens leave the
        loop (to a `TensorArray`, with the byte offset each token starts at)
        so later rounds touch only unfinished words. Most words finish in a
        few rounds, a few long ones (rules of "=" or "-") take dozens; without
        this every round would re-read all tokens. The loop ends when no
        token is left; the offsets put the finished tokens back in order.
        """
        num_words = tf.shape(words, out_type=tf.int64)[0]
        # Latin-1 reads each byte as the code point of its value: the bytes
        # of all words, flat, with the words' row splits.
        byte_splits, byte_values = tf.raw_ops.UnicodeDecode(
            input=words, input_encoding="ISO-8859-1", Tsplits=tf.int64
        )
        ids = tf.gather(self._byte_ids, byte_values)  # (n,) int64
        num_bytes = tf.shape(ids, out_type=tf.int64)[0]
        row_ids = segment_ids(byte_splits)  # (n,) word of each token
        offsets = tf.range(num_bytes)  # (n,) byte where each token starts

        def body(round_index, ids, row_ids, offsets, done_ids, done_offsets):
            left, right = ids[:-1], ids[1:]  # adjacent pairs
            pair_row = row_ids[:-1]
            ranks = self._merge_ranks.lookup(left * self._pair_key_base + right)
            ranks = tf.where(pair_row == row_ids[1:], ranks, _NO_MERGE)
            best_rank = tf.math.unsorted_segment_min(ranks, pair_row, num_words)
            # A word whose best pair does not merge (or that has one token) is done.
            finished = tf.gather(best_rank >= _NO_MERGE, row_ids)
            best = (ranks == tf.gather(best_rank, pair_row)) & (ranks < _NO_MERGE)
            # Pair i and pair i + 1 share a token: take the left one only.
            take = best & ~tf.concat([[False], best[:-1]], axis=0)
            merged = tf.gather(self._merge_results, tf.where(take, ranks, 0))
            ids = tf.concat([tf.where(take, merged, left), ids[-1:]], axis=0)
            # Drop the right half of each merged pair (`ids[:1]` keeps n == 0 valid).
            keep = tf.concat([tf.ones_like(ids[:1], tf.bool), ~take], axis=0)
            stay = keep & ~finished
            return (
                round_index + 1,
                _select(ids, stay),
                _select(row_ids, stay),
                _select(offsets, stay),
                done_ids.write(round_index, _select(ids, finished)),
                done_offsets.write(round_index, _select(offsets, finished)),
            )

        def array():
            return tf.TensorArray(
                tf.int64, size=0, dynamic_size=True, infer_shape=False,
                element_shape=tf.TensorShape([None]),
            )

        _, _, _, _, done_ids, done_offsets = tf.while_loop(
            lambda round_index, ids, *_: tf.size(ids) > 0,
            body,
            (tf.constant(0), ids, row_ids, offsets, array(), array()),
        )
        # Scatter the finished tokens to the bytes they start at; keep those.
        done_offsets = done_offsets.concat()[:, tf.newaxis]
        starts = tf.scatter_nd(
            done_offsets, tf.ones_like(done_offsets[:, 0], tf.int64), [num_bytes]
        )
        ids = tf.scatter_nd(done_offsets, done_ids.concat(), [num_bytes])
        # A word's tokens are the token starts among its bytes.
        tokens_before = tf.concat([[0], tf.cumsum(starts)], axis=0)
        return _ragged(
            tf.cast(_select(ids, starts > 0), tf.int32),
            tf.gather(tokens_before, byte_splits),
        )

    def _detokenize_ids(self, ids):
        ids = self._in_vocabulary(ids)
        return tf.strings.reduce_join(tf.gather(self._id_bytes, ids), axis=-1)

    # ------------------------------------------------------------ Python

    def _encode_batch(self, texts):
        # Hugging Face `tokenizers` (Rust, parallel): the ids the in-graph
        # tokenizer reproduces.
        encodings = self._py.hf.encode_batch(texts, add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def token_bytes(self, token_id):
        token_id = int(token_id)
        if 0 <= token_id < self._vocabulary_size:
            return self._py.token_bytes[token_id]
        return b""

    @property
    def vocabulary_size(self):
        return self._vocabulary_size

    @property
    def split_pattern(self):
        """The pre-tokenizer regex (see `kerasllm.tokenizers.split_pattern`)."""
        return self._split_pattern

    def token_to_id(self, token):
        if token not in self._py.vocabulary:
            raise KeyError(f"Token not in the vocabulary. Received: token={token!r}")
        return self._py.vocabulary[token]

    def id_to_token(self, token_id):
        token_id = self._check_id(token_id)
        if token_id not in self._py.id_to_token:
            raise KeyError(f"No token has this id. Received: token_id={token_id}")
        return self._py.id_to_token[token_id]

    def save(self, directory, overwrite=False):
        """Write the tokenizer's files to `directory`, atomically.

        Args:
            directory: the target directory.
            overwrite: replace an existing tokenizer directory there (never
                other files). Defaults to `False`.
        """
        with files.atomic_directory(
            directory, overwrite=overwrite, marker=files.METADATA_FILE
        ) as staging:
            self._py.hf.save(str(staging / "tokenizer.json"))
            self._py.hf.model.save(str(staging))  # vocab.json, merges.txt
            files.write_json(
                staging / "word_cache.json", {"words": self._py.cache}
            )
            files.write_json(staging / files.METADATA_FILE, json.loads(self._metadata))
        return directory
