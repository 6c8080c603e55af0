"""`Generator`: text in, text out, over the compiled decode loop.

The host side of generation: it encodes prompts, left-pads them into a
batch, picks the shape buckets, runs the compiled `prefill`/`decode`
programs (`decode_loop`, `beam_search`), and turns ids back into text with
stop strings and UTF-8-safe streaming.

Shapes are bucketed so that a handful of programs serve every call: the
batch is padded to a power of two rows, the prompt to a power of two tokens
(at least 16), and the KV cache to the next of 32, 48, 64, 96, 128, 192, ...
slots that holds prompt and output (at most `context_length`). Programs are
kept per `(strategy, batch bucket, prompt bucket, cache bucket)` and reused;
sampling parameters are tensors, so another temperature or top-k never
recompiles.
"""

import copy
import dataclasses
import math
import random
import weakref
from typing import List, Optional

import numpy as np
from keras import ops

from kerasllm.generation import beam_search, decode_loop, utf8
from kerasllm.generation.compile import compile_model_function
from kerasllm.generation.generation_options import GenerationOptions
from kerasllm.generation.text import RowText

MIN_PROMPT_BUCKET = 16
MIN_CACHE_BUCKET = 32
# Decode steps between stop-string checks (one step when streaming).
STOP_CHECK_INTERVAL = 16


@dataclasses.dataclass
class Completion:
    """One generated continuation.

    Attributes:
        prompt: the prompt text (`None` when ids were given).
        text: the generated text (`None` without a tokenizer), without the
            end token or the stop string.
        token_ids: the generated ids (end token excluded; with a stop
            string, the tokens whose text lies entirely before it).
        stop_reason: `"end_token"`, `"length"` or `"stop_string"`.
        num_prompt_tokens: prompt length in tokens (after truncation).
    """

    prompt: Optional[str]
    text: Optional[str]
    token_ids: List[int]
    stop_reason: str
    num_prompt_tokens: int

    def to_dict(self):
        return dataclasses.asdict(self)


