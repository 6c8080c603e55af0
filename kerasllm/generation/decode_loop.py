"""The in-graph decode loop: prefill a KV cache, then one token per step.

Everything here is a pure function of tensors written with `keras.ops`:
no Python control flow on tensor values, no `ops.slice_update` (an XLA-only
op on TensorFlow), so it runs compiled (`tf.function(jit_compile=True)`,
`jax.jit`) and also inside a plain TensorFlow graph that a SavedModel
serves. `generate_tokens` is the whole loop in one call; the `Generator`
drives `prefill` and `decode` separately to stream and to check stop strings
between chunks of steps.

Layout of a batch. Prompts are left-padded to a common length `P` and the
cache holds `S >= P + max_new_tokens` slots: the prompt fills slots
`[0, P)`, generated tokens go to slots `P, P + 1, ...`. A token's position
(for the position embedding or RoPE) is the number of real tokens before it,
`cumsum(mask) - 1`, so a left-padded row computes exactly what it would
alone.
"""

from keras import ops

from kerasllm.generation import utf8
from kerasllm.generation.generation_options import GenerationOptions
from kerasllm.generation.sampling import next_token

# `stop_reason` codes (int32 per row).
RUNNING = 0  # still generating
END_TOKEN = 1  # produced the end-of-text token
LENGTH = 2  # reached max_new_tokens or the cache's last slot
STOP_STRING = 3  # never set in the graph: the host-side `Generator` names it

STOP_REASONS = {RUNNING: "running", END_TOKEN: "end_token", LENGTH: "length", STOP_STRING: "stop_string"}

# In-graph defaults: those of `GenerationOptions` (each filter off).
_DEFAULTS = GenerationOptions()
_TOP_K, _TOP_P = _DEFAULTS.sampling_values()


def sampling_params(
    batch_size,
    temperature=_DEFAULTS.temperature,
    top_k=_TOP_K,
    top_p=_TOP_P,
    min_p=_DEFAULTS.min_p,
    repetition_penalty=_DEFAULTS.repetition_penalty,
    seed=0,
    end_token_id=-1,
    pad_token_id=0,
    utf8_table=None,
):
    """The parameter dict `prefill`/`decode` take: per-row tensors `(B,)`.

    Each value may be a Python number, a scalar tensor or a `(B,)` tensor;
    it is broadcast to `(B,)` (`pad_token_id` stays a scalar).
    `end_token_id` is one id or a 1-D list of ids that each end a row; `-1`
    means none. `utf8_table` (from
    `kerasllm.generation.utf8.token_table`) turns on the valid-UTF-8 mask.
    """

    def per_row(value, dtype):
        return ops.broadcast_to(ops.cast(value, dtype), (batch_size,))

    return {
        "temperature": per_row(temperature, "float32"),
        "top_k": per_row(top_k, "int32"),
        "top_p": per_row(top_p, "float32"),
        "min_p": per_row(min_p, "float32"),
        "repetition_penalty": per_row(repetition_penalty, "float32"),
        "seed": per_row(seed, "int32"),
        "end_token_id": ops.reshape(ops.cast(end_token_id, "int32"), (-1,)),
        "pad_token_id": ops.cast(pad_token_id, "int32"),
        **({} if utf8_table is None else {"utf8_table": ops.cast(utf8_table, "int32")}),
    }


def is_end_token(token, end_token_ids):
    """bool, shaped as `token`: which tokens are one of `end_token_ids` `(E,)`."""
    return ops.any(ops.expand_dims(token, -1) == end_token_ids, axis=-1)


def _write_slot(buffer, values, index):
    """`buffer[:, index] = values` for `(B, S)` and `(B,)`, without slice_update."""
    slots = ops.arange(ops.shape(buffer)[1], dtype="int32")[None, :]  # (1, S)
    return ops.where(slots == index, values[:, None], buffer)


