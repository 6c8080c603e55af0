"""`WordSplitter`: the pre-tokenizer regex, computed without a regex engine.

`tensorflow_text.regex_split` runs the pattern of `split_pattern.py`
correctly but slowly (about 1.5 MB/s here: RE2 extracts every match with its
submatch engine) and stops at NUL bytes. This module gets the same words from
per-character classes with a few vectorized TF ops over all characters of a
batch at once (about 10x faster). The rules below restate the regex; the
tests check them against Hugging Face's regex on arbitrary Unicode.

With characters classed as letter (L), digit (N), whitespace (W) or other
(O), leftmost-first matching of

    '(?:[sdmt]|ll|ve|re) | ' '?L+ | ' '?N+ | ' '?O+ | W*[\\r\\n]+ | W+

cuts text exactly like this:

1. A maximal run of L, of N or of O is one word.
2. A whitespace run is cut after its last newline ("\\n\\n  \\n" | "  ").
   What follows the last newline (or the whole run without one) is one
   word, except that a single " " just before a non-whitespace character
   joins the word after it ("a b" -> "a", " b"; but "a  b" -> "a", "  ", "b").
3. An apostrophe that starts a word (not inside an O run, not after a joined
   space) and is followed by s, d, m, t, ll, ve or re is a word of its own
   with those letters ("it's" -> "it", "'s"; "x'sy" -> "x", "'s", "y").
"""

import numpy as np
import tensorflow as tf

LETTER, DIGIT, OTHER, SPACE = 0, 1, 2, 3
_NUM_CODE_POINTS = 0x110000


def class_table(split_classes):
    """A NumPy int8 array: the class of every code point.

    Args:
        split_classes: `{"letters": ranges, "digits": ranges, "space":
            ranges}`, inclusive `[start, end]` code-point ranges, as stored in
            `kerasllm_tokenizer.json` (see `split_pattern.split_classes`).
    """
    table = np.full(_NUM_CODE_POINTS, OTHER, np.int8)
    for name, value in (("letters", LETTER), ("digits", DIGIT), ("space", SPACE)):
        for start, end in split_classes[name]:
            table[start : end + 1] = value
    return table


def segment_ids(row_splits, out_type=tf.int64):
    """The row of each value, from ragged row splits (`[0, 2, 2, 3]` -> `[0, 0, 2]`).

    `tf.ragged.row_splits_to_segment_ids` does the same in ~70 graph nodes,
    which tf.data instantiates again per iterator; this takes ~12. Each
    split adds one at its position (empty rows stack up there) and the
    running sum is the row.
    """
    num_values = row_splits[-1]
    ends = row_splits[1:, tf.newaxis]
    marks = tf.scatter_nd(ends, tf.ones_like(ends[:, 0], out_type), [num_values + 1])
    return tf.cumsum(marks[:-1])


def _shift(values, offset, fill):
    """`values` moved `offset` places later (> 0) or earlier (< 0), padded with `fill`."""
    pad = tf.fill([abs(offset)], tf.cast(fill, values.dtype))
    if offset > 0:
        return tf.concat([pad, values], axis=0)[: tf.shape(values)[0]]
    return tf.concat([values, pad], axis=0)[-offset:]


def split_words(strings, classes, keep_whole=None):
    """Split 1-D strings into pre-tokenizer words.

    Args:
        strings: 1-D string tensor (valid UTF-8; invalid bytes read as U+FFFD).
        classes: int tensor `[0x110000]`, the class of each code point
            (`class_table`).
        keep_whole: optional 1-D bool tensor: strings to keep as one word
            (special tokens).

    Returns:
        A string `tf.RaggedTensor` `[len(strings), None]` of words whose
        concatenation is each input string.
    """
    # Raw ops and unchecked ragged tensors: the `tf.strings` wrappers add
    # dozens of graph nodes that tf.data instantiates again per iterator.
    char_splits, c = tf.raw_ops.UnicodeDecode(
        input=strings,
        input_encoding="UTF-8",
        errors="replace",
        replacement_char=0xFFFD,
        Tsplits=tf.int64,
    )  # c: (n,) code points of all strings
    row = segment_ids(char_splits, tf.int32)
    cls = tf.cast(tf.gather(classes, c), tf.int32)

    first = row != _shift(row, 1, -1)  # first character of its string
    last = row != _shift(row, -1, -1)  # last character of its string
    prev_cls = tf.where(first, -1, _shift(cls, 1, -1))
    next_cls = tf.where(last, -1, _shift(cls, -1, -1))
    next1 = tf.where(last, -1, _shift(c, -1, -1))
    next2 = tf.where(last | _shift(last, -1, True), -1, _shift(c, -2, -1))

    # Whitespace runs (rule 2).
    is_space = cls == SPACE
    newline = (c == 10) | (c == 13)
    run_start = is_space & (prev_cls != SPACE)
    run_last = is_space & (next_cls != SPACE)
    # A run is cut after its last newline: a newline whose run has no newline
    # after it. Compare newline counts at the char and at its run's end.
    newlines_so_far = tf.cumsum(tf.cast(newline, tf.int32))
    run = tf.cumsum(tf.cast(run_start, tf.int32)) - 1  # run id (space chars)
    newlines_at_run_end = tf.gather(
        newlines_so_far, tf.reshape(tf.where(run_last), [-1])
    )
    # One spare entry: characters before the first run read index 0.
    newlines_at_run_end = tf.concat([newlines_at_run_end, [-1]], axis=0)
    last_newline = newline & (
        newlines_so_far == tf.gather(newlines_at_run_end, tf.maximum(run, 0))
    )
    after_last_newline = is_space & _shift(last_newline, 1, False)
    # The rest of a run is a single " " when the run ends in " " right after
    # its start or a newline; it joins the next word if that is in the string.
    joins_next = (
        run_last
        & (c == 32)
        & (run_start | _shift(newline, 1, False))
        & (next_cls != -1)
    )
    space_boundary = run_start | after_last_newline

    # Letters, digits, other (rule 1), unless a single space joined them.
    joined = _shift(joins_next, 1, False)
    word_boundary = ~is_space & (prev_cls != cls) & ~joined
    boundary = space_boundary | word_boundary

    # Contractions (rule 3).
    starts_word = boundary & (c == 39)
    two = starts_word & (
        (next1 == ord("s")) | (next1 == ord("d")) | (next1 == ord("m")) | (next1 == ord("t"))
    )
    three = starts_word & ~two & (
        ((next1 == ord("l")) & (next2 == ord("l")))
        | ((next1 == ord("v")) & (next2 == ord("e")))
        | ((next1 == ord("r")) & (next2 == ord("e")))
    )
    inside = _shift(two | three, 1, False) | _shift(three, 2, False)
    after = _shift(two, 2, False) | _shift(three, 3, False)
    boundary = (boundary & ~inside) | after
    if keep_whole is not None:
        boundary = tf.where(tf.gather(keep_whole, row), first, boundary)

    # Characters -> words -> strings. Word starts are sorted, so their
    # positions are the row splits of the words.
    starts = tf.reshape(tf.where(boundary), [-1])  # int64
    words = tf.raw_ops.UnicodeEncode(
        input_values=c,
        input_splits=tf.concat([starts, tf.shape(c, tf.int64)], axis=0),
        output_encoding="UTF-8",
    )
    # Words before each string's first character: the strings' word splits.
    words_before = tf.concat([[0], tf.cumsum(tf.cast(boundary, tf.int64))], axis=0)
    return tf.RaggedTensor.from_row_splits(
        words, tf.gather(words_before, char_splits), validate=False
    )
