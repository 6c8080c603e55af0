"""`GPT`: a decoder-only causal language model built from kerasllm layers."""

import math

import keras
from keras import ops

from kerasllm.layers.initializers import clone_initializer, gpt2_normal
from kerasllm.layers.token_and_position_embedding import TokenAndPositionEmbedding
from kerasllm.layers.transformer_block import TransformerBlock, make_norm
from kerasllm.models.gpt_config import GPTConfig


@keras.saving.register_keras_serializable(package="kerasllm")
class GPT(keras.Model):
    """A GPT-style causal language model that returns next-token logits.

    token ids → `TokenAndPositionEmbedding` → dropout → `num_layers` ×
    `TransformerBlock` (pre-norm) → final norm → output head (the token
    embedding, transposed, when `tie_embeddings`). Logits are float32 also
    under a mixed-precision policy.

    Initialization follows GPT-2: every kernel and embedding drawn from
    `N(0, 0.02)`, the two residual projections of each block (attention output
    and feed-forward down) from `N(0, 0.02 / sqrt(2 * num_layers))` so the
    residual stream's variance does not grow with depth; biases zero. Every
    weight draws its own values (`clone_initializer`); under
    `keras.utils.set_random_seed` the same seed gives the same model.

    Args:
        config: a `GPTConfig` or a dict of its fields.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`, e.g.
            `dtype="mixed_bfloat16"`).

    Call arguments:
        inputs: int token ids `(batch, seq)`, or a dict with `"token_ids"`
            and an optional `"padding_mask"` `(batch, seq)` (1 for real
            tokens).
        training: whether dropout is active.

    Returns:
        float32 logits `(batch, seq, vocab_size)`.

    Example:
    ```python
    model = kerasllm.models.GPT.from_preset("tiny")
    logits = model(keras.ops.ones((2, 16), "int32"))  # (2, 16, 4096)
    model.compile(optimizer="adam", loss=kerasllm.training.LanguageModelLoss())
    ```
    """

    def __init__(self, config=None, **kwargs):
        super().__init__(**kwargs)
        config = GPTConfig() if config is None else GPTConfig.from_dict(config)
        self.config = config
        init = gpt2_normal()
        residual_init = gpt2_normal(0.02 / math.sqrt(2 * config.num_layers))
        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size=config.vocab_size,
            sequence_length=config.context_length,
            embedding_dim=config.hidden_dim,
            use_position_embedding=config.position == "learned",
            embeddings_initializer=clone_initializer(init),
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.embedding_dropout = keras.layers.Dropout(
            config.dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        self.blocks = [
            TransformerBlock(
                num_heads=config.num_heads,
                intermediate_dim=config.ffn_dim,
                num_kv_heads=config.kv_heads,
                dropout=config.dropout,
                norm=config.norm,
                norm_epsilon=config.norm_epsilon,
                activation=config.activation,
                use_bias=config.use_bias,
                use_rotary_embedding=config.position == "rope",
                rope_max_wavelength=config.rope_max_wavelength,
                kernel_initializer=clone_initializer(init),
                output_kernel_initializer=clone_initializer(residual_init),
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(config.num_layers)
        ]
        self.final_norm = make_norm(
            config.norm, config.norm_epsilon, config.use_bias, self.dtype_policy, "final_norm"
        )
        self.lm_head = None
        if not config.tie_embeddings:
            self.lm_head = keras.layers.Dense(
                config.vocab_size,
                use_bias=False,
                kernel_initializer=clone_initializer(init),
                dtype=self.dtype_policy,
                name="lm_head",
            )
        self.build((None, None))

    # ------------------------------------------------------------ building

    def build(self, input_shape=None):
        if self.built:
            return
        hidden_shape = (None, None, self.config.hidden_dim)
        self.embedding.build((None, None))
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        if self.lm_head is not None:
            self.lm_head.build(hidden_shape)
        self.built = True

    # ------------------------------------------------------------ forward

    def _check_length(self, token_ids, start=0):
        seq_len = token_ids.shape[1]
        if isinstance(seq_len, int) and isinstance(start, int):
            if start + seq_len > self.config.context_length:
                raise ValueError(
                    "The sequence is longer than the model's context. Received: "
                    f"{start + seq_len} positions, context_length="
                    f"{self.config.context_length}"
                )

    def _logits(self, hidden):
        return self._head(self.final_norm(hidden))

    def _head(self, normed):
        if self.lm_head is None:
            logits = self.embedding.attend(normed)  # (B, T, V)
        else:
            logits = self.lm_head(normed)  # (B, T, V)
        return ops.cast(logits, "float32")

    def hidden_states(self, inputs, positions=None, training=None):
        """The final-normalized hidden states: everything but the output head.

        What a model built on the GPT reads instead of logits (a classifier,
        a reward or value head).

        Args:
            inputs: as in `call`.
            positions: optional int positions `(batch, seq)`, e.g. counted
                from the first real token of a left-padded row so that it
                sees the positions it would see unpadded. Defaults to
                `arange(seq)`.
            training: whether dropout is active.

        Returns:
            `(batch, seq, hidden_dim)` in the compute dtype.
        """
        if isinstance(inputs, dict):
            token_ids = inputs["token_ids"]
            padding_mask = inputs.get("padding_mask")
        else:
            token_ids, padding_mask = inputs, None
        self._check_length(token_ids)
        x = self.embedding(token_ids, positions=positions)  # (B, T, d)
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, positions=positions, training=training)
        return self.final_norm(x)  # (B, T, d)

    def call(self, inputs, training=None):
        return self._head(self.hidden_states(inputs, training=training))

    # ------------------------------------------------------------ KV cache

    def init_cache(self, batch_size, max_length=None, dtype=None):
        """Zeroed key/value caches: a list with one `(B, 2, K, S, D)` per block
        (keys and values, heads-major: see `layers.cached_attention`).

        Args:
            batch_size: rows decoded together.
            max_length: cache slots `S`. Defaults to `context_length`.
            dtype: cache dtype. Defaults to the model's compute dtype.
        """
        max_length = max_length or self.config.context_length
        if max_length > self.config.context_length and self.config.position == "learned":
            raise ValueError(
                "max_length exceeds the learned position table. Received: "
                f"max_length={max_length}, context_length={self.config.context_length}"
            )
        shape = (batch_size, 2, self.config.kv_heads, max_length, self.config.head_dim)
        return [
            ops.zeros(shape, dtype=dtype or self.compute_dtype)
            for _ in range(self.config.num_layers)
        ]

    def call_with_cache(
        self, token_ids, cache, cache_update_index, padding_mask=None, positions=None
    ):
        """Runs `token_ids` from slot `cache_update_index` on, updating the cache.

        Prefill passes the whole prompt with `cache_update_index=0`; each decode
        step passes one new token `(batch, 1)` and its slot. Logits equal those
        of the full forward pass over the same tokens.

        Args:
            token_ids: int `(batch, seq)`.
            cache: the list from `init_cache` (or a previous call).
            cache_update_index: slot of `token_ids[:, 0]` (int or scalar tensor).
            padding_mask: optional `(batch, max_length)` mask over cache slots,
                0 for left padding that no token may attend to.
            positions: optional int `(batch, seq)` positions (for left-padded
                rows, where a token's position differs from its slot).
                Defaults to the slots.

        Returns:
            `(logits, cache)`: float32 `(batch, seq, vocab_size)` and the
            updated list of caches.
        """
        self._check_length(token_ids, cache_update_index)
        x = self.embedding(token_ids, positions=positions, start_index=cache_update_index)
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block(
                x,
                padding_mask=padding_mask,
                cache=layer_cache,
                cache_update_index=cache_update_index,
                positions=positions,
            )
            new_cache.append(layer_cache)
        return self._logits(x), new_cache

    # ------------------------------------------------------------ tokenizer

    @property
    def tokenizer(self):
        """The tokenizer attached by `kerasllm.load` (not part of the .keras file)."""
        return self.__dict__.get("_kerasllm_tokenizer")

    @tokenizer.setter
    def tokenizer(self, value):
        # Stored outside Keras/TF attribute tracking on purpose: the tokenizer
        # owns TF lookup tables that must not become part of the model's
        # weights or its .keras file; it is saved beside it as plain files.
        self.__dict__["_kerasllm_tokenizer"] = value

    @property
    def metadata(self):
        """The `kerasllm.json` metadata attached by `kerasllm.load`, or `{}`."""
        return self.__dict__.get("_kerasllm_metadata", {})

    @metadata.setter
    def metadata(self, value):
        self.__dict__["_kerasllm_metadata"] = dict(value or {})

    # ------------------------------------------------------------ config

    @classmethod
    def from_preset(cls, name, **overrides):
        """A freshly initialized model of a named preset (`tiny`, `baby`,
        `gpt2-124m`), with any `GPTConfig` field overridden.

        Keyword arguments that are not `GPTConfig` fields (`name`, `dtype`)
        go to `keras.Model`.
        """
        model_kwargs = {k: overrides.pop(k) for k in ("name", "dtype") if k in overrides}
        return cls(GPTConfig.from_preset(name, **overrides), **model_kwargs)

    def get_config(self):
        config = super().get_config()
        config["config"] = self.config.to_dict()
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        gpt_config = config.pop("config")
        return cls(gpt_config, **config)

    # ------------------------------------------------------------ generation
    # These delegate to `kerasllm.generation` through an import inside each
    # method: the one sanctioned upward import (models → generation), lazy so
    # that the dependency direction holds at import time.

    def generate(self, prompts, **kwargs):
        """Continues text prompts; returns the generated text.

        Decoding runs a compiled loop over the KV cache (XLA on TensorFlow,
        `jax.jit` on JAX), reused across calls: prompts are left-padded into
        length buckets and the sampling values are tensors, so another prompt
        length or temperature does not recompile.

        Args:
            prompts: a `str` or a list of `str` (needs `model.tokenizer`, set
                by `kerasllm.load`, or `tokenizer=`).
            **kwargs: `max_new_tokens` (64), `strategy` (`"greedy"`,
                `"sample"`, `"top_k"`, `"top_p"` or `"beam"`; greedy by
                default), `temperature`, `top_k`, `top_p`, `min_p`,
                `repetition_penalty`, `num_beams`, `length_penalty`,
                `early_stopping`, `seed`, `stop` (stop strings), `truncate`
                (`"left"`), `end_token_id`, `tokenizer`; see
                `kerasllm.generation.Generator.complete`. The defaults live
                in `kerasllm.generation.GenerationOptions`.

        Returns:
            A `str` for a `str` prompt, else a list of `str`.

        Example:
        ```python
        model = kerasllm.load("runs/tiny")
        model.generate("def add(a, b):", max_new_tokens=32, stop=["\\n\\n"])
        model.generate(["Once", "Twice"], strategy="top_p", top_p=0.9, seed=1)
        ```
        """
        from kerasllm.generation import complete

        single = isinstance(prompts, str)
        completions = complete(
            self, [prompts] if single else prompts, **kwargs
        )
        texts = [c.text for c in completions]
        return texts[0] if single else texts

    def generate_ids(self, token_ids, **kwargs):
        """Like `generate`, ids in and ids out; no tokenizer needed.

        Args:
            token_ids: one prompt as a list of ints, or a list of them.
            **kwargs: as in `generate` (stop
                strings need a tokenizer; `end_token_id` defaults to the
                tokenizer's, or none).

        Returns:
            The generated ids (end token excluded): a list of ints for one
            prompt, else a list of lists.
        """
        from kerasllm.generation import complete

        single = len(token_ids) > 0 and not hasattr(token_ids[0], "__len__")
        completions = complete(
            self, [token_ids] if single else token_ids, **kwargs
        )
        ids = [c.token_ids for c in completions]
        return ids[0] if single else ids

    def stream(self, prompt, **kwargs):
        """Yields the continuation of one text prompt in pieces, as it is made.

        Pieces never split a UTF-8 character (Japanese, emoji) and never
        show a stop string. Takes the arguments of `generate` (not beam
        search).

        Example:
        ```python
        for piece in model.stream("こんにちは", max_new_tokens=50):
            print(piece, end="", flush=True)
        ```
        """
        from kerasllm.generation import stream

        yield from stream(self, prompt, **kwargs)
