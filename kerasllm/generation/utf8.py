"""Valid UTF-8 by construction: a per-token table, a per-row state, a logits mask.

With byte-level BPE (and SentencePiece byte fallback) one character may span
several tokens, and a sampler that picks a token starting a new character
while the previous one is unfinished leaves a broken character (U+FFFD in
the text). Here every decode step allows only the tokens whose bytes keep
the generated text a valid UTF-8 prefix:

- `token_table(tokenizer, vocab_size)` reads each token's bytes once into an
  int32 table `(NUM_FIELDS, V)`: how many continuation bytes (`10xxxxxx`) it
  starts with, whether it is nothing else, its first byte, whether the rest
  is well formed, and what it leaves owed at its end.
- A row's state is int32 `(3,)`: continuation bytes still owed, and the
  range the next byte must fall in (`[0x80, 0xBF]`, narrower after
  `E0`/`ED`/`F0`/`F4`, which rule out overlong forms and surrogates, exactly
  as Python's strict decoder does).
- `allowed_tokens(table, state)` is the mask `(B, V)`: with nothing owed, any
  well-formed token that does not start with a continuation byte; with `k`
  bytes owed, tokens made only of `<= k` continuation bytes, or starting with
  exactly `k` of them and well formed after. `advance` moves the state over
  the chosen tokens.

Tokens without bytes (special tokens of a tokenizer that decodes them to
nothing, ids past the tokenizer's vocabulary) are allowed only between
characters, so the end token never cuts one. A row stopped by the length
limit in the middle of a character ends at its last whole character:
`decode_loop` keeps `safe_lengths`, the generated length after the last
token that left nothing owed.

Only `keras.ops`, elementwise over `(B, V)` plus a gather of `B` table
columns per step: the same code runs in the compiled loop, in the SavedModel's
plain TF graph and in the TFLite decode signature.
"""

import numpy as np
from keras import ops

# Rows of the token table.
LEAD = 0  # leading continuation bytes (0..3 matter; more is never allowed)
WHOLE = 1  # 1 if the token is only continuation bytes
FIRST = 2  # the first byte (0 for an empty token)
VALID = 3  # 1 if the bytes after the leading continuation bytes are well formed
TAIL_OWED = 4  # continuation bytes owed after the token
TAIL_LO = 5  # range of the next byte after the token
TAIL_HI = 6
NUM_FIELDS = 7

CONT_LO, CONT_HI = 0x80, 0xBF


def initial_state(batch_size):
    """int32 `(B, 3)`: nothing owed, between characters."""
    row = ops.convert_to_tensor([0, CONT_LO, CONT_HI], "int32")
    return ops.broadcast_to(row[None, :], (batch_size, 3))


def _lead(byte):
    """`(owed, lo, hi)` after a byte that starts a character, or None if it cannot."""
    if byte < 0x80:
        return 0, CONT_LO, CONT_HI
    if 0xC2 <= byte <= 0xDF:
        return 1, CONT_LO, CONT_HI
    if 0xE0 <= byte <= 0xEF:
        return 2, 0xA0 if byte == 0xE0 else CONT_LO, 0x9F if byte == 0xED else CONT_HI
    if 0xF0 <= byte <= 0xF4:
        return 3, 0x90 if byte == 0xF0 else CONT_LO, 0x8F if byte == 0xF4 else CONT_HI
    return None  # a continuation byte, C0, C1 (overlong) or F5..FF


def token_row(data):
    """The table column of one token's bytes: a list of `NUM_FIELDS` ints."""
    lead = 0
    while lead < len(data) and CONT_LO <= data[lead] <= CONT_HI:
        lead += 1
    owed, lo, hi, valid = 0, CONT_LO, CONT_HI, 1
    for byte in data[lead:]:
        if owed == 0:
            started = _lead(byte)
            if started is None:
                valid = 0
                break
            owed, lo, hi = started
        elif lo <= byte <= hi:
            owed, lo, hi = owed - 1, CONT_LO, CONT_HI
        else:
            valid = 0
            break
    whole = int(bool(data) and lead == len(data))
    return [lead, whole, data[0] if data else 0, valid, owed, lo, hi]


def token_table(tokenizer, vocab_size=None):
    """int32 NumPy `(NUM_FIELDS, V)` from `tokenizer.token_bytes`.

    Args:
        tokenizer: anything with `token_bytes(id)` and `vocabulary_size`.
        vocab_size: the model's `V` (ids past the tokenizer's count as
            empty). Defaults to `tokenizer.vocabulary_size`.
    """
    vocab_size = vocab_size or tokenizer.vocabulary_size
    limit = min(vocab_size, tokenizer.vocabulary_size)
    columns = [
        token_row(tokenizer.token_bytes(i) if i < limit else b"") for i in range(vocab_size)
    ]
    return np.asarray(columns, "int32").T.copy()


def allowed_tokens(table, state):
    """bool `(B, V)`: the tokens that keep each row's text a valid UTF-8 prefix.

    Args:
        table: int32 `(NUM_FIELDS, V)` from `token_table`.
        state: int32 `(B, 3)`: owed bytes, low and high bound of the next byte.
    """
    owed, lo, hi = state[:, 0:1], state[:, 1:2], state[:, 2:3]  # (B, 1) each
    lead, first = table[LEAD][None, :], table[FIRST][None, :]  # (1, V)
    whole, valid = table[WHOLE][None, :] > 0, table[VALID][None, :] > 0
    fresh = ops.logical_and(lead == 0, valid)  # (1, V) starts a character
    first_fits = ops.logical_and(first >= lo, first <= hi)  # (B, V)
    continues = ops.where(whole, lead <= owed, ops.logical_and(lead == owed, valid))
    continues = ops.logical_and(ops.logical_and(lead >= 1, first_fits), continues)
    return ops.where(owed == 0, fresh, continues)  # (B, V)


def advance(table, state, token):
    """The state after each row's `token` `(B,)` (assumed allowed)."""
    column = ops.take(table, ops.cast(token, "int32"), axis=1)  # (NUM_FIELDS, B)
    owed = state[:, 0]
    inside = ops.logical_and(column[WHOLE] > 0, owed > 0)  # (B,) continues only
    tail = ops.stack([column[TAIL_OWED], column[TAIL_LO], column[TAIL_HI]], axis=1)
    middle = ops.stack(
        [owed - column[LEAD], ops.full_like(owed, CONT_LO), ops.full_like(owed, CONT_HI)],
        axis=1,
    )
    return ops.where(inside[:, None], middle, tail)  # (B, 3)


def mask_logits(logits, table, state, masked_value=-float("inf")):
    """`logits` `(B, V)` with the tokens `allowed_tokens` rules out set to `masked_value`."""
    allowed = allowed_tokens(table, state)
    return ops.where(allowed, logits, ops.cast(masked_value, logits.dtype))
