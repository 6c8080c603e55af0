"""In-graph beam search over the KV cache, with length penalty and early stopping.

The algorithm is Hugging Face's: each step scores every continuation of the
`K` live beams, takes the best `2K`; those that end with the end token and
rank among the first `K` join a pool of `K` finished hypotheses (score =
sum of log-probabilities / length ** length_penalty), the best `K` others
become the live beams. A row is done when its pool is full and (with
`early_stopping`) at once, or (without) when no live beam can still beat the
pool's worst. At the length limit the live beams join the pool; the best of
the pool is returned.

Like `decode_loop`, this is pure `keras.ops` (beams are reordered with
`ops.take`, slots written with `where`), usable under XLA, `jax.jit` or a
plain TF graph. `num_beams` is a Python int: it sets the shapes.
"""

from keras import ops

from kerasllm.generation.decode_loop import (
    END_TOKEN,
    LENGTH,
    RUNNING,
    _write_slot,
    is_end_token,
    run_decode_steps,
    run_prompt,
)
from kerasllm.generation import utf8
from kerasllm.generation.generation_options import GenerationOptions
from kerasllm.generation.sampling import apply_repetition_penalty

NEG_INF = -1e30  # finite, so that `-inf - -inf` never makes a NaN score
_DEFAULTS = GenerationOptions()


def _normalized(scores, length, length_penalty):
    length = ops.maximum(ops.cast(length, "float32"), 1.0)
    return scores / ops.power(length, length_penalty[:, None])


def _merge_pool(state, scores, tokens, lengths, reasons, take):
    """Best `K` of the finished pool plus candidates where `take` `(B, C)`."""
    num_beams = ops.shape(state["fin_scores"])[1]
    pool_scores = ops.concatenate(
        [state["fin_scores"], ops.where(take, scores, NEG_INF)], axis=1
    )  # (B, K + C)
    best_scores, best = ops.top_k(pool_scores, num_beams)  # (B, K)
    pool_tokens = ops.concatenate([state["fin_tokens"], tokens], axis=1)  # (B, K+C, S)
    pool_lengths = ops.concatenate([state["fin_lengths"], lengths], axis=1)
    pool_reasons = ops.concatenate([state["fin_reasons"], reasons], axis=1)
    return {
        "fin_scores": best_scores,
        "fin_tokens": ops.take_along_axis(pool_tokens, best[:, :, None], axis=1),
        "fin_lengths": ops.take_along_axis(pool_lengths, best, axis=1),
        "fin_reasons": ops.take_along_axis(pool_reasons, best, axis=1),
    }


def _retire_alive(state, rows, params):
    """Moves the live beams of `rows` `(B,)` into their finished pools.

    A beam inside a character keeps only its whole characters
    (`alive_safe`); its score stays that of every token it made.
    """
    alive_len = ops.zeros_like(state["fin_lengths"]) + state["step"]  # (B, K)
    merged = _merge_pool(
        state,
        _normalized(state["alive_scores"], alive_len, params["length_penalty"]),
        state["alive_tokens"],
        state["alive_safe"],
        ops.zeros_like(alive_len) + LENGTH,
        ops.broadcast_to(rows[:, None], ops.shape(alive_len)),
    )
    return {**state, **merged}


