"""`ServingModule`: the tf.Module whose signatures a SavedModel serves.

Signatures, all with TF Serving's predict method:

    serving_default  prompt string [B]
                     (optional) max_new_tokens int32, temperature float32,
                     top_k int32, top_p float32, seed int32, each [1] or [B]
                     (one seed: row i uses seed + i)
                     -> text string [B], token_ids int32 [B, N], stop_reason string [B]
    generate         prompt string [B] -> as serving_default, every option at
                     its default (a loaded SavedModel's Python signatures do
                     not apply defaults: this one needs none)
    chat             role string [B, T], content string [B, T] (a turn per
                     column; an empty role ends a row's conversation early),
                     and serving_default's optional inputs
                     -> as serving_default; the conversation is rendered with
                     `kerasllm.tokenizers.chat_template` and the answer ends at
                     the end of turn (`<|im_end|>`)
    (`generate` and `chat` cut max_new_tokens to what fits the context after
    the longest prompt, where serving_default reports an error.)
    score            text string [B] -> log_probability float32 [B], num_tokens int32 [B]
    logits           token_ids int32 [B, T] -> logits float32 [B, T, V]

(`chat` only where the tokenizer has the chat tokens.) Tokenizing, sampling
and detokenizing all run in the graph (the tokenizer is a `tf.Module`
attribute, so its tables are saved with the model), so a client sends
strings and gets strings. The decode loop is
`kerasllm.generation.generate_tokens`, the same function `kerasllm generate`
runs, traced here in a plain (non-XLA) `tf.function`, with the valid-UTF-8
mask on: the text never holds a broken character.

Optional inputs: TF Serving's SignatureDef has a `defaults` map, filled by
`tf.saved_model.save` from the tensor default values of the signature
function's trailing arguments; the model server feeds those for inputs a
request leaves out (`GetInputValues` in tensorflow/cc/saved_model/util.cc and
the TFRT predict path). So `{"instances": [{"prompt": "def "}]}` is a full
request. The defaults are `GenerationOptions`'s (greedy). The optional inputs
have shape `[None]`, not scalars, because TF Serving's row format
(`"instances"`) stacks every named input along the batch axis: give one
value for all rows or one per row.

Bad inputs fail inside the graph with `tf.debugging.assert_*` messages (an
`INVALID_ARGUMENT` error carrying the message and the received values). The
messages hold no quote characters: TensorFlow prints them backslash-escaped.
"""

import re

import tensorflow as tf

from kerasllm.generation.decode_loop import END_TOKEN, LENGTH, STOP_REASONS, generate_tokens
from kerasllm.generation.generation_options import GenerationOptions
from kerasllm.generation.utf8 import token_table
from kerasllm.tokenizers import chat_template

# The defaults of the optional inputs (greedy: temperature 0).
DEFAULTS = GenerationOptions().graph_values()
_ROLE, _CONTENT = "\x00role\x00", "\x00content\x00"
_RESERVED_PATTERN = "(?s).*(%s).*" % "|".join(
    re.escape(token) for token in (chat_template.IM_START, chat_template.IM_END)
)


def _turn_pieces():
    """`render_turn`'s text around the role and the content."""
    before, rest = chat_template.render_turn(_ROLE, _CONTENT).split(_ROLE)
    between, after = rest.split(_CONTENT)
    return before, between, after


