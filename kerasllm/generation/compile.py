"""`compile_model_function`: one backend-compiled function over a model's weights.

The decode code itself is plain `keras.ops`; only compiling it needs the
backend's own facility, the same ones Keras's trainers use: `tf.function(...,
jit_compile=True)` (XLA) on TensorFlow, `jax.jit` on JAX (the model's weights
passed in as arguments through a `keras.StatelessScope`, as Keras and
KerasHub do, so they are not baked into the program as constants). This file
is the one place in `generation/` that names a framework, and it imports it
lazily for the active backend only.
"""

import keras

from kerasllm.layers.dense import one_row_projections
from kerasllm.layers.xla_decoding import xla_decoding


class CompiledFunction:
    """`fn(*args)` compiled for the active backend; retraced only on new shapes.

    Arguments must be tensors (or nested lists/dicts of them): a Python
    number would be baked into the trace. `trace_count` counts how many
    times `fn` was traced, which is how the tests prove that another prompt
    length within a bucket, or another temperature, reuses the program.

    Args:
        model: the Keras model whose weights `fn` reads.
        fn: a function of tensors written with `keras.ops`.
        jit_compile: compile with XLA on TensorFlow (a plain graph otherwise).
            Defaults to `True`. JAX always compiles with XLA.
        one_row_projections: under XLA on TensorFlow, trace the model's
            projections (not the output head) in their one-row form
            (`kerasllm.layers.dense.one_row_projections`). Defaults to `True`.
    """

    def __init__(self, model, fn, jit_compile=True, one_row_projections=True):
        self.trace_count = 0
        self.backend = keras.config.backend()

        # Under XLA the layers may write the cache in place
        # (`kerasllm.layers.xla_decoding`), and the projections take their
        # one-row form where chosen.
        uses_xla = jit_compile or self.backend == "jax"
        projections = []
        if uses_xla and one_row_projections:
            head = getattr(model, "lm_head", None)
            projections = [
                layer
                for layer in model._flatten_layers(include_self=True)
                if isinstance(layer, keras.layers.Dense) and layer is not head
            ]
        traced = _Traced(self, fn, uses_xla, projections)

        if self.backend == "tensorflow":
            import tensorflow as tf

            self._call = tf.function(traced, jit_compile=jit_compile, autograph=False)
        elif self.backend == "jax":
            import jax

            def stateless(weights, *args):
                mapping = zip(model.variables, weights)
                with keras.StatelessScope(state_mapping=mapping):
                    return traced(*args)

            jitted = jax.jit(stateless)
            self._call = lambda *args: jitted([v.value for v in model.variables], *args)
        else:
            self._call = traced

    def __call__(self, *args):
        return self._call(*args)


class _Traced:
    """`fn` that counts its traces (a Python side effect runs once per trace).

    A callable object rather than a closure: TensorFlow keys its "frequent
    retracing" warning on a closure's code, which every program shares.
    """

    def __init__(self, owner, fn, uses_xla, projections):
        self.owner, self.fn, self.uses_xla = owner, fn, uses_xla
        self.projections = projections

    def __call__(self, *args):
        self.owner.trace_count += 1
        if not self.uses_xla:
            return self.fn(*args)
        with xla_decoding(), one_row_projections(self.projections):
            return self.fn(*args)


def compile_model_function(model, fn, jit_compile=True, one_row_projections=True):
    """Returns `CompiledFunction(model, fn, jit_compile, one_row_projections)`."""
    return CompiledFunction(
        model, fn, jit_compile=jit_compile, one_row_projections=one_row_projections
    )