def _power_of_two(n, minimum=1):
    return max(minimum, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def prompt_bucket(longest, limit):
    """The padded prompt length for a batch whose longest prompt has `longest`
    tokens: a power of two (at least 16), at most `limit`. The compiled
    programs are kept per bucket, so a handful of shapes serve every batch;
    code that builds its own arrays from prompts (the rollouts of GRPO and
    PPO) pads to the same buckets for the same reason."""
    return min(_power_of_two(longest, MIN_PROMPT_BUCKET), limit)


def cache_bucket(n):
    """The smallest of 32, 48, 64, 96, 128, 192, ... that is `>= n`."""
    size = MIN_CACHE_BUCKET
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


class Generator:
    """Generates text or ids with a GPT, reusing compiled programs across calls.

    Usually reached through `GPT.generate`, `GPT.generate_ids` and
    `GPT.stream`, which share one `Generator` per model (`get_generator`).

    Args:
        model: a `kerasllm.models.GPT`.
        tokenizer: the tokenizer for text prompts. Defaults to
            `model.tokenizer` (attached by `kerasllm.load`).
        jit_compile: compile with XLA on TensorFlow. Defaults to `True`.
        one_row_projections: under XLA on TensorFlow, trace the projections
            in their one-row decoding form
            (`kerasllm.layers.dense.one_row_projections`). Defaults to `True`.

    Example:
    ```python
    generator = kerasllm.generation.Generator(model)
    [completion] = generator.complete(["Once upon a time"], max_new_tokens=32,
                                      strategy="top_p", seed=0, stop=["\\n\\n"])
    completion.text, completion.stop_reason
    ```
    """

    def __init__(self, model, tokenizer=None, jit_compile=True, one_row_projections=True):
        self.model = model
        self._tokenizer = tokenizer
        self.jit_compile = jit_compile
        self.one_row_projections = one_row_projections
        self._programs = {}

    @property
    def tokenizer(self):
        return self._tokenizer if self._tokenizer is not None else getattr(
            self.model, "tokenizer", None
        )

    def with_tokenizer(self, tokenizer):
        """A `Generator` with another tokenizer that shares these compiled programs."""
        other = copy.copy(self)
        other._tokenizer = tokenizer
        return other

    @property
    def trace_count(self):
        """Total traces of every compiled program (each trace is a compile)."""
        return sum(program.trace_count for program in self._programs.values())

    # ------------------------------------------------------------ public

    def complete(self, prompts, *, end_token_id="auto", **options):
        """Generates one `Completion` per prompt.

        Args:
            prompts: a list of `str` (needs a tokenizer) or a list of id lists.
            end_token_id: the id that ends a row; `"auto"` takes the
                tokenizer's `end_token_id` (none without a tokenizer),
                `None` disables it.
            max_new_tokens: most tokens generated per prompt. Defaults to 64.
            strategy: `"greedy"`, `"sample"`, `"top_k"` (sampling, `top_k`
                defaulting to 50), `"top_p"` (sampling, `top_p` defaulting to
                0.9) or `"beam"`. Defaults to `"greedy"`.
            temperature: sampling temperature, `>= 0` (0 is greedy).
                Defaults to 1.
            top_k: keep the k most likely tokens (0 = all).
            top_p: keep the smallest set of tokens with this much mass.
            min_p: keep tokens at least this fraction as likely as the top
                one. Defaults to 0.
            repetition_penalty: `> 1` discourages tokens already present.
                Defaults to 1.
            num_beams, length_penalty, early_stopping: beam search settings.
                Defaults to 4, 1.0, `False`.
            seed: sampling seed (row `i` uses `seed + i`); `None` draws one.
            stop: stop strings; generation of a row ends where one appears,
                and the string is not part of the output.
            stop_token_ids: more ids that end a row like the end token (e.g.
                the chat template's `<|im_end|>`).
            truncate: `None` (a prompt that does not fit beside
                `max_new_tokens` in the context is an error) or `"left"`
                (drop its oldest tokens).
            valid_utf8: choose only tokens that keep the text valid UTF-8
                (`kerasllm.generation.utf8`), in every strategy; a row cut by
                `max_new_tokens` inside a character ends before it. Needs a
                tokenizer. Defaults to `True`.

            The defaults are `GenerationOptions`'s.

        Returns:
            A list of `Completion`.
        """
        return list(self._generate(prompts, end_token_id, GenerationOptions(**options)))

    def stream(self, prompt, *, end_token_id="auto", **options):
        """Yields the text of one completion in pieces, as tokens arrive.

        Pieces never split a UTF-8 character and never contain (part of) a
        stop string. Takes the options of `complete` (not `"beam"`).

        Args:
            prompt: a `str` (needs a tokenizer).

        Yields:
            `str` pieces whose concatenation is the completion's text.
        """
        for piece in self.stream_completion(prompt, end_token_id=end_token_id, **options):
            if isinstance(piece, str):
                yield piece

    def stream_completion(self, prompt, *, end_token_id="auto", **options):
        """`stream`, then the finished `Completion` as the last item.

        For callers that report how the completion ended (a server's
        `finish_reason` and token counts) as well as its pieces.

        Yields:
            non-empty `str` pieces as `stream` does, then one `Completion`
            (its `text` is the pieces joined, its `stop_reason` and
            `token_ids` what the decode loop recorded).
        """
        if not isinstance(prompt, str):
            raise TypeError(f"stream expects one str prompt. Received: {type(prompt).__name__}")
        opts = GenerationOptions(**options)
        if opts.graph_strategy == "beam":
            raise ValueError("Beam search cannot stream: its best sequence is known only at the end. Received: strategy='beam'")
        for piece in self._generate([prompt], end_token_id, opts, stream=True):
            if not isinstance(piece, str) or piece:
                yield piece

    # ------------------------------------------------------------ inputs

    def _encode(self, prompts, end_token_id):
        """`(texts or None, id lists, end id)` from strings or id lists."""
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
            raise ValueError(
                "prompts must be a non-empty list of strings or of id lists. "
                f"Received: {prompts!r}"
            )
        tokenizer = self.tokenizer
        if end_token_id == "auto":
            end_token_id = tokenizer.end_token_id if tokenizer is not None else None
        if all(isinstance(p, str) for p in prompts):
            if tokenizer is None:
                raise ValueError(
                    "Text prompts need a tokenizer: load the model with "
                    "kerasllm.load(model_dir) or pass tokenizer=. Received: no tokenizer"
                )
            ids = [list(x) for x in tokenizer.encode_batch(list(prompts))]
            texts = list(prompts)
        else:
            ids = []
            for p in prompts:
                arr = np.asarray(p)
                if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                    raise ValueError(
                        f"Each prompt must be a str or a list of int ids. Received: {p!r}"
                    )
                ids.append([int(i) for i in arr])
            texts = None
        vocab = self.model.config.vocab_size
        for row in ids:
            bad = [i for i in row if not 0 <= i < vocab]
            if bad:
                raise ValueError(
                    f"Token ids must be in [0, vocab_size={vocab}). Received: {bad[:5]}"
                )
        # An empty prompt starts a new document, after the end-of-text token.
        for row in ids:
            if not row:
                if end_token_id is None:
                    raise ValueError("An empty prompt needs an end_token_id to start from. Received: prompt=''")
                row.append(end_token_id)
        return texts, ids, end_token_id

    def _fit_context(self, ids, opts):
        context = self.model.config.context_length
        if opts.max_new_tokens >= context:
            raise ValueError(
                f"max_new_tokens must be smaller than the model's context_length={context}. "
                f"Received: max_new_tokens={opts.max_new_tokens}"
            )
        room = context - opts.max_new_tokens
        fitted = []
        for i, row in enumerate(ids):
            if len(row) > room:
                if opts.truncate != "left":
                    raise ValueError(
                        f"Prompt {i} has {len(row)} tokens; with max_new_tokens="
                        f"{opts.max_new_tokens} at most {room} fit the context_length="
                        f"{context}. Pass truncate='left' to drop its oldest tokens, or "
                        "lower max_new_tokens."
                    )
                row = row[len(row) - room :]
            fitted.append(row)
        return fitted

    # ------------------------------------------------------------ programs

    def _utf8_table(self, opts):
        """The valid-UTF-8 token table, or `None` (off, or no tokenizer)."""
        tokenizer = self.tokenizer
        if not opts.valid_utf8 or tokenizer is None:
            return None
        vocab = self.model.config.vocab_size
        tables = _UTF8_TABLES.setdefault(tokenizer, {})
        if vocab not in tables:
            tables[vocab] = utf8.token_table(tokenizer, vocab)
        return tables[vocab]

    def _program(self, key, fn):
        if key not in self._programs:
            self._programs[key] = compile_model_function(
                self.model, fn, self.jit_compile, self.one_row_projections
            )
        return self._programs[key]

    def _buckets(self, ids, opts):
        context = self.model.config.context_length
        batch = _power_of_two(len(ids))
        longest = max(len(row) for row in ids)
        prompt = prompt_bucket(longest, context - opts.max_new_tokens)
        cache = min(cache_bucket(prompt + opts.max_new_tokens), context)
        return batch, prompt, cache

    def _batch(self, ids, opts, pad_id):
        """Left-padded `(B, P)` ids and mask, per-row max_new_tokens and seeds."""
        batch, prompt, _ = self._buckets(ids, opts)
        token_ids = np.full((batch, prompt), pad_id, "int32")
        mask = np.zeros((batch, prompt), "int32")
        max_new = np.zeros((batch,), "int32")  # 0: a filler row, done at once
        for i, row in enumerate(ids):
            token_ids[i, prompt - len(row) :] = row
            mask[i, prompt - len(row) :] = 1
            max_new[i] = opts.max_new_tokens
        mask[len(ids) :, -1] = 1  # filler rows hold one (pad) token
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**31)
        seeds = ((seed + np.arange(batch)) % (2**31)).astype("int32")
        return token_ids, mask, max_new, seeds

    # ------------------------------------------------------------ running

    def _generate(self, prompts, end_token_id, opts, stream=False):
        """Yields `Completion`s; when `stream`, text pieces before each."""
        texts, ids, end_token_id = self._encode(prompts, end_token_id)
        tokenizer = self.tokenizer
        if opts.stop and tokenizer is None:
            raise ValueError(f"Stop strings need a tokenizer. Received: stop={list(opts.stop)}")
        ids = self._fit_context(ids, opts)
        pad_id = getattr(tokenizer, "pad_token_id", None)
        pad_id = 0 if pad_id is None else int(pad_id)
        end = ([] if end_token_id is None else [int(end_token_id)]) + list(opts.stop_token_ids)
        end = np.asarray(end or [-1], "int32")
        rows = [RowText(tokenizer, opts.stop) for _ in ids] if tokenizer is not None else None
        # With the mask on, held-back bytes at the end can only be a
        # character cut by the length limit, which the lengths leave out.
        incomplete = "drop" if self._utf8_table(opts) is not None else "replace"
        if opts.graph_strategy == "beam":
            generated, lengths, reasons = self._run_beam(ids, opts, pad_id, end)
            for i, row in enumerate(rows or ()):
                row.push(generated[i][: lengths[i]])
        else:
            run = self._run_decode(ids, opts, pad_id, end, rows, stream)
            for piece in run:
                yield piece
            generated, lengths, reasons = run.result
        for i in range(len(ids)):
            token_ids = [int(t) for t in generated[i][: lengths[i]]]
            reason = decode_loop.STOP_REASONS[int(reasons[i])]
            text = None
            if rows is not None:
                row = rows[i]
                if row.stopped:
                    reason = "stop_string"
                    token_ids = token_ids[: row.num_tokens]
                row.finish(incomplete)
                text = row.text
                if stream:
                    yield row.pop_text(final=True)
            yield Completion(
                prompt=texts[i] if texts is not None else None,
                text=text,
                token_ids=token_ids,
                stop_reason=reason,
                num_prompt_tokens=len(ids[i]),
            )

    def _run_decode(self, ids, opts, pad_id, end, rows, stream):
        return _DecodeRun(self, ids, opts, pad_id, end, rows, stream)

    def _run_beam(self, ids, opts, pad_id, end):
        batch, prompt, cache = self._buckets(ids, opts)
        token_ids, mask, max_new, _ = self._batch(ids, opts, pad_id)
        params = beam_search.beam_params(
            batch,
            length_penalty=opts.length_penalty,
            early_stopping=opts.early_stopping,
            repetition_penalty=opts.repetition_penalty,
            end_token_id=end,
            pad_token_id=pad_id,
            utf8_table=self._utf8_table(opts),
        )
        num_beams = opts.num_beams
        model = self.model

        def beam_prefill(token_ids, mask, max_new, params):
            return beam_search.beam_prefill(model, token_ids, mask, max_new, params, cache, num_beams)

        def beam_decode(state, params, num_steps):
            state = beam_search.beam_decode(model, state, params, num_steps)
            return beam_search.beam_finish(state, prompt, params)

        prefill = self._program(("beam_prefill", num_beams, batch, prompt, cache), beam_prefill)
        decode = self._program(("beam_decode", num_beams, batch, prompt, cache), beam_decode)
        state = prefill(token_ids, mask, max_new, params)
        out_ids, lengths, reasons, _ = decode(state, params, ops.convert_to_tensor(cache, "int32"))
        return (
            ops.convert_to_numpy(out_ids),
            ops.convert_to_numpy(lengths),
            ops.convert_to_numpy(reasons),
        )