def _choose(state, logits, params, strategy):
    """Picks the token for slot `index + 1` from `logits` `(B, V)`; updates state."""
    table = params.get("utf8_table")
    if table is not None:
        logits = utf8.mask_logits(logits, table, state["utf8"])
    token = next_token(logits, state["seen"], params, state["step"], strategy)  # (B,)
    done = state["done"]
    is_end = is_end_token(token, params["end_token_id"])  # (B,)
    counts = ops.logical_and(ops.logical_not(done), ops.logical_not(is_end))
    lengths = state["lengths"] + ops.cast(counts, "int32")  # (B,)
    hit_end = ops.logical_and(ops.logical_not(done), is_end)
    hit_length = ops.logical_and(counts, lengths >= state["max_new_tokens"])
    stop_reason = ops.where(
        hit_end, END_TOKEN, ops.where(hit_length, LENGTH, state["stop_reason"])
    )
    written = ops.where(counts, token, params["pad_token_id"])  # (B,)
    vocab = ops.arange(ops.shape(logits)[-1], dtype="int32")[None, :]  # (1, V)
    index = state["index"] + 1
    # `safe_lengths`: the length after the last token that ended on a
    # character boundary (where a row cut by the length limit ends).
    between_characters = ops.ones_like(counts)
    if table is not None:
        moved = utf8.advance(table, state["utf8"], token)  # (B, 3)
        next_utf8 = ops.where(counts[:, None], moved, state["utf8"])
        state = {**state, "utf8": next_utf8}
        between_characters = next_utf8[:, 0] == 0
    safe = ops.where(ops.logical_and(counts, between_characters), lengths, state["safe_lengths"])
    return {
        **state,
        "safe_lengths": safe,
        "tokens": _write_slot(state["tokens"], written, index),
        "last_token": written,
        "index": index,
        "position": state["position"] + 1,
        "step": state["step"] + 1,
        "lengths": lengths,
        "done": ops.logical_or(done, ops.logical_or(hit_end, hit_length)),
        "stop_reason": stop_reason,
        "seen": ops.logical_or(state["seen"], vocab == token[:, None]),
    }


def run_prompt(model, token_ids, padding_mask, max_length, pad_token_id):
    """Prefills a fresh KV cache with left-padded prompts (shared by sampling
    and beam search).

    Returns:
        A dict: `logits` `(B, V)` at the last prompt slot, `cache`,
        `slot_mask` `(B, S)` (0 on left padding), `tokens` `(B, S)` by slot
        (pad after the prompt), `last_token` `(B,)`, `index` (its slot),
        `position` `(B,)` (its position), `seen` `(B, V)` (tokens present in
        the prompt, for the repetition penalty).
    """
    token_ids = ops.cast(token_ids, "int32")
    mask = ops.cast(padding_mask, "int32")
    batch, prompt_len = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    positions = ops.maximum(ops.cumsum(mask, axis=1) - 1, 0)  # (B, P)
    free = ops.ones((batch, max_length - prompt_len), "int32")
    slot_mask = ops.concatenate([mask, free], axis=1)  # (B, S)
    cache = model.init_cache(batch, max_length)
    logits, cache = model.call_with_cache(
        token_ids, cache, 0, padding_mask=slot_mask, positions=positions
    )  # (B, P, V)
    vocab_size = ops.shape(logits)[-1]
    prompt = ops.where(mask > 0, token_ids, pad_token_id)  # (B, P)
    # Tokens already present, for the repetition penalty: a scatter of the
    # mask into (B, V) (a one-hot of the prompt would be (B, P, V)).
    rows = ops.repeat(ops.arange(batch, dtype="int32")[:, None], prompt_len, axis=1)
    indices = ops.reshape(ops.stack([rows, token_ids], axis=-1), (-1, 2))  # (B*P, 2)
    seen = ops.scatter(indices, ops.reshape(mask, (-1,)), (batch, vocab_size)) > 0
    return {
        "logits": logits[:, -1, :],
        "cache": cache,
        "slot_mask": slot_mask,
        "tokens": ops.concatenate([prompt, ops.zeros_like(free) + pad_token_id], axis=1),
        "last_token": prompt[:, -1],
        "index": ops.cast(prompt_len - 1, "int32"),
        "position": ops.sum(mask, axis=1) - 1,
        "seen": seen,
    }


