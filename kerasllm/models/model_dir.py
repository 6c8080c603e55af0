"""A trained model as a directory: `.keras` model, tokenizer files, JSON metadata.

Layout::

    DIR/
      model.keras      the Keras model, native format (no pickle)
      tokenizer/       tokenizer files (vocab.json + merges.txt, or spm.model)
      kerasllm.json    format version, model config, training metadata

Writes are atomic: the directory is assembled under a temporary name beside
its destination and renamed into place, so a crash never leaves a half-written
model where a reader (or a server) would pick it up.
"""

import json
import os
import pathlib
import shutil
import tempfile

import keras

from kerasllm.data.atomic import atomic_write_json
from kerasllm.version import __version__

MODEL_FILE = "model.keras"
TOKENIZER_DIR = "tokenizer"
METADATA_FILE = "kerasllm.json"
FORMAT = "kerasllm-model"
FORMAT_VERSION = 1


def save_model_dir(model, path, *, tokenizer=None, metadata=None, overwrite=False):
    """Writes a model directory that `kerasllm.load` reads back.

    Args:
        model: a `kerasllm.models.GPT` (or any registered Keras model).
        path: destination directory.
        tokenizer: a kerasllm tokenizer to save beside the model. Defaults to
            `model.tokenizer`.
        metadata: JSON-serializable training metadata, stored under
            `"metadata"` in `kerasllm.json`.
        overwrite: replace an existing directory. Defaults to `False`.

    Returns:
        The directory as a `pathlib.Path`.
    """
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it."
        )
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        model.save(staging / MODEL_FILE)
        if tokenizer is not None:
            tokenizer.save(staging / TOKENIZER_DIR)
        config = getattr(model, "config", None)
        atomic_write_json(
            staging / METADATA_FILE,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "kerasllm_version": __version__,
                "model_class": type(model).__name__,
                "config": config.to_dict() if hasattr(config, "to_dict") else None,
                "tokenizer": TOKENIZER_DIR if tokenizer is not None else None,
                "metadata": metadata if metadata is not None else dict(
                    getattr(model, "metadata", {}) or {}
                ),
            },
        )
        if path.exists():
            # Move the old directory aside first so the swap leaves either the
            # old or the new model in place, never neither.
            retired = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, retired)
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_metadata(path):
    """The parsed `kerasllm.json` of a model directory, validated."""
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"No model directory at {path}.")
    meta_path = path / METADATA_FILE
    if not meta_path.is_file() or not (path / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is not a kerasllm model directory: expected {METADATA_FILE} "
            f"and {MODEL_FILE} in it."
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{meta_path} has format {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}; this kerasllm reads {FORMAT!r} up to "
            f"version {FORMAT_VERSION}."
        )
    return meta


def resolve_model_dir(path):
    """The model directory that `path` names: `path` itself, or the one in it.

    A run directory (`runs/x`) keeps its model in a subdirectory
    (`runs/x/model`) beside checkpoints and logs; given the run directory,
    this returns that model directory when it holds exactly one. With
    several, the error names them.

    Returns:
        A `pathlib.Path` (`path` unchanged when it is a model directory or
        holds none; `read_metadata` then says what is missing).
    """
    path = pathlib.Path(path)
    if not path.is_dir() or (path / METADATA_FILE).is_file():
        return path
    found = sorted(
        child for child in path.iterdir()
        if (child / METADATA_FILE).is_file() and (child / MODEL_FILE).is_file()
    )
    if len(found) > 1:
        raise FileNotFoundError(
            f"{path} is not a kerasllm model directory and holds {len(found)}: "
            + ", ".join(str(child) for child in found) + ". Pass one of them."
        )
    return found[0] if found else path


def load_model_dir(path, *, compile=False):
    """Loads a model directory with `safe_mode=True`; see `kerasllm.load`.

    The classes are registered by `import kerasllm` (the root package).
    """
    path = resolve_model_dir(path)
    meta = read_metadata(path)
    model = keras.saving.load_model(path / MODEL_FILE, compile=compile, safe_mode=True)
    if meta.get("tokenizer"):
        from kerasllm import tokenizers

        model.tokenizer = tokenizers.load(path / meta["tokenizer"])
    model.metadata = meta.get("metadata") or {}
    return model