class _DecodeRun:
    """One greedy/sampling generation, run chunk by chunk; iterate for pieces.

    After the prefill and after each chunk of decode steps, new ids go to the
    rows' `RowText`; a row that met a stop string is marked done in the
    state. When streaming, the settled text of row 0 is yielded after every
    step. `result` holds `(ids, lengths, stop reasons)` at the end.
    """

    def __init__(self, generator, ids, opts, pad_id, end, rows, stream):
        self.generator, self.ids, self.opts = generator, ids, opts
        self.pad_id, self.end, self.rows, self.stream = pad_id, end, rows, stream
        self.result = None

    def __iter__(self):
        gen, opts, model = self.generator, self.opts, self.generator.model
        strategy = opts.graph_strategy
        batch, prompt, cache = gen._buckets(self.ids, opts)
        token_ids, mask, max_new, seeds = gen._batch(self.ids, opts, self.pad_id)
        top_k, top_p = opts.sampling_values()
        params = decode_loop.sampling_params(
            batch,
            temperature=np.full((batch,), opts.temperature, "float32"),
            top_k=np.full((batch,), top_k, "int32"),
            top_p=np.full((batch,), top_p, "float32"),
            min_p=np.full((batch,), opts.min_p, "float32"),
            repetition_penalty=np.full((batch,), opts.repetition_penalty, "float32"),
            seed=seeds,
            end_token_id=self.end,
            pad_token_id=self.pad_id,
            utf8_table=gen._utf8_table(opts),
        )

        def prefill_fn(token_ids, mask, max_new, params):
            return decode_loop.prefill(model, token_ids, mask, max_new, params, cache, strategy)

        def decode_fn(state, params, num_steps):
            return decode_loop.decode(model, state, params, num_steps, strategy)

        prefill = gen._program(("prefill", strategy, batch, prompt, cache), prefill_fn)
        decode = gen._program(("decode", strategy, batch, cache), decode_fn)
        state = prefill(token_ids, mask, max_new, params)

        checks_text = self.rows is not None and (opts.stop or self.stream)
        chunk = 1 if self.stream else (STOP_CHECK_INTERVAL if checks_text else cache)
        num_steps = ops.convert_to_tensor(chunk, "int32")
        fed = [0] * len(self.ids)  # ids already given to each RowText
        while True:
            tokens = ops.convert_to_numpy(state["tokens"])[:, prompt:]  # (B, S - P)
            lengths = ops.convert_to_numpy(state["lengths"])
            done = ops.convert_to_numpy(state["done"]).copy()
            if checks_text:
                for i, row in enumerate(self.rows):
                    if not row.stopped and lengths[i] > fed[i]:
                        if row.push(tokens[i, fed[i] : lengths[i]]):
                            done[i] = True
                        fed[i] = lengths[i]
                state["done"] = ops.convert_to_tensor(done)
                if self.stream:
                    yield self.rows[0].pop_text()
            index = int(ops.convert_to_numpy(state["index"]))
            if done.all() or index + 1 >= cache:
                break
            state = decode(state, params, num_steps)
        lengths = ops.convert_to_numpy(state["safe_lengths"])
        if self.rows is not None and not checks_text:
            for i, row in enumerate(self.rows):
                row.push(tokens[i, : lengths[i]])
        reasons = ops.convert_to_numpy(state["stop_reason"])
        reasons = np.where(reasons == decode_loop.RUNNING, decode_loop.LENGTH, reasons)
        self.result = (tokens, lengths, reasons)


_GENERATORS = weakref.WeakKeyDictionary()
# tokenizer -> {vocab_size: utf8.token_table}
_UTF8_TABLES = weakref.WeakKeyDictionary()


def get_generator(model):
    """The `Generator` shared by every `GPT.generate`/`stream` call on `model`."""
    if model not in _GENERATORS:
        _GENERATORS[model] = Generator(model)
    return _GENERATORS[model]


def forget_generator(model):
    """Drops the shared `Generator` of `model` and its compiled programs.

    Needed after a change to the model's layers that tracing captured (LoRA
    enabled, merged or removed); new weight values alone need no call.
    """
    _GENERATORS.pop(model, None)
