"""`Dense`: `keras.layers.Dense` that decodes one row faster on TensorFlow.

Why a subclass: at batch-1 decoding every projection is a vector-matrix
product, and XLA:CPU (TensorFlow 2.21) handles those poorly in two ways,
measured on this 2-core machine:

- It fuses a small product with the bias add after it into one loop that
  runs on one core (a chain of (1, 768) x (768, 2304) products with bias
  read weights at 19.7 GB/s on one core; 26.8 GB/s on two without).
- Its library product streams the weights faster when the contracted
  dimension is cut into blocks (see `_split_vector_matmul`).

So while tracing inside `kerasllm.layers.xla_decoding.xla_decoding()` on
TensorFlow, for a single row, the product is computed over row blocks of the
kernel and the bias is added through a term that depends on the product's
output, which keeps the two apart. Values are
the same up to float summation order; weights, config, LoRA and quantization
are Keras's own, and everything else (training, JAX, exports) runs
`keras.layers.Dense.call` unchanged. JAX's newer XLA needs neither.
"""

import math

import keras
from keras import ops

from kerasllm.layers.xla_decoding import in_xla_decoding


def _is_single_row(inputs):
    rows = inputs.shape[:-1]
    return all(d is not None for d in rows) and math.prod(rows) == 1


# Rows of the kernel per block in `_split_vector_matmul`.
_BLOCK_ROWS = 128


def _chunk_length(depth, target):
    """The largest divisor of `depth` that is at most `target` (1 if none)."""
    return max(d for d in range(1, min(depth, target) + 1) if depth % d == 0)


def _split_vector_matmul(inputs, kernel):
    """`inputs @ kernel` for one row, as a sum of products over row blocks.

    XLA:CPU's one-row products run faster when the contracted dimension is
    cut into blocks (a free reshape of the kernel into `(blocks, rows,
    units)`, one batched product, a sum): measured per product here, 768 ->
    2304 from 25 to 35 GB/s and 3072 -> 768 from 18 to 26 GB/s with blocks
    of 256 rows. Over whole decode steps blocks of 96-192 rows were best
    (gpt2-124m 60 -> 75 tok/s, baby 367 -> 466-509); 128 divides the usual
    widths.
    """
    depth, units = kernel.shape
    chunk = _chunk_length(depth, _BLOCK_ROWS)
    blocks = depth // chunk
    if blocks == 1:
        return ops.matmul(inputs, kernel)
    x = ops.reshape(inputs, (blocks, 1, chunk))
    parts = ops.matmul(x, ops.reshape(kernel, (blocks, chunk, units)))  # (blocks, 1, units)
    return ops.reshape(ops.sum(parts, axis=0), ops.shape(inputs)[:-1] + (units,))


@keras.saving.register_keras_serializable(package="kerasllm")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense`; see the module docstring for the one difference."""

    def call(self, inputs, training=None):
        if (
            keras.config.backend() != "tensorflow"
            or not in_xla_decoding()
            or not _is_single_row(inputs)
        ):
            return super().call(inputs, training=training)
        x = _split_vector_matmul(inputs, self.kernel)
        if self.bias is not None:
            # `ones` is computed from `x`, so XLA cannot fuse the product into the add.
            ones = ops.ones_like(x[..., :1])
            x = ops.add(x, self.bias * ones)
        if self.activation is not None:
            x = self.activation(x)
        return x