def prefill(model, token_ids, padding_mask, max_new_tokens, params, max_length, strategy="greedy"):
    """Runs the prompts through the model and chooses the first new token.

    Args:
        model: a `kerasllm.models.GPT` (anything with `init_cache` and
            `call_with_cache`).
        token_ids: int `(B, P)` left-padded prompts.
        padding_mask: `(B, P)`, 1 for real tokens; every row has at least one.
        max_new_tokens: int `(B,)` (or scalar); rows with 0 start done.
        params: the dict from `sampling_params`.
        max_length: `S`, the cache slots (a Python int, `>= P + 1`).
        strategy: `"greedy"` or `"sample"`.

    Returns:
        The decode state, a dict of tensors: `cache` (list of per-layer
        caches), `tokens` `(B, S)` by slot, `last_token` `(B,)`, `index`
        (slot of `last_token`), `position` `(B,)`, `step`, `lengths` `(B,)`
        (generated tokens, the end token not counted), `safe_lengths`
        `(B,)` (the same, cut back to the last whole character), `utf8`
        `(B, 3)` (see `kerasllm.generation.utf8`), `done` `(B,)`,
        `stop_reason` `(B,)`, `seen` `(B, V)`, `max_new_tokens` `(B,)`.
    """
    prompt = run_prompt(model, token_ids, padding_mask, max_length, params["pad_token_id"])
    batch = ops.shape(prompt["tokens"])[0]
    max_new_tokens = ops.broadcast_to(ops.cast(max_new_tokens, "int32"), (batch,))
    state = {
        "cache": prompt["cache"],
        "tokens": prompt["tokens"],
        "slot_mask": prompt["slot_mask"],
        "last_token": prompt["last_token"],
        "index": prompt["index"],
        "position": prompt["position"],
        "step": ops.convert_to_tensor(0, "int32"),
        "lengths": ops.zeros((batch,), "int32"),
        "safe_lengths": ops.zeros((batch,), "int32"),
        "utf8": utf8.initial_state(batch),
        "done": max_new_tokens <= 0,
        "stop_reason": ops.where(max_new_tokens <= 0, LENGTH, RUNNING),
        "seen": prompt["seen"],
        "max_new_tokens": max_new_tokens,
    }
    return _choose(state, prompt["logits"], params, strategy)


def decode(model, state, params, num_steps, strategy="greedy"):
    """Runs up to `num_steps` more decode steps (an `ops.while_loop`).

    Stops early when every row is done or the cache is full. `num_steps` is a
    tensor, so one compiled program serves any chunk size.

    Args:
        model: the model `prefill` ran.
        state: the dict from `prefill` or a previous `decode`.
        params: the dict from `sampling_params`.
        num_steps: int scalar.
        strategy: `"greedy"` or `"sample"` (as in `prefill`).

    Returns:
        The updated state.
    """
    return run_decode_steps(
        model,
        state,
        num_steps,
        max_length=ops.shape(state["tokens"])[1],
        choose=lambda state, logits: _choose(state, logits, params, strategy),
    )


def run_decode_steps(model, state, num_steps, max_length, choose):
    """The one decode `ops.while_loop`, shared by sampling and beam search.

    Each step feeds every row's last token through the KV cache and lets
    `choose(state, logits)` (logits `(rows, V)`) pick the next tokens. Stops
    after `num_steps` steps, when every row is done, or when the cache
    (`max_length` slots) is full.
    """
    limit = state["step"] + ops.cast(num_steps, "int32")

    def cond(state):
        room = ops.logical_and(state["step"] < limit, state["index"] + 1 < max_length)
        return ops.logical_and(room, ops.logical_not(ops.all(state["done"])))

    def body(state):
        logits, cache = model.call_with_cache(
            state["last_token"][:, None],
            state["cache"],
            state["index"],
            padding_mask=state["slot_mask"],
            positions=state["position"][:, None],
        )  # (rows, 1, V)
        return choose({**state, "cache": cache}, logits[:, 0, :])

    return ops.while_loop(cond, body, state)


def finish(state, prompt_length):
    """The generated part of a decode state.

    Returns:
        `(token_ids, lengths, stop_reason)`: int32 `(B, S - prompt_length)`
        generated ids (the end token not included), int32 `(B,)` lengths
        (the valid-UTF-8 mask on, a row cut by the length limit inside a
        character ends before it; ids past a row's length are to be
        ignored), int32 `(B,)` (`END_TOKEN` or `LENGTH`; rows the loop left
        running count as `LENGTH`).
    """
    token_ids = state["tokens"][:, prompt_length:]
    stop_reason = ops.where(state["stop_reason"] == RUNNING, LENGTH, state["stop_reason"])
    return token_ids, state["safe_lengths"], stop_reason


