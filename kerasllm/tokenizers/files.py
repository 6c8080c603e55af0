"""Reading and writing tokenizer directories, atomically.

A tokenizer directory always holds `kerasllm_tokenizer.json`, which names the
kind and the special tokens; the rest depends on the kind:

    bpe:            vocab.json, merges.txt, tokenizer.json, word_cache.json
    sentencepiece:  spm.model
"""

import json
import pathlib

from kerasllm.data import atomic

METADATA_FILE = "kerasllm_tokenizer.json"
FORMAT_VERSION = 1
KINDS = ("bpe", "sentencepiece")


def atomic_directory(directory, *, overwrite=True, marker=None):
    """`kerasllm.data.atomic.atomic_directory`, replacing kerasllm directories by default.

    For writers that check `overwrite` themselves before calling it; a
    foreign or special target is refused all the same.
    """
    return atomic.atomic_directory(directory, overwrite=overwrite, marker=marker)


def write_json(path, obj):
    """Write `obj` as UTF-8 JSON (not escaped: vocabularies hold any text)."""
    pathlib.Path(path).write_text(
        json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )


def read_json(path):
    """Parse a JSON file of a tokenizer directory; a broken one is named."""
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is damaged: it is not valid UTF-8 JSON ({error}). Train or "
            "copy the tokenizer again."
        ) from None


def read_metadata(directory):
    """Read `kerasllm_tokenizer.json` of a tokenizer directory, checked.

    Raises:
        FileNotFoundError: the directory or its metadata file is missing.
        ValueError: the metadata names an unknown kind or format version.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Tokenizer directory not found. Received: directory={str(directory)!r}"
        )
    path = directory / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(directory)!r} is not a kerasllm tokenizer directory: it has "
            f"no {METADATA_FILE}. Expected a directory written by "
            "`kerasllm.tokenizers.train_tokenizer` or `tokenizer.save`."
        )
    metadata = read_json(path)
    if metadata.get("kind") not in KINDS:
        raise ValueError(
            f"{path} names an unknown tokenizer kind. Expected one of {KINDS}. "
            f"Received: kind={metadata.get('kind')!r}"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has an unsupported format version. Expected "
            f"{FORMAT_VERSION}. Received: "
            f"format_version={metadata.get('format_version')!r}"
        )
    return metadata
