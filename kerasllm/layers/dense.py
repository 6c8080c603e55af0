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
import os

import keras
from keras import ops

from kerasllm.layers.xla_decoding import in_xla_decoding


def _is_single_row(inputs):
    rows = inputs.shape[:-1]
    return all(d is not None for d in rows) and math.prod(rows) == 1


# Rows of the kernel per block in `_split_vector_matmul`: at most this many,
# and at least `_MIN_BLOCK_ROWS` when that is what keeps the threads balanced.
_BLOCK_ROWS = 256
_MIN_BLOCK_ROWS = 64


def _cpu_threads():
    """CPUs this process may run on (XLA:CPU's thread pool is that size)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _chunk_length(depth, threads):
    """Rows per block for a kernel of `depth` rows.

    The largest divisor of `depth` up to `_BLOCK_ROWS` that cuts it into a
    multiple of `threads` blocks, so that every thread gets the same share
    of the weights; without such a divisor of at least `_MIN_BLOCK_ROWS`
    rows, the largest divisor up to `_BLOCK_ROWS`. On this 2-core machine,
    decoding the same model in one process: baby (depth 384 and 1536) 499
    tokens/s with 128-row blocks (3 and 12 blocks), 538 with 192/256 and
    543 with this rule; gpt2-124m (768 and 3072) 76.0 with 128 rows (6 and
    24 blocks), 72.0 with 256 (3 and 12: one thread idles on the odd block)
    and 80.1 with this rule (192 and 256 rows).
    """
    divisors = [d for d in range(1, min(depth, _BLOCK_ROWS) + 1) if depth % d == 0]
    balanced = [
        d for d in divisors if d >= _MIN_BLOCK_ROWS and (depth // d) % threads == 0
    ]
    return max(balanced or divisors)


def _split_vector_matmul(inputs, kernel):
    """`inputs @ kernel` for one row, as a sum of products over row blocks.

    XLA:CPU's one-row products run faster when the contracted dimension is
    cut into blocks (a free reshape of the kernel into `(blocks, rows,
    units)`, one batched product, a sum): measured per product here, 768 ->
    2304 from 25 to 35 GB/s and 3072 -> 768 from 18 to 26 GB/s with blocks
    of 256 rows. `_chunk_length` picks the block size.
    """
    depth, units = kernel.shape
    chunk = _chunk_length(depth, _cpu_threads())
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
