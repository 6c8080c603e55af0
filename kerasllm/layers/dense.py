"""Dense projections: plain `keras.layers.Dense` in saved models, and a
one-row form that the compiled decode programs select.

Models build `keras.layers.Dense` (`Dense` here is that class), so a `.keras`
file holds only Keras's own layer. `one_row_projections(layers)` is entered
by `kerasllm.generation.compile` while it traces a decode program for XLA on
TensorFlow; inside it those layers compute a single row differently.

Why: at batch-1 decoding every projection is a vector-matrix product, and
XLA:CPU (TensorFlow 2.21) handles those poorly in two ways, measured on this
2-core machine:

- It fuses a small product with the bias add after it into one loop that
  runs on one core (a chain of (1, 768) x (768, 2304) products with bias
  read weights at 19.7 GB/s on one core; 26.8 GB/s on two without).
- Its library product streams the weights faster when the contracted
  dimension is cut into blocks (see `_split_vector_matmul`).

So for a single row the product is computed over row blocks of the kernel
and the bias is added through a term that depends on the product's output,
which keeps the two apart. Values are the same up to float summation order;
weights, config and LoRA are Keras's own. JAX's newer XLA needs neither.
"""

import contextlib
import math

import keras
from keras import ops



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


# What the layers build: Keras's own class, so saved models are plain Keras.
Dense = keras.layers.Dense


@keras.saving.register_keras_serializable(package="kerasllm", name="Dense")
class LegacyDense(keras.layers.Dense):
    """Loads `.keras` files that name `kerasllm>Dense` (`keras.layers.Dense`)."""


def one_row_call(layer):
    """`layer.call` for a `keras.layers.Dense`, in the one-row form where it applies."""
    plain = type(layer).call.__get__(layer)

    def call(inputs, training=None):
        if not _is_single_row(inputs) or getattr(layer, "quantization_mode", None):
            return plain(inputs, training=training)
        x = _split_vector_matmul(inputs, layer.kernel)
        if layer.bias is not None:
            # `ones` is computed from `x`, so XLA cannot fuse the product into the add.
            ones = ops.ones_like(x[..., :1])
            x = ops.add(x, layer.bias * ones)
        if layer.activation is not None:
            x = layer.activation(x)
        return x

    return call


@contextlib.contextmanager
def one_row_projections(layers):
    """Inside, each of `layers` (`keras.layers.Dense`) computes one row in the
    one-row form (TensorFlow only; a no-op elsewhere). Enter it while tracing
    an XLA program, not around eager calls."""
    if keras.config.backend() != "tensorflow":
        yield
        return
    patched = [layer for layer in layers if "call" not in vars(layer)]
    for layer in patched:
        object.__setattr__(layer, "call", one_row_call(layer))
    try:
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")
