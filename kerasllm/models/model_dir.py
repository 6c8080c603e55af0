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
import pathlib
import zipfile

import keras

from kerasllm.data.atomic import (
    atomic_directory,
    atomic_write_json,
    check_output_directory,
)
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
        overwrite: replace an existing model directory (one holding
            `kerasllm.json`; never a directory of other files). Defaults to
            `False`.

    Returns:
        The directory as a `pathlib.Path`.
    """
    path = pathlib.Path(path)
    check_output_directory(path, overwrite=overwrite, marker=METADATA_FILE, what="model")
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    config = getattr(model, "config", None)
    with atomic_directory(path, overwrite=overwrite, marker=METADATA_FILE) as staging:
        model.save(staging / MODEL_FILE)
        if tokenizer is not None:
            tokenizer.save(staging / TOKENIZER_DIR)
        atomic_write_json(
            staging / METADATA_FILE,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "kerasllm_version": __version__,
                "model_class": type(model).__name__,
                "config": config.to_dict() if hasattr(config, "to_dict") else None,
                "tokenizer": TOKENIZER_DIR if tokenizer is not None else None,
                "tokenizer_fingerprint": getattr(tokenizer, "fingerprint", None),
                "metadata": metadata if metadata is not None else dict(
                    getattr(model, "metadata", {}) or {}
                ),
            },
        )
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
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{meta_path} is damaged: it is not valid UTF-8 JSON ({error})."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{meta_path} has format {_get(meta, 'format')!r} version "
            f"{_get(meta, 'format_version')!r}; this kerasllm reads {FORMAT!r} up to "
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
    model_file = path / MODEL_FILE
    if not zipfile.is_zipfile(model_file):
        raise ValueError(
            f"{model_file} is damaged: it is {model_file.stat().st_size:,} bytes and "
            "not a complete .keras archive (truncated or empty). Save the model again."
        )
    try:
        model = keras.saving.load_model(model_file, compile=compile, safe_mode=True)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{model_file} could not be loaded: {error}") from error
    if meta.get("tokenizer"):
        from kerasllm import tokenizers

        tokenizer = tokenizers.load(path / meta["tokenizer"])
        check_tokenizer(tokenizer, meta, path)
        model.tokenizer = tokenizer
    model.metadata = meta.get("metadata") or {}
    return model


def check_tokenizer(tokenizer, meta, path):
    """Raise `ValueError` if `tokenizer` is not the one the model was trained with.

    Compares the vocabulary size with the model's and the fingerprint with
    the one recorded in `kerasllm.json` (directories written before the
    fingerprint was recorded are checked by size only).
    """
    vocab_size = ((meta.get("config") or {}).get("vocab_size"))
    if vocab_size is not None and tokenizer.vocabulary_size > vocab_size:
        raise ValueError(
            f"The tokenizer in {path} has {tokenizer.vocabulary_size} ids but the "
            f"model has vocab_size={vocab_size}: they do not belong together."
        )
    expected = meta.get("tokenizer_fingerprint")
    if expected and getattr(tokenizer, "fingerprint", expected) != expected:
        raise ValueError(
            f"The tokenizer in {path} is not the one the model was trained with "
            f"(fingerprint {tokenizer.fingerprint}, expected {expected}); its ids "
            "would mean different text. Put the original tokenizer back."
        )


def _get(meta, key):
    return meta.get(key) if isinstance(meta, dict) else None