def _select(state, logits, params):
    """One beam step from `logits` `(B*K, V)`: new live beams and pool."""
    batch, num_beams, max_length = ops.shape(state["alive_tokens"])
    logits = apply_repetition_penalty(
        logits, state["seen"], ops.repeat(params["repetition_penalty"], num_beams)
    )
    vocab_size = ops.shape(logits)[-1]
    log_probs = ops.log_softmax(logits, axis=-1)  # (B*K, V)
    table = params.get("utf8_table")
    if table is not None:
        # Masked after the softmax: an allowed token keeps the score it has
        # without the mask, so hypotheses that were valid rank as before.
        log_probs = utf8.mask_logits(log_probs, table, state["utf8"], NEG_INF)
    log_probs = ops.reshape(log_probs, (batch, num_beams, vocab_size))
    candidates = state["alive_scores"][:, :, None] + log_probs  # (B, K, V)
    candidates = ops.reshape(candidates, (batch, num_beams * vocab_size))
    top_scores, top_index = ops.top_k(candidates, 2 * num_beams)  # (B, 2K)
    beam = top_index // vocab_size  # (B, 2K)
    token = ops.cast(top_index % vocab_size, "int32")  # (B, 2K)
    rank = ops.arange(2 * num_beams, dtype="int32")[None, :]  # (1, 2K)
    is_end = is_end_token(token, params["end_token_id"])
    not_done = ops.logical_not(state["done"])[:, None]  # (B, 1)
    step = state["step"]  # tokens generated before this one

    # Ended candidates among the first K join the finished pool.
    candidate_tokens = ops.take_along_axis(
        state["alive_tokens"], beam[:, :, None], axis=1
    )  # (B, 2K, S)
    finishing = ops.logical_and(ops.logical_and(is_end, rank < num_beams), not_done)
    ended_len = ops.zeros_like(token) + step
    pool = _merge_pool(
        state,
        _normalized(top_scores, ended_len + 1, params["length_penalty"]),
        candidate_tokens,
        ended_len,
        ops.zeros_like(token) + END_TOKEN,
        finishing,
    )

    # The best K candidates that did not end become the live beams.
    order = ops.where(is_end, rank + 2 * num_beams, rank)
    _, keep = ops.top_k(-order, num_beams)  # (B, K) first K non-ended
    alive_scores = ops.take_along_axis(top_scores, keep, axis=1)
    alive_beam = ops.take_along_axis(beam, keep, axis=1)  # (B, K)
    alive_token = ops.take_along_axis(token, keep, axis=1)  # (B, K)
    index = state["index"] + 1
    alive_tokens = ops.take_along_axis(state["alive_tokens"], alive_beam[:, :, None], axis=1)
    alive_tokens = ops.reshape(
        _write_slot(
            ops.reshape(alive_tokens, (batch * num_beams, max_length)),
            ops.reshape(alive_token, (-1,)),
            index,
        ),
        (batch, num_beams, max_length),
    )  # (B, K, S)
    flat = ops.reshape(
        ops.arange(batch, dtype="int32")[:, None] * num_beams + ops.cast(alive_beam, "int32"),
        (-1,),
    )  # (B*K,)
    last_token = ops.reshape(alive_token, (-1,))  # (B*K,)
    vocab = ops.arange(vocab_size, dtype="int32")[None, :]
    seen = ops.logical_or(ops.take(state["seen"], flat, axis=0), vocab == last_token[:, None])
    alive_safe = ops.take_along_axis(state["alive_safe"], alive_beam, axis=1)  # (B, K)
    text_state = ops.take(state["utf8"], flat, axis=0)  # (B*K, 3)
    if table is not None:
        text_state = utf8.advance(table, text_state, last_token)
        between_characters = ops.reshape(text_state[:, 0] == 0, (batch, num_beams))
        alive_safe = ops.where(between_characters, step + 1, alive_safe)
    else:
        alive_safe = ops.zeros_like(alive_safe) + step + 1

    new_state = {
        **state,
        **pool,
        "cache": [ops.take(layer_cache, flat, axis=0) for layer_cache in state["cache"]],
        "alive_scores": ops.where(not_done, alive_scores, state["alive_scores"]),
        "alive_tokens": alive_tokens,
        "last_token": last_token,
        "index": index,
        "position": state["position"] + 1,
        "step": step + 1,
        "seen": seen,
        "utf8": text_state,
        "alive_safe": alive_safe,
    }
    # Done: the pool is full and (early stopping, or) no live beam can beat it.
    pool_full = ops.all(pool["fin_scores"] > NEG_INF / 2, axis=1)  # (B,)
    best_alive = _normalized(alive_scores[:, :1], step + 1, params["length_penalty"])[:, 0]
    cannot_improve = best_alive <= pool["fin_scores"][:, -1]
    finished = ops.logical_and(
        pool_full, ops.logical_or(params["early_stopping"], cannot_improve)
    )
    # At the length limit the live beams join the pool.
    hit_length = ops.logical_and(
        ops.logical_not(finished), step + 1 >= state["max_new_tokens"]
    )
    hit_length = ops.logical_and(hit_length, ops.logical_not(state["done"]))
    new_state = _retire_alive(new_state, hit_length, params)
    new_state["done"] = ops.logical_or(state["done"], ops.logical_or(finished, hit_length))
    return new_state


def beam_prefill(model, token_ids, padding_mask, max_new_tokens, params, max_length, num_beams):
    """Runs the prompts once, copies the cache to `num_beams` beams, takes step 1.

    Args:
        model, token_ids, padding_mask, max_new_tokens, max_length: as in
            `decode_loop.prefill`.
        params: dict with `repetition_penalty` `(B,)`, `length_penalty`
            `(B,)`, `early_stopping` (bool scalar), `end_token_id` and
            `pad_token_id` (scalars); see `beam_params`.
        num_beams: Python int `K`.

    Returns:
        The beam state (a dict of tensors).
    """
    prompt = run_prompt(model, token_ids, padding_mask, max_length, params["pad_token_id"])
    tokens = prompt["tokens"]  # (B, S)
    batch = ops.shape(tokens)[0]

    def beams(x):  # (B, ...) -> (B*K, ...)
        return ops.repeat(x, num_beams, axis=0)

    max_new_tokens = ops.broadcast_to(ops.cast(max_new_tokens, "int32"), (batch,))
    first_beam_only = ops.where(ops.arange(num_beams) == 0, 0.0, NEG_INF)  # (K,)
    state = {
        "cache": [beams(layer_cache) for layer_cache in prompt["cache"]],
        "slot_mask": beams(prompt["slot_mask"]),
        "alive_tokens": ops.repeat(tokens[:, None, :], num_beams, axis=1),  # (B, K, S)
        "alive_scores": ops.zeros((batch, num_beams)) + first_beam_only,
        "last_token": beams(prompt["last_token"]),
        "index": prompt["index"],
        "position": beams(prompt["position"]),
        "step": ops.convert_to_tensor(0, "int32"),
        "seen": beams(prompt["seen"]),
        "utf8": utf8.initial_state(batch * num_beams),
        "alive_safe": ops.zeros((batch, num_beams), "int32"),
        "fin_tokens": ops.repeat(tokens[:, None, :], num_beams, axis=1),
        "fin_scores": ops.full((batch, num_beams), NEG_INF),
        "fin_lengths": ops.zeros((batch, num_beams), "int32"),
        "fin_reasons": ops.zeros((batch, num_beams), "int32") + LENGTH,
        "done": max_new_tokens <= 0,
        "max_new_tokens": max_new_tokens,
    }
    return _select(state, beams(prompt["logits"]), params)


