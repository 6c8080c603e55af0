"""`xla_decoding()`: the context in which the compiled decode programs are traced.

`kerasllm.generation.compile` enters it while tracing a program for XLA, so
layers may pick forms that only pay off (or only work) there: the KV cache
written in place (`ops.slice_update`, XLA-only on TensorFlow) and the
one-row projections of `kerasllm.layers.dense.Dense`. Everything traced
outside it (training, exports, plain graphs, eager calls) is unaffected.
"""

import contextlib
import threading

_context = threading.local()


@contextlib.contextmanager
def xla_decoding():
    """Marks code traced inside as a decode step compiled with XLA."""
    previous = getattr(_context, "active", False)
    _context.active = True
    try:
        yield
    finally:
        _context.active = previous


def in_xla_decoding():
    """True while tracing inside `xla_decoding()`."""
    return getattr(_context, "active", False)
