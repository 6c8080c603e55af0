"""The pre-norm residual transformer block of a decoder-only model."""

import keras

from kerasllm.layers.causal_self_attention import CausalSelfAttention
from kerasllm.layers.feed_forward import FeedForward
from kerasllm.layers.initializers import clone_initializer, gpt2_normal

NORMS = ("layernorm", "rmsnorm")


def make_norm(norm, epsilon, use_bias, dtype, name):
    """The normalization layer named by `norm` ("layernorm" or "rmsnorm").

    Both are Keras's own layers. `keras.layers.RMSNormalization` computes its
    statistics in at least float32, so it is stable under mixed precision;
    it agrees with the formula to float32 rounding (see docs/models.md).
    """
    if norm == "layernorm":
        # `center` is the bias term.
        return keras.layers.LayerNormalization(
            epsilon=epsilon, center=use_bias, dtype=dtype, name=name
        )
    if norm == "rmsnorm":
        return keras.layers.RMSNormalization(epsilon=epsilon, dtype=dtype, name=name)
    raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")


@keras.saving.register_keras_serializable(package="kerasllm")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm decoder block: `x + attn(norm(x))`, then `x + ffn(norm(x))`.

    The GPT-2 / LLaMA block: normalization before each sublayer, residual
    additions around them. Composed of `CausalSelfAttention`, `FeedForward`
    and `keras.layers.LayerNormalization` or `keras.layers.RMSNormalization`.

    Args:
        num_heads: query heads.
        intermediate_dim: feed-forward width.
        num_kv_heads: key/value heads (GQA). Defaults to `num_heads`.
        head_dim: per-head width. Defaults to `hidden_dim // num_heads`.
        dropout: residual dropout rate. Defaults to `0.0`.
        norm: `"layernorm"` or `"rmsnorm"`. Defaults to `"layernorm"`.
        norm_epsilon: the norms' epsilon. Defaults to `1e-5`.
        activation: feed-forward activation (see `FeedForward`). Defaults to
            `"gelu"`.
        use_bias: biases in projections and layer norms. Defaults to `True`.
        use_rotary_embedding: RoPE in attention. Defaults to `False`.
        rope_max_wavelength: RoPE's longest wavelength. Defaults to `10000`.
        kernel_initializer: initializer of the input projections (each
            weight draws from its own clone). Defaults to
            `RandomNormal(stddev=0.02)`.
        output_kernel_initializer: initializer of the two residual (output)
            projections. Defaults to `kernel_initializer`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, seq, hidden_dim)`.
        padding_mask, cache, cache_update_index, positions: passed to
            `CausalSelfAttention`.
        training: whether dropout is active.

    Returns:
        `(batch, seq, hidden_dim)`, or `(outputs, cache)` when a cache is given.

    Example:
    ```python
    inputs = keras.Input((None,), dtype="int32")
    x = kerasllm.layers.TokenAndPositionEmbedding(1000, 128, 64)(inputs)
    x = kerasllm.layers.TransformerBlock(num_heads=4, intermediate_dim=256)(x)
    outputs = keras.layers.Dense(1000)(x)
    model = keras.Model(inputs, outputs)
    ```
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        num_kv_heads=None,
        head_dim=None,
        dropout=0.0,
        norm="layernorm",
        norm_epsilon=1e-5,
        activation="gelu",
        use_bias=True,
        use_rotary_embedding=False,
        rope_max_wavelength=10000,
        kernel_initializer=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.norm = norm
        self.norm_epsilon = norm_epsilon
        self.activation = activation
        self.use_bias = use_bias
        self.use_rotary_embedding = use_rotary_embedding
        self.rope_max_wavelength = rope_max_wavelength
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or gpt2_normal()
        )
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or self.kernel_initializer
        )
        self.attention_norm = make_norm(
            norm, norm_epsilon, use_bias, self.dtype_policy, "attention_norm"
        )
        self.attention = CausalSelfAttention(
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            dropout=dropout,
            use_bias=use_bias,
            use_rotary_embedding=use_rotary_embedding,
            rope_max_wavelength=rope_max_wavelength,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            output_kernel_initializer=clone_initializer(self.output_kernel_initializer),
            dtype=self.dtype_policy,
            name="attention",
        )
        self.feed_forward_norm = make_norm(
            norm, norm_epsilon, use_bias, self.dtype_policy, "feed_forward_norm"
        )
        self.feed_forward = FeedForward(
            intermediate_dim=intermediate_dim,
            activation=activation,
            dropout=dropout,
            use_bias=use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            output_kernel_initializer=clone_initializer(self.output_kernel_initializer),
            dtype=self.dtype_policy,
            name="feed_forward",
        )

    def build(self, input_shape):
        for layer in (
            self.attention_norm,
            self.attention,
            self.feed_forward_norm,
            self.feed_forward,
        ):
            layer.build(input_shape)

    def call(
        self,
        inputs,
        padding_mask=None,
        cache=None,
        cache_update_index=None,
        positions=None,
        training=None,
    ):
        attended = self.attention(
            self.attention_norm(inputs),
            padding_mask=padding_mask,
            cache=cache,
            cache_update_index=cache_update_index,
            positions=positions,
            training=training,
        )
        if cache is not None:
            attended, cache = attended
        x = inputs + attended
        x = x + self.feed_forward(self.feed_forward_norm(x), training=training)
        if cache is not None:
            return x, cache
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "dropout": self.dropout,
            "norm": self.norm,
            "norm_epsilon": self.norm_epsilon,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "use_rotary_embedding": self.use_rotary_embedding,
            "rope_max_wavelength": self.rope_max_wavelength,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_kernel_initializer": keras.initializers.serialize(
                self.output_kernel_initializer
            ),
        }