def beam_decode(model, state, params, num_steps):
    """Up to `num_steps` more beam steps (an `ops.while_loop`)."""
    return run_decode_steps(
        model,
        state,
        num_steps,
        max_length=ops.shape(state["alive_tokens"])[2],
        choose=lambda state, logits: _select(state, logits, params),
    )


def beam_finish(state, prompt_length, params):
    """The best hypothesis per row: `(token_ids, lengths, stop_reason, score)`.

    Rows still running (the cache ran out) first retire their live beams.
    """
    state = _retire_alive(state, ops.logical_not(state["done"]), params)
    best = ops.argmax(state["fin_scores"], axis=1)[:, None]  # (B, 1)
    tokens = ops.take_along_axis(state["fin_tokens"], best[:, :, None], axis=1)[:, 0]
    lengths = ops.take_along_axis(state["fin_lengths"], best, axis=1)[:, 0]
    reasons = ops.take_along_axis(state["fin_reasons"], best, axis=1)[:, 0]
    scores = ops.take_along_axis(state["fin_scores"], best, axis=1)[:, 0]
    reasons = ops.where(reasons == RUNNING, LENGTH, reasons)
    return tokens[:, prompt_length:], lengths, reasons, scores


def beam_params(
    batch_size,
    length_penalty=_DEFAULTS.length_penalty,
    early_stopping=_DEFAULTS.early_stopping,
    repetition_penalty=_DEFAULTS.repetition_penalty,
    end_token_id=-1,
    pad_token_id=0,
    utf8_table=None,
):
    """The parameter dict of `beam_prefill`/`beam_decode` (tensors)."""

    def per_row(value, dtype):
        return ops.broadcast_to(ops.cast(value, dtype), (batch_size,))

    return {
        "length_penalty": per_row(length_penalty, "float32"),
        "repetition_penalty": per_row(repetition_penalty, "float32"),
        "early_stopping": ops.cast(early_stopping, "bool"),
        "end_token_id": ops.reshape(ops.cast(end_token_id, "int32"), (-1,)),
        "pad_token_id": ops.cast(pad_token_id, "int32"),
        **({} if utf8_table is None else {"utf8_table": ops.cast(utf8_table, "int32")}),
    }


def beam_search_tokens(
    model,
    token_ids,
    padding_mask,
    max_new_tokens,
    *,
    num_beams=_DEFAULTS.num_beams,
    length_penalty=_DEFAULTS.length_penalty,
    early_stopping=_DEFAULTS.early_stopping,
    repetition_penalty=_DEFAULTS.repetition_penalty,
    end_token_id=-1,
    pad_token_id=0,
    max_length=None,
    utf8_table=None,
):
    """Beam search in-graph; the counterpart of `generate_tokens`.

    Args:
        model, token_ids, padding_mask, max_new_tokens, repetition_penalty,
            end_token_id, pad_token_id, max_length, utf8_table: as in
            `generate_tokens`.
        num_beams: Python int, the beams kept per row. `1` is greedy search.
            Defaults to `4`.
        length_penalty: exponent of the length that divides a hypothesis's
            summed log-probability; `> 1` favours longer outputs, `< 1`
            shorter ones. Defaults to `1.0`.
        early_stopping: stop a row as soon as `num_beams` hypotheses ended
            (else when no live beam can beat them). Defaults to `False`.

    Returns:
        `(token_ids, lengths, stop_reason, score)`, the first three as in
        `generate_tokens`, `score` float32 `(B,)` the best hypothesis's
        length-normalized log-probability.
    """
    max_length = max_length or model.config.context_length
    batch = ops.shape(token_ids)[0]
    params = beam_params(
        batch,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        repetition_penalty=repetition_penalty,
        end_token_id=end_token_id,
        pad_token_id=pad_token_id,
        utf8_table=utf8_table,
    )
    state = beam_prefill(model, token_ids, padding_mask, max_new_tokens, params, max_length, num_beams)
    state = beam_decode(model, state, params, max_length)
    return beam_finish(state, ops.shape(token_ids)[1], params)
