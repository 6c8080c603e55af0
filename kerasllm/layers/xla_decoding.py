"""`xla_decoding()`: the context in which the compiled decode programs are traced.

`kerasllm.generation.compile` enters it while tracing a program for XLA, so
the attention may write its KV cache in place (`ops.slice_update`, an
XLA-only op on TensorFlow, which a SavedModel or TFLite file cannot hold).
Everything traced outside it (training, exports, plain graphs, eager calls)
is unaffected. (The one-row projections are selected per model instead:
`kerasllm.layers.dense.one_row_projections`.)
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
