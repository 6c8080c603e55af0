"""Multi-head causal self-attention with grouped-query heads and a KV cache."""

import keras
from keras import ops

from kerasllm.layers.dense import Dense
from kerasllm.layers.initializers import clone_initializer, gpt2_normal
from kerasllm.layers.rotary_embedding import RotaryEmbedding
from kerasllm.layers.xla_decoding import in_xla_decoding


def write_to_cache(cache, update, index):
    """Writes `update` `(B, 2, K, T, D)` into `cache` `(B, 2, K, S, D)` at slot `index`.

    On JAX this is `ops.slice_update` (an in-place dynamic-update-slice under
    XLA). On TensorFlow `ops.slice_update` lowers to the XLA-only op
    `XlaDynamicUpdateSlice`, which stock TensorFlow Serving and TFLite cannot
    run, so outside the compiled decode programs (`xla_decoding()`: exports,
    plain graphs, eager) the slots are selected with `where` from a gathered
    copy of the update instead: plain TF ops, the same result, but every
    step reads and writes the whole cache (docs/performance.md has the
    cost).
    """
    index = ops.cast(index, "int32")
    if keras.config.backend() != "tensorflow" or in_xla_decoding():
        return ops.slice_update(cache, (0, 0, 0, index, 0), ops.cast(update, cache.dtype))
    cache_len = ops.shape(cache)[3]
    update_len = ops.shape(update)[3]
    offsets = ops.arange(cache_len, dtype="int32") - index  # (S,)
    inside = ops.logical_and(offsets >= 0, offsets < update_len)  # (S,)
    gathered = ops.take(update, ops.clip(offsets, 0, update_len - 1), axis=3)
    return ops.where(
        inside[None, None, None, :, None], ops.cast(gathered, cache.dtype), cache
    )


