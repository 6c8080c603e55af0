"""Choosing the next token from logits, with every parameter a tensor.

Each function works on one decode step's logits `(B, V)` and takes its
parameters as per-row tensors `(B,)`, so one compiled graph serves every
temperature, top-k, top-p, min-p and repetition penalty (no retracing when a
value changes, and rows of one batch may use different values). Only
`keras.ops` is used, and nothing that TensorFlow lowers to an XLA-only op, so
the same code runs under XLA, `jax.jit` and a plain TF graph (SavedModel).

Randomness comes from `uniform_noise`, a counter-based hash of `(seed, step,
token id)`: no random state to carry, reproducible for a seed whatever the
batch it runs in, the same on every backend.
"""

from keras import ops

# Bits of the lowbias32 integer hash (Chris Wellons, "Prospecting for hash
# functions"); the second multiplier does not fit int32, so it is written as
# the int32 with the same bits. int32 multiplication wraps on every backend.
_HASH_MUL_1 = 0x7FEB352D
_HASH_MUL_2 = 0x846CA68B - (1 << 32)


def _shift_right(x, bits):
    """Logical right shift of int32 bit patterns (`>>` sign-extends)."""
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def hash_int32(x):
    """A well-mixed int32 → int32 hash (lowbias32), elementwise."""
    x = ops.cast(x, "int32")
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = ops.multiply(x, ops.convert_to_tensor(_HASH_MUL_1, "int32"))
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = ops.multiply(x, ops.convert_to_tensor(_HASH_MUL_2, "int32"))
    return ops.bitwise_xor(x, _shift_right(x, 16))


def uniform_noise(seed, step, num_classes):
    """Uniform floats in `(0, 1)`, one per (row, class), from a hash.

    Args:
        seed: int `(B,)` per-row seeds.
        step: int scalar, the decode step (generated-token index).
        num_classes: `V`.

    Returns:
        float32 `(B, V)`; row `b` depends only on `seed[b]`, `step`, `V`.
    """
    row_key = hash_int32(hash_int32(seed) + ops.cast(step, "int32"))  # (B,)
    classes = ops.arange(num_classes, dtype="int32")  # (V,)
    bits = hash_int32(row_key[:, None] + hash_int32(classes)[None, :])  # (B, V)
    # 23 bits, so that `k + 0.5` is exact in float32: with 24 bits the top
    # value rounds up to 2^24, the noise becomes exactly 1, its Gumbel +inf,
    # and a masked (-inf) logit plus it NaN, which JAX's argmax picks.
    top23 = ops.cast(_shift_right(bits, 9), "float32")  # in [0, 2^23)
    return (top23 + 0.5) / float(1 << 23)  # in [2^-24, 1 - 2^-24]


def apply_repetition_penalty(logits, seen, penalty):
    """CTRL's repetition penalty (Keskar et al. 2019), as in Hugging Face.

    A token already in the prompt or the output has its logit divided by
    `penalty` when positive, multiplied when negative; `penalty=1` is a no-op.

    Args:
        logits: float32 `(B, V)`.
        seen: bool `(B, V)`, tokens present so far.
        penalty: float32 `(B,)`.
    """
    penalty = penalty[:, None]  # (B, 1)
    penalized = ops.where(logits > 0, logits / penalty, logits * penalty)
    return ops.where(seen, penalized, logits)


def filter_logits(logits, top_k, top_p, min_p):
    """Masks to `-inf` every token outside top-k, top-p (nucleus) and min-p.

    The filters apply in Hugging Face's order: top-k first, then top-p over
    the renormalized top-k distribution; min-p keeps tokens whose probability
    is at least `min_p` times the most likely one's (Nguyen et al. 2024).
    `top_k` is a tensor, not a static size: the logits are sorted once and the
    k-th largest becomes a threshold. The sort only runs when some row asks
    for top-k or top-p.

    Args:
        logits: float32 `(B, V)`, already divided by the temperature.
        top_k: int `(B,)`; `0` keeps every token.
        top_p: float32 `(B,)` in `(0, 1]`; `1` keeps every token.
        min_p: float32 `(B,)` in `[0, 1)`; `0` keeps every token.

    Returns:
        float32 `(B, V)`, the kept logits unchanged.
    """
    vocab = ops.shape(logits)[-1]
    top_k = ops.cast(top_k, "int32")
    max_logit = ops.max(logits, axis=-1)  # (B,)
    # min-p: p >= min_p * p_max  <=>  logit >= max_logit + log(min_p).
    threshold = max_logit + ops.log(ops.cast(min_p, "float32"))  # (B,)

    def sorted_threshold():
        sorted_logits = ops.flip(ops.sort(logits, axis=-1), axis=-1)  # (B, V) desc
        ranks = ops.arange(vocab, dtype="int32")[None, :]  # (1, V)
        k = ops.where(top_k > 0, ops.minimum(top_k, vocab), vocab)[:, None]  # (B, 1)
        in_top_k = ranks < k  # (B, V)
        probs = ops.softmax(ops.where(in_top_k, sorted_logits, -float("inf")))
        # Keep the smallest prefix whose mass reaches top_p (always >= 1 token).
        mass_before = ops.cumsum(probs, axis=-1) - probs  # (B, V)
        keep = ops.logical_and(in_top_k, mass_before < top_p[:, None])  # (B, V)
        num_kept = ops.sum(ops.cast(keep, "int32"), axis=-1)  # (B,)
        last_kept = ops.take_along_axis(
            sorted_logits, ops.maximum(num_kept - 1, 0)[:, None], axis=-1
        )  # (B, 1)
        return last_kept[:, 0]  # (B,)

    needs_sort = ops.any(ops.logical_or(top_k > 0, top_p < 1.0))
    no_threshold = ops.full_like(max_logit, -float("inf"))
    threshold = ops.maximum(
        threshold, ops.cond(needs_sort, sorted_threshold, lambda: no_threshold)
    )
    return ops.where(logits >= threshold[:, None], logits, -float("inf"))


def next_token(logits, seen, params, step, strategy):
    """One decode step's choice of token per row.

    Args:
        logits: float32 `(B, V)` from the model.
        seen: bool `(B, V)` tokens so far (for the repetition penalty).
        params: dict of per-row tensors `temperature`, `top_k`, `top_p`,
            `min_p`, `repetition_penalty` (`(B,)` each) and int `seed` `(B,)`.
        step: int scalar, the index of the token being chosen.
        strategy: `"greedy"` (argmax) or `"sample"`. Rows with
            `temperature <= 0` are greedy under `"sample"` too.

    Returns:
        int32 `(B,)`.
    """
    logits = apply_repetition_penalty(logits, seen, params["repetition_penalty"])
    greedy = ops.cast(ops.argmax(logits, axis=-1), "int32")  # (B,)
    if strategy == "greedy":
        return greedy
    if strategy != "sample":
        raise ValueError(
            f"strategy must be 'greedy' or 'sample'. Received: strategy={strategy!r}"
        )
    temperature = ops.cast(params["temperature"], "float32")
    scaled = logits / ops.maximum(temperature, 1e-6)[:, None]  # (B, V)
    scaled = filter_logits(scaled, params["top_k"], params["top_p"], params["min_p"])
    # Gumbel-max: argmax(logits + Gumbel noise) is a sample of softmax(logits).
    noise = uniform_noise(params["seed"], step, ops.shape(logits)[-1])  # (B, V)
    gumbel = -ops.log(-ops.log(noise))
    sampled = ops.cast(ops.argmax(scaled + gumbel, axis=-1), "int32")  # (B,)
    return ops.where(temperature > 0, sampled, greedy)
