"""The position-wise feed-forward network of a transformer block."""

import keras
from keras import ops

from kerasllm.layers.dense import Dense
from kerasllm.layers.initializers import clone_initializer, gpt2_normal

ACTIVATIONS = ("gelu", "gelu_exact", "relu", "swiglu")


@keras.saving.register_keras_serializable(package="kerasllm")
class FeedForward(keras.layers.Layer):
    """Two-layer MLP (GELU/ReLU) or gated SwiGLU, with residual dropout.

    `activation="gelu"` is GPT-2's `down(gelu_tanh(up(x)))`;
    `activation="swiglu"` is LLaMA's `down(silu(gate(x)) * up(x))` (Shazeer,
    2020). Projections are `keras.layers.Dense`, so `enable_lora` applies.

    Args:
        intermediate_dim: width of the hidden layer.
        activation: one of `"gelu"` (tanh approximation, as GPT-2),
            `"gelu_exact"`, `"relu"`, `"swiglu"`. Defaults to `"gelu"`.
        dropout: dropout rate on the output. Defaults to `0.0`.
        use_bias: biases in the projections. Defaults to `True`.
        kernel_initializer: initializer of the input projections (each
            projection draws from its own clone). Defaults to
            `RandomNormal(stddev=0.02)`.
        output_kernel_initializer: initializer of the output projection (GPT-2
            scales it by `1/sqrt(2 * num_layers)`). Defaults to
            `kernel_initializer`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, seq, hidden_dim)`.
        training: whether dropout is active.

    Returns:
        `(batch, seq, hidden_dim)`.

    Example:
    ```python
    ffn = kerasllm.layers.FeedForward(intermediate_dim=128, activation="swiglu")
    y = ffn(keras.random.normal((2, 5, 32)))
    ```
    """

    def __init__(
        self,
        intermediate_dim,
        activation="gelu",
        dropout=0.0,
        use_bias=True,
        kernel_initializer=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(intermediate_dim, int) or intermediate_dim < 1:
            raise ValueError(
                "intermediate_dim must be a positive int. "
                f"Received: intermediate_dim={intermediate_dim!r}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}. "
                f"Received: activation={activation!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or gpt2_normal()
        )
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or self.kernel_initializer
        )

    def build(self, input_shape):
        hidden_dim = input_shape[-1]

        def dense(units, initializer, name):
            layer = Dense(
                units,
                use_bias=self.use_bias,
                kernel_initializer=clone_initializer(initializer),
                dtype=self.dtype_policy,
                name=name,
            )
            return layer

        self.up = dense(self.intermediate_dim, self.kernel_initializer, "up")
        self.up.build(input_shape)
        if self.activation == "swiglu":
            self.gate = dense(self.intermediate_dim, self.kernel_initializer, "gate")
            self.gate.build(input_shape)
        self.down = dense(hidden_dim, self.output_kernel_initializer, "down")
        self.down.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def call(self, inputs, training=None):
        h = self.up(inputs)  # (B, T, I)
        if self.activation == "swiglu":
            h = ops.silu(self.gate(inputs)) * h
        elif self.activation == "gelu":
            h = ops.gelu(h, approximate=True)
        elif self.activation == "gelu_exact":
            h = ops.gelu(h, approximate=False)
        else:
            h = ops.relu(h)
        return self.dropout_layer(self.down(h), training=training)  # (B, T, d)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "intermediate_dim": self.intermediate_dim,
            "activation": self.activation,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_kernel_initializer": keras.initializers.serialize(
                self.output_kernel_initializer
            ),
        }