def _per_row(value, batch, name):
    """Broadcast a `[1]` or `[B]` input to `[B]`, or fail with a readable message."""
    size = tf.size(value)
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(size, 1), tf.equal(size, batch)),
        [
            f"{name} must have one value, or one per prompt. Received this many "
            f"values of {name}, and this many prompts:",
            size,
            batch,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.broadcast_to(tf.reshape(value, [-1]), [batch])


def _to_dense(ragged, pad_value, width):
    """Right-pad ragged `[B, None]` to dense `[B, width]` (`width` a tensor)."""
    shape = tf.stack([ragged.nrows(), tf.cast(width, ragged.row_splits.dtype)])
    return ragged.to_tensor(default_value=pad_value, shape=shape)


def _left_pad(ragged, pad_value):
    """Ragged `[B, None]` ids → left-padded dense `[B, P]` and its mask."""
    lengths = tf.cast(ragged.row_lengths(), tf.int32)  # (B,)
    width = tf.reduce_max(tf.concat([lengths, [1]], axis=0))  # P >= 1
    right = _to_dense(ragged, pad_value, width)  # (B, P) right-padded
    columns = tf.range(width)[tf.newaxis, :]  # (1, P)
    shift = (width - lengths)[:, tf.newaxis]  # (B, 1) pad columns on the left
    source = columns - shift  # (B, P) column of the right-padded row
    mask = source >= 0
    dense = tf.gather(right, tf.maximum(source, 0), batch_dims=1)
    return tf.where(mask, dense, pad_value), tf.cast(mask, tf.int32), lengths


class ServingModule(tf.Module):
    """A GPT and its tokenizer with string-in/string-out serving signatures.

    Args:
        model: a `kerasllm.models.GPT` (on the TensorFlow backend).
        tokenizer: its kerasllm tokenizer (a `tf.Module` with in-graph
            `tokenize` / `detokenize`).
        max_new_tokens: the default of the `max_new_tokens` input. Defaults
            to `GenerationOptions`'s (cut to `context_length - 1`).

    Example:
    ```python
    module = ServingModule(model, model.tokenizer)
    tf.saved_model.save(module, path, signatures=module.signatures())
    ```
    """

    def __init__(self, model, tokenizer, max_new_tokens=None):
        super().__init__(name="kerasllm_serving")
        self.model = model
        self.tokenizer = tokenizer
        config = model.config
        self.context_length = int(config.context_length)
        self.vocab_size = int(config.vocab_size)
        self.end_token_id = int(tokenizer.end_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id)
        if max_new_tokens is None:
            max_new_tokens = GenerationOptions().max_new_tokens
        self.default_max_new_tokens = int(min(max_new_tokens, self.context_length - 1))
        if self.default_max_new_tokens < 1:
            raise ValueError(
                "max_new_tokens must be >= 1. Received: "
                f"max_new_tokens={max_new_tokens!r}"
            )
        if tokenizer.vocabulary_size > self.vocab_size:
            raise ValueError(
                "The tokenizer has more ids than the model has embeddings. "
                f"Received: tokenizer.vocabulary_size={tokenizer.vocabulary_size}, "
                f"model vocab_size={self.vocab_size}"
            )
        # Valid UTF-8 by construction (`kerasllm.generation.utf8`).
        self.utf8_table = tf.constant(token_table(tokenizer, self.vocab_size))
        specials = tokenizer.special_tokens
        self.has_chat = chat_template.IM_START in specials and chat_template.IM_END in specials
        self.end_of_turn_id = int(specials[chat_template.IM_END]) if self.has_chat else -1
        self._build_functions()

    def _build_functions(self):
        default_new = self.default_max_new_tokens
        options = [
            tf.TensorSpec([None], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([None], tf.float32, name="temperature"),
            tf.TensorSpec([None], tf.int32, name="top_k"),
            tf.TensorSpec([None], tf.float32, name="top_p"),
            tf.TensorSpec([None], tf.int32, name="seed"),
        ]
        defaults = dict(
            max_new_tokens=tf.constant([default_new], tf.int32),
            temperature=tf.constant([DEFAULTS["temperature"]], tf.float32),
            top_k=tf.constant([DEFAULTS["top_k"]], tf.int32),
            top_p=tf.constant([DEFAULTS["top_p"]], tf.float32),
            seed=tf.constant([DEFAULTS["seed"]], tf.int32),
        )
        compile_options = dict(
            jit_compile=False,  # stock TF Serving runs with XLA JIT off
            autograph=False,
        )

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name="prompt")] + options,
            **compile_options,
        )
        def generate(
            prompt,
            max_new_tokens=defaults["max_new_tokens"],
            temperature=defaults["temperature"],
            top_k=defaults["top_k"],
            top_p=defaults["top_p"],
            seed=defaults["seed"],
        ):
            return self._generate(prompt, max_new_tokens, temperature, top_k, top_p, seed)

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name="prompt")],
            **compile_options,
        )
        def generate_prompt_only(prompt):
            # No max_new_tokens was asked for: as many as fit, up to the default.
            return self._generate(prompt, **defaults, fit_context=True)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.string, name="role"),
                tf.TensorSpec([None, None], tf.string, name="content"),
            ]
            + options,
            **compile_options,
        )
        def chat(
            role,
            content,
            max_new_tokens=defaults["max_new_tokens"],
            temperature=defaults["temperature"],
            top_k=defaults["top_k"],
            top_p=defaults["top_p"],
            seed=defaults["seed"],
        ):
            prompt = self._render_chat(role, content)
            return self._generate(
                prompt, max_new_tokens, temperature, top_k, top_p, seed,
                end_token_ids=[self.end_token_id, self.end_of_turn_id],
                fit_context=True,
            )

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name="text")],
            jit_compile=False,
            autograph=False,
        )
        def score(text):
            return self._score(text)

        @tf.function(
            input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids")],
            jit_compile=False,
            autograph=False,
        )
        def logits(token_ids):
            return self._logits(token_ids)

        self.generate = generate
        self.generate_prompt_only = generate_prompt_only
        self.chat = chat if self.has_chat else None
        self.score = score
        self.logits = logits

    def signatures(self):
        """The `signatures=` dict for `tf.saved_model.save`."""
        signatures = {
            "serving_default": self.generate,
            "generate": self.generate_prompt_only,
            "score": self.score,
            "logits": self.logits,
        }
        if self.chat is not None:
            signatures["chat"] = self.chat
        return signatures

    # ------------------------------------------------------------ chat

    def _render_chat(self, role, content):
        """`render_chat(messages, add_generation_prompt=True)` per row, in-graph."""
        roles = tf.constant(list(chat_template.ROLES))
        known = tf.reduce_any(tf.equal(role[:, :, tf.newaxis], roles), axis=-1)
        used = tf.not_equal(role, "")  # (B, T)
        reserved = tf.strings.regex_full_match(content, _RESERVED_PATTERN)  # (B, T)
        checks = [
            tf.debugging.Assert(
                tf.reduce_all(tf.logical_or(known, tf.logical_not(used))),
                ["Each role must be system, user or assistant (or empty after the "
                 "last turn). Received:", role],
                summarize=16,
            ),
            tf.debugging.Assert(
                tf.reduce_all(tf.reduce_any(used, axis=1)),
                ["Each conversation needs at least one turn. Received roles:", role],
                summarize=16,
            ),
            tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(tf.logical_and(reserved, used))),
                ["A content holds a reserved chat token, which would end or open a turn."],
            ),
        ]
        before, between, after = _turn_pieces()
        with tf.control_dependencies(checks):
            turns = tf.strings.join([before, role, between, content, after])  # (B, T)
        turns = tf.where(used, turns, "")
        text = tf.strings.reduce_join(turns, axis=1)  # (B,)
        return tf.strings.join([text, chat_template.generation_prompt()])

    # ------------------------------------------------------------ generate

    def _generate(
        self,
        prompt,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        seed,
        end_token_ids=None,
        fit_context=False,
    ):
        context = self.context_length
        ragged = self.tokenizer.tokenize(prompt)  # (B, None) int32
        token_ids, padding_mask, lengths = _left_pad(ragged, self.pad_token_id)
        batch = tf.shape(prompt)[0]
        max_new_tokens = _per_row(max_new_tokens, batch, "max_new_tokens")
        if fit_context:
            room = tf.maximum(context - tf.shape(token_ids)[1], 1)
            max_new_tokens = tf.minimum(max_new_tokens, room)
        temperature = _per_row(temperature, batch, "temperature")
        top_k = _per_row(top_k, batch, "top_k")
        top_p = _per_row(top_p, batch, "top_p")
        # One seed: row i uses seed + i, as `kerasllm generate` does, so a
        # batch's rows differ and each matches the same request made there.
        seed = tf.cond(
            tf.equal(tf.size(seed), 1),
            lambda: tf.reshape(seed, [-1])[0] + tf.range(batch),
            lambda: _per_row(seed, batch, "seed"),
        )
        longest = tf.shape(token_ids)[1]
        checks = [
            tf.debugging.assert_positive(
                lengths,
                message="Every prompt needs at least one token; an empty prompt "
                "has nothing to continue. Received token counts per prompt:",
                summarize=16,
            ),
            tf.debugging.assert_less_equal(
                lengths,
                context - 1,
                message=f"A prompt is longer than the model context: context_length="
                f"{context}, and at least one new token must fit. Received token "
                "counts per prompt:",
                summarize=16,
            ),
            tf.debugging.assert_greater_equal(
                max_new_tokens,
                1,
                message="max_new_tokens must be at least 1. Received:",
                summarize=16,
            ),
            tf.debugging.assert_less_equal(
                max_new_tokens,
                context - 1,
                message=f"max_new_tokens must be at most context_length - 1 = "
                f"{context - 1}. Received:",
                summarize=16,
            ),
            tf.debugging.assert_less_equal(
                longest + max_new_tokens,
                context,
                message=f"The longest prompt plus max_new_tokens exceeds the model "
                f"context_length={context} (prompts in one request are left-padded to "
                "the longest). Received longest prompt length + max_new_tokens per row:",
                summarize=16,
            ),
            tf.debugging.assert_non_negative(
                temperature, message="temperature must be >= 0 (0 is greedy). Received:"
            ),
            tf.debugging.assert_non_negative(
                top_k, message="top_k must be >= 0 (0 keeps every token). Received:"
            ),
            tf.debugging.assert_positive(
                top_p, message="top_p must be in (0, 1]. Received:"
            ),
            tf.debugging.assert_less_equal(
                top_p, 1.0, message="top_p must be in (0, 1]. Received:"
            ),
        ]
        # The model must not run on unchecked inputs: an out-of-range
        # position would fail first, with a gather error instead of these.
        with tf.control_dependencies(checks):
            token_ids, padding_mask, max_new_tokens = (
                tf.identity(t) for t in (token_ids, padding_mask, max_new_tokens)
            )
        new_ids, new_lengths, reason = generate_tokens(
            self.model,
            token_ids,
            padding_mask,
            max_new_tokens,
            # "sample" with temperature 0 picks the argmax, the same token as
            # "greedy", so one graph serves both.
            strategy="sample",
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            end_token_id=end_token_ids if end_token_ids is not None else self.end_token_id,
            pad_token_id=self.pad_token_id,
            max_length=context,
            utf8_table=self.utf8_table,
        )
        width = tf.reduce_max(tf.concat([new_lengths, [0]], axis=0))
        new_ids = new_ids[:, :width]
        generated = tf.RaggedTensor.from_tensor(new_ids, lengths=new_lengths)
        text = self.tokenizer.detokenize(generated)
        # -1 after each row's end: a client cannot mistake it for a token.
        columns = tf.range(width)[tf.newaxis, :]
        padded_ids = tf.where(columns < new_lengths[:, tf.newaxis], new_ids, -1)
        stop_reason = tf.where(
            tf.equal(reason, END_TOKEN),
            tf.constant(STOP_REASONS[END_TOKEN]),
            tf.constant(STOP_REASONS[LENGTH]),
        )
        return {"text": text, "token_ids": padded_ids, "stop_reason": stop_reason}

    # ------------------------------------------------------------ score

    def _score(self, text):
        """Sum of log p(token | previous tokens) per text, after an end token.

        The text is scored as a document start: the end-of-text token (the
        separator the model saw before every training document) is the
        context of the first token.
        """
        context = self.context_length
        ragged = self.tokenizer.tokenize(text)  # (B, None)
        lengths = tf.cast(ragged.row_lengths(), tf.int32)  # (B,)
        check = tf.debugging.assert_less_equal(
            lengths,
            context,
            message=f"A text is longer than the model context_length={context}. "
            "Received token counts per text:",
            summarize=16,
        )
        batch = tf.shape(text)[0]
        width = tf.reduce_max(tf.concat([lengths, [1]], axis=0))  # T >= 1
        targets = _to_dense(ragged, self.pad_token_id, width)  # (B, T)
        starts = tf.fill([batch, 1], self.end_token_id)
        inputs = tf.concat([starts, targets[:, :-1]], axis=1)  # (B, T)
        with tf.control_dependencies([check]):
            inputs = tf.identity(inputs)
        # Right padding needs no mask: causal attention never looks ahead.
        logits = self.model(inputs, training=False)  # (B, T, V) float32
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        picked = tf.gather(log_probs, targets, batch_dims=2)  # (B, T)
        real = tf.range(width)[tf.newaxis, :] < lengths[:, tf.newaxis]
        total = tf.reduce_sum(tf.where(real, picked, 0.0), axis=1)
        return {"log_probability": total, "num_tokens": lengths}

    # ------------------------------------------------------------ logits

    def _logits(self, token_ids):
        context, vocab = self.context_length, self.vocab_size
        length = tf.shape(token_ids)[1]
        checks = [
            tf.debugging.assert_positive(
                length, message="token_ids needs at least one column. Received length:"
            ),
            tf.debugging.assert_less_equal(
                length,
                context,
                message=f"token_ids is longer than the model context_length={context}. "
                "Received length:",
            ),
            tf.debugging.assert_non_negative(
                token_ids, message="token_ids must be >= 0. Received:"
            ),
            tf.debugging.assert_less(
                token_ids,
                vocab,
                message=f"token_ids must be < vocab_size={vocab}. Received:",
            ),
        ]
        with tf.control_dependencies(checks):
            token_ids = tf.identity(token_ids)
        return {"logits": self.model(token_ids, training=False)}