def generate_tokens(
    model,
    token_ids,
    padding_mask,
    max_new_tokens,
    *,
    strategy="greedy",
    temperature=_DEFAULTS.temperature,
    top_k=_TOP_K,
    top_p=_TOP_P,
    min_p=_DEFAULTS.min_p,
    repetition_penalty=_DEFAULTS.repetition_penalty,
    seed=0,
    end_token_id=-1,
    pad_token_id=0,
    max_length=None,
    utf8_table=None,
):
    """Generates tokens in-graph: prefill, then an `ops.while_loop` of steps.

    A pure `keras.ops` function: call it eagerly, inside `jax.jit` or
    `tf.function(jit_compile=True)`, or inside a plain (non-XLA)
    `tf.function` on the TensorFlow backend, e.g. to build a
    string-in/string-out SavedModel signature (it uses no XLA-only op and no
    Python control flow on tensor values). Every sampling parameter may be a
    tensor, so one trace serves every value.

    Args:
        model: a `kerasllm.models.GPT`.
        token_ids: int `(B, P)` prompts, left-padded (`P` may be dynamic in
            a TF graph).
        padding_mask: `(B, P)`, 1 for real tokens, 0 for the left padding;
            every row needs at least one real token.
        max_new_tokens: int or int tensor, scalar or `(B,)`: the most tokens
            to generate per row (the end token not counted). Must fit the
            cache: `P + max_new_tokens <= max_length`.
        strategy: `"greedy"` or `"sample"` (a Python string: it picks the
            graph). Under `"sample"`, rows with `temperature <= 0` are greedy.
        temperature: float, scalar or `(B,)`. Defaults to `1.0`.
        top_k: int, scalar or `(B,)`; `0` disables. Defaults to `0`.
        top_p: float in `(0, 1]`, scalar or `(B,)`; `1` disables. Defaults
            to `1.0`.
        min_p: float in `[0, 1)`, scalar or `(B,)`; `0` disables. Defaults
            to `0.0`.
        repetition_penalty: float `> 0`, scalar or `(B,)`; `1` disables
            (applies to greedy too). Defaults to `1.0`.
        seed: int, scalar or `(B,)`: the sampling seed. Equal seeds give
            equal samples, whatever else is in the batch. Defaults to `0`.
        end_token_id: int, or a 1-D list of ints: generation of a row stops
            after any of them (e.g. the end of text and a chat template's end
            of turn). `-1` means none. Defaults to `-1`.
        pad_token_id: int scalar written after each row's end. Defaults to
            `0`.
        max_length: Python int, the KV-cache slots `S`. Defaults to the
            model's `context_length`.
        utf8_table: int32 `(NUM_FIELDS, V)` from
            `kerasllm.generation.utf8.token_table(tokenizer, V)`: only tokens
            that keep each row's text valid UTF-8 are chosen. Defaults to
            `None` (no mask).

    Returns:
        `(token_ids, lengths, stop_reason)`: int32 `(B, S - P)` generated
        ids (row `b`'s text is `token_ids[b, :lengths[b]]`, then padding),
        int32 `(B,)` and int32 `(B,)` with `1` for the end token and `2` for
        the length limit (`kerasllm.generation.STOP_REASONS` names them).

    Example:
    ```python
    ids, lengths, reason = kerasllm.generation.generate_tokens(
        model, token_ids, padding_mask, 32,
        strategy="sample", temperature=0.8, top_p=0.95, seed=7,
        end_token_id=tokenizer.end_token_id,
    )
    ```
    """
    max_length = max_length or model.config.context_length
    batch = ops.shape(token_ids)[0]
    params = sampling_params(
        batch,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        end_token_id=end_token_id,
        pad_token_id=pad_token_id,
        utf8_table=utf8_table,
    )
    state = prefill(model, token_ids, padding_mask, max_new_tokens, params, max_length, strategy)
    state = decode(model, state, params, max_length, strategy)
    return finish(state, ops.shape(token_ids)[1])