def cached_attention(query, keys, values, mask):
    """Attention of new queries over a heads-major cache.

    Args:
        query: `(B, T, H, D)`.
        keys, values: `(B, K, S, D)`, `K` dividing `H`.
        mask: bool, broadcastable to `(B, 1, 1, T, S)`.

    Returns:
        `(B, T, H, D)`.

    The cache is stored heads-major so that both products take it as it is
    (batch dimensions `B, K` first): `ops.dot_product_attention` wants
    `(B, S, K, D)`, and XLA:CPU transposed the whole cache to and from it
    every step (docs/performance.md, CPU generation). Scores and softmax are float32, as in
    `ops.dot_product_attention`.
    """
    batch, seq_len, heads, head_dim = ops.shape(query)
    kv_heads = ops.shape(keys)[1]
    query = ops.reshape(query, (batch, seq_len, kv_heads, heads // kv_heads, head_dim))
    scores = ops.einsum("btkgd,bksd->bkgts", query, keys)  # (B, K, G, T, S)
    scores = ops.cast(scores, "float32") * (1.0 / float(head_dim) ** 0.5)
    scores = ops.where(mask, scores, ops.cast(-1e9, "float32"))
    probs = ops.cast(ops.softmax(scores, axis=-1), values.dtype)
    attended = ops.einsum("bkgts,bksd->btkgd", probs, values)
    return ops.reshape(attended, (batch, seq_len, heads, head_dim))


@keras.saving.register_keras_serializable(package="kerasllm")
class CausalSelfAttention(keras.layers.Layer):
    """Causal multi-head self-attention, optionally grouped-query, with KV cache.

    Queries, keys and values come from one fused `Dense` projection (one
    matmul instead of three; `enable_lora` applies to it and to the output
    `Dense`). With `num_kv_heads < num_heads`, each key/value head serves
    `num_heads // num_kv_heads` query heads (GQA, Ainslie et al. 2023;
    `num_kv_heads=1` is multi-query attention). Attention itself is
    `keras.ops.dot_product_attention`, so each backend may use its fused
    (flash / cuDNN) kernel; the unmasked training path passes `is_causal=True`,
    which those kernels accept.

    The same layer runs a whole sequence or continues one from a fixed-size
    key/value cache: pass `cache` `(batch, 2, num_kv_heads, max_length,
    head_dim)` (keys and values, heads-major) and `cache_update_index` (where
    the new tokens' keys and values go); the call then returns
    `(outputs, updated_cache)` and each new token attends to every cache slot
    up to its own position.

    Dropout is applied to the output (residual dropout). Attention-probability
    dropout is not offered: fused attention kernels do not support it.

    Args:
        num_heads: number of query heads.
        num_kv_heads: number of key/value heads; must divide `num_heads`.
            Defaults to `num_heads` (plain multi-head attention).
        head_dim: width of each head. Defaults to `hidden_dim // num_heads`.
        dropout: residual dropout rate. Defaults to `0.0`.
        use_bias: biases in the projections. Defaults to `True`.
        use_rotary_embedding: rotate queries and keys with RoPE. Defaults to
            `False`.
        rope_max_wavelength: RoPE's longest wavelength. Defaults to `10000`.
        kernel_initializer: initializer of the QKV projection. Defaults to
            `RandomNormal(stddev=0.02)`.
        output_kernel_initializer: initializer of the output projection.
            Defaults to `kernel_initializer`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, seq, hidden_dim)`.
        padding_mask: optional `(batch, keys)` mask, 1/True for real tokens;
            `keys` is `seq` without a cache and `max_length` with one.
        cache: optional `(batch, 2, num_kv_heads, max_length, head_dim)`
            (keys, values; heads-major, see `cached_attention`).
        cache_update_index: int (or scalar tensor) slot of the first new
            token. Required with `cache`.
        positions: optional int positions `(batch, seq)` for RoPE (e.g. for
            left-padded prompts). Defaults to `cache_update_index + arange(seq)`.
        training: whether dropout is active.

    Returns:
        `(batch, seq, hidden_dim)`, or `(outputs, cache)` when a cache is given.

    Example:
    ```python
    attention = kerasllm.layers.CausalSelfAttention(num_heads=4, num_kv_heads=2)
    x = keras.random.normal((2, 10, 64))             # head_dim = 64 / 4 = 16
    y = attention(x)                                 # full sequence
    cache = keras.ops.zeros((2, 2, 2, 16, 16))       # (B, k/v, K, S, D)
    y, cache = attention(x, cache=cache, cache_update_index=0)  # prefill
    step = keras.random.normal((2, 1, 64))
    y, cache = attention(step, cache=cache, cache_update_index=10)  # one token
    ```
    """

    def __init__(
        self,
        num_heads,
        num_kv_heads=None,
        head_dim=None,
        dropout=0.0,
        use_bias=True,
        use_rotary_embedding=False,
        rope_max_wavelength=10000,
        kernel_initializer=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(
                f"num_heads must be a positive int. Received: num_heads={num_heads!r}"
            )
        if not isinstance(num_kv_heads, int) or num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(
                "num_kv_heads must be a positive int that divides num_heads. "
                f"Received: num_kv_heads={num_kv_heads!r}, num_heads={num_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.use_rotary_embedding = use_rotary_embedding
        self.rope_max_wavelength = rope_max_wavelength
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or gpt2_normal()
        )
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or self.kernel_initializer
        )

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if self.head_dim is None:
            if hidden_dim % self.num_heads:
                raise ValueError(
                    "hidden_dim must be divisible by num_heads when head_dim is "
                    f"not given. Received: hidden_dim={hidden_dim}, "
                    f"num_heads={self.num_heads}"
                )
            self.head_dim = hidden_dim // self.num_heads
        if self.use_rotary_embedding and self.head_dim % 2:
            raise ValueError(
                f"RoPE needs an even head_dim. Received: head_dim={self.head_dim}"
            )
        qkv_width = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        self.qkv = Dense(
            qkv_width,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv.build(input_shape)
        self.output_dense = Dense(
            hidden_dim,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.output_kernel_initializer),
            dtype=self.dtype_policy,
            name="output",
        )
        self.output_dense.build(
            tuple(input_shape[:-1]) + (self.num_heads * self.head_dim,)
        )
        self.rotary = (
            RotaryEmbedding(self.rope_max_wavelength, dtype=self.dtype_policy)
            if self.use_rotary_embedding
            else None
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def call(
        self,
        inputs,
        padding_mask=None,
        cache=None,
        cache_update_index=None,
        positions=None,
        training=None,
    ):
        batch, seq_len = ops.shape(inputs)[0], ops.shape(inputs)[1]
        heads, kv_heads, head_dim = self.num_heads, self.num_kv_heads, self.head_dim
        if cache is not None and cache_update_index is None:
            raise ValueError("cache_update_index is required when a cache is given.")
        start = 0 if cache is None else cache_update_index

        qkv = self.qkv(inputs)  # (B, T, (H + 2K) * D)
        # ops.split, not slicing: the gradient of a split is one concat, while
        # TensorFlow's slice gradient (StridedSliceGrad) writes each part into
        # a zero tensor of the full width (docs/performance.md, CPU training).
        q, k, v = ops.split(
            qkv, [heads * head_dim, (heads + kv_heads) * head_dim], axis=-1
        )
        q = ops.reshape(q, (batch, seq_len, heads, head_dim))  # (B, T, H, D)
        k = ops.reshape(k, (batch, seq_len, kv_heads, head_dim))  # (B, T, K, D)
        v = ops.reshape(v, (batch, seq_len, kv_heads, head_dim))  # (B, T, K, D)
        if self.rotary is not None:
            q = self.rotary(q, positions=positions, start_index=start)
            k = self.rotary(k, positions=positions, start_index=start)

        if cache is not None:
            new_kv = ops.transpose(ops.stack([k, v], axis=1), (0, 1, 3, 2, 4))
            cache = write_to_cache(cache, new_kv, start)  # (B, 2, K, S, D)
            query_slots = ops.arange(seq_len, dtype="int32") + ops.cast(start, "int32")
            key_slots = ops.arange(ops.shape(cache)[3], dtype="int32")
            mask = key_slots[None, :] <= query_slots[:, None]  # (T, S)
            mask = mask[None, None, None]  # (1, 1, 1, T, S)
            if padding_mask is not None:
                keys_valid = ops.cast(padding_mask, "bool")[:, None, None, None, :]
                mask = ops.logical_and(mask, keys_valid)  # (B, 1, 1, T, S)
            attended = cached_attention(q, cache[:, 0], cache[:, 1], mask)
        else:
            attended = self._attention(q, k, v, padding_mask, seq_len)
        attended = ops.reshape(attended, (batch, seq_len, heads * head_dim))
        outputs = self.dropout_layer(self.output_dense(attended), training=training)
        if cache is not None:
            return outputs, cache
        return outputs

    def _attention(self, q, k, v, padding_mask, seq_len):
        """Causal attention within the sequence, `ops.dot_product_attention`."""
        heads = self.num_heads
        mask, is_causal = None, False
        if padding_mask is None:
            is_causal = True
        else:
            causal = ops.tril(ops.ones((seq_len, seq_len), "bool"))[None, None]
            keys_valid = ops.cast(padding_mask, "bool")[:, None, None, :]  # (B,1,1,S)
            mask = ops.logical_and(causal, keys_valid)
        if self.num_kv_heads == 1 < heads and keras.config.backend() == "tensorflow":
            # Keras's TF attention does not expand a single key/value head.
            k = ops.repeat(k, heads, axis=2)
            v = ops.repeat(v, heads, axis=2)
        return ops.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "use_rotary_embedding": self.use_rotary_embedding,
            "rope_max_wavelength": self.rope_max_wavelength,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_kernel_initializer": keras.initializers.serialize(
                self.output_kernel_initializer
            ),
        }
