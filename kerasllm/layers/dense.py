"""`Dense`: `keras.layers.Dense` that keeps batch-1 decoding on every core.

Also `xla_decoding()`, the context in which the decode programs are traced,
so layers can choose ops that only pay off (or only work) under XLA.

Why a subclass: at batch-1 decoding every projection is a vector-matrix
product. XLA:CPU in TensorFlow 2.21 fuses such a small product with the
bias add that follows it into one loop, which runs on one core; unfused, the
product is a library call that uses all of them. Measured on this 2-core
machine, a chain of (1, 768) x (768, 2304) products with bias read weights
at 19.7 GB/s on one core, against 26.8 GB/s on two without the bias. (JAX's
newer XLA does not do this.) So inside `xla_decoding()` on TensorFlow, when
the product has one row, the bias is added through a term that depends on
the product's output, which keeps the product its own operation. The value
is the same (`bias * 1`); weights, config, LoRA and quantization are
Keras's own.
"""

import contextlib
import math
import threading

import keras
from keras import ops

_context = threading.local()


@contextlib.contextmanager
def xla_decoding():
    """Marks code traced inside as a decode step compiled with XLA."""
    previous = getattr(_context, "xla_decoding", False)
    _context.xla_decoding = True
    try:
        yield
    finally:
        _context.xla_decoding = previous


def in_xla_decoding():
    """True while tracing inside `xla_decoding()`."""
    return getattr(_context, "xla_decoding", False)


def _is_single_row(inputs):
    rows = inputs.shape[:-1]
    return all(d is not None for d in rows) and math.prod(rows) == 1


@keras.saving.register_keras_serializable(package="kerasllm")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense`; see the module docstring for the one difference."""

    def call(self, inputs, training=None):
        if (
            self.bias is None
            or keras.config.backend() != "tensorflow"
            or not in_xla_decoding()
            or not _is_single_row(inputs)
        ):
            return super().call(inputs, training=training)
        x = ops.matmul(inputs, self.kernel)
        # `ones` is computed from `x`, so XLA cannot fuse the product into the add.
        ones = ops.ones_like(x[..., :1])
        x = ops.add(x, self.bias * ones)
        if self.activation is not None:
            x = self.activation(x)
        return x
