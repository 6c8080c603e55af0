"""kerasllm: the whole life of a small language model in Keras 3 / TensorFlow.

Stages, one package each, in the order the data flows: ``data`` →
``tokenizers`` → ``layers`` → ``models`` → ``training`` → ``finetune`` /
``alignment`` / ``generation`` → ``export`` → ``serving`` → ``constellation``.
Each is reachable from the root (``kerasllm.layers.TransformerBlock``) and
imported the first time it is used.

Importing ``kerasllm`` is cheap: it does not import Keras. Its serializable
classes (``kerasllm>GPT``, the layers, losses, optimizers and heads) are
registered with Keras as soon as Keras is imported, before or after
``kerasllm``, so that ``keras.saving.load_model(path, safe_mode=True)``
works after ``import kerasllm`` alone.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

from kerasllm.version import __version__

# Every module that defines a class registered with
# `keras.saving.register_keras_serializable(package="kerasllm")`
# (tests/test_import.py checks that none is missing).
SERIALIZABLE_MODULES = (
    "kerasllm.layers",
    "kerasllm.models",
    "kerasllm.training.losses",
    "kerasllm.training.optimizers",
    "kerasllm.finetune.sequence_classifier",
    "kerasllm.alignment.heads",
)


_registered = False


def _initializing(module):
    return getattr(getattr(module, "__spec__", None), "_initializing", False)


def _register_when_ready(finishing=None):
    """Imports `SERIALIZABLE_MODULES` once Keras is loaded and no kerasllm
    module is half-imported (a package mid-import cannot be imported from)."""
    global _registered
    if _registered or "keras" not in sys.modules:
        return
    for name, module in list(sys.modules.items()):
        if module is not finishing and (name == "keras" or name.startswith("kerasllm.")):
            if _initializing(module):
                return  # the import in progress registers when it finishes
    _registered = True
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Runs `_register_when_ready` after `keras` or a kerasllm module loads.

    It finds the module through the other finders and wraps its loader's
    `exec_module`; once the classes are registered it leaves
    `sys.meta_path`. Registering waits for the outermost kerasllm import,
    so `import kerasllm.models` (which imports Keras halfway) works too.
    """

    def __init__(self):
        self._finding = False

    def find_spec(self, fullname, path=None, target=None):
        if self._finding or not (fullname == "keras" or fullname.startswith("kerasllm.")):
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_module_then_register(module):
            exec_module(module)
            _register_when_ready(finishing=module)

        spec.loader.exec_module = exec_module_then_register
        return spec


_FINDER = _RegisterAfterImport()


def __getattr__(name):
    """`kerasllm.<stage>`: imports a subpackage the first time it is used."""
    if not name.startswith("_") and os.path.isfile(
        os.path.join(os.path.dirname(__file__), name, "__init__.py")
    ):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(path, *, compile=False):
    """Load a model directory written by kerasllm (model + tokenizer + metadata).

    The Keras model is read from the native ``.keras`` file with
    ``safe_mode=True``; the tokenizer (if the directory has one) is attached as
    ``model.tokenizer`` and the JSON metadata as ``model.metadata``.

    Args:
        path: the model directory (holding ``model.keras`` and
            ``kerasllm.json``), or a directory with exactly one model
            directory in it, such as a run directory ``runs/x`` whose model
            is ``runs/x/model`` (see
            `kerasllm.models.model_dir.resolve_model_dir`).
        compile: whether to restore the compiled loss/optimizer. Defaults to
            `False`.

    Returns:
        A `kerasllm.models.GPT`.
    """
    from kerasllm.models.model_dir import load_model_dir

    return load_model_dir(path, compile=compile)


def save(model, path, *, tokenizer=None, metadata=None, overwrite=False):
    """Write ``model`` (and its tokenizer and metadata) as a model directory.

    See `kerasllm.models.model_dir.save_model_dir`.
    """
    from kerasllm.models.model_dir import save_model_dir

    return save_model_dir(
        model, path, tokenizer=tokenizer, metadata=metadata, overwrite=overwrite
    )


__all__ = ["__version__", "load", "save"]


if "keras" in sys.modules:
    _register_when_ready()
else:
    sys.meta_path.insert(0, _FINDER)
