"""Keep TensorFlow's start-up chatter out of the command line's output.

On a machine without a GPU, importing TensorFlow prints "Could not find cuda
drivers", "oneDNN custom operations are on", CPU-feature notes and an absl
warning from C++, straight to file descriptor 2, before any log level applies;
the first device lookup then logs a "failed call to cuInit" error. None of it
is for the user of a CLI. `quiet_tensorflow_startup` raises TensorFlow's C++
log threshold (unless the user set `TF_CPP_MIN_LOG_LEVEL`) and runs the first
`import tensorflow` with descriptor 2 captured: lines that match `NOISE` are
dropped, anything else is written back to stderr.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub|cuda_platform|cuInit|cuda_dnn|cuda_blas|"
    r"cuda_fft|oneDNN custom operations|cpu_feature_guard|"
    r"To enable the following instructions|rebuild TensorFlow with the appropriate|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|computation placer"
)


def quiet_tensorflow_startup():
    """Call once, before anything imports TensorFlow (see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or any(
        isinstance(finder, _QuietFinder) for finder in sys.meta_path
    ):
        return
    sys.meta_path.insert(0, _QuietFinder())


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and not for the lookup below
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _filtered_stderr():
            self.loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


@contextlib.contextmanager
def _filtered_stderr():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield  # no real descriptor 2 (an embedded interpreter): leave it be
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode("utf-8", "replace").splitlines(True)
                if not NOISE.search(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _PlainWriter:
    """A text stream that drops ANSI escape sequences on their way out."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(_ANSI.sub("", text))

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def plain_progress():
    """Inside this block, output that is not a terminal carries no ANSI codes.

    Keras's progress bar colours and bolds its text even when it prints one
    line per epoch into a redirected log; a log file should read as text.
    """
    streams = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        isatty = getattr(stream, "isatty", None)
        if not (isatty and isatty()):
            streams[name] = stream
            setattr(sys, name, _PlainWriter(stream))
    try:
        yield
    finally:
        for name, stream in streams.items():
            setattr(sys, name, stream)
