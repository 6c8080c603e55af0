"""`export_saved_model`: a SavedModel in TensorFlow Serving's layout.

    saved_models/NAME/VERSION/
      saved_model.pb, variables/, assets/      the ServingModule's signatures
      assets.extra/tf_serving_warmup_requests  replayed by TF Serving at load
      assets.extra/kerasllm_export.json        marks a version kerasllm wrote

The version is built in a hidden staging directory beside it
(`NAME/.VERSION.tmp-*`, a name TF Serving's version scan ignores: versions are
all-digit names) and renamed into place only after the SavedModel was written,
its ops checked against what stock TF Serving runs, and every warmup request
run on the reloaded SavedModel. A failed export leaves no version directory.

Usage:
    kerasllm export --model runs/tiny --format saved_model --name tiny
    saved_model_cli show --dir saved_models/tiny/1 --all
    docker run -p 8501:8501 -v "$PWD/saved_models/tiny:/models/tiny" \\
        -e MODEL_NAME=tiny tensorflow/serving
"""

import json
import pathlib
import re

from kerasllm.export.backend_check import require_tensorflow_backend

DEFAULT_BASE_DIR = "saved_models"
# Only a version holding this file is replaced by `overwrite=True`.
EXPORT_MARKER = "assets.extra/kerasllm_export.json"


def next_version(model_dir):
    """One more than the largest all-digit version under `model_dir` (1 if none)."""
    model_dir = pathlib.Path(model_dir)
    versions = [
        int(p.name) for p in model_dir.glob("*") if p.is_dir() and re.fullmatch(r"\d+", p.name)
    ] if model_dir.is_dir() else []
    return max(versions, default=0) + 1


def _check_name(name):
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(
            "name must start with a letter or digit and hold only letters, "
            f"digits, '.', '_' and '-' (it becomes a URL path). Received: name={name!r}"
        )


def load_signature(path, signature="serving_default"):
    """A signature of a SavedModel as a Python function that fills in defaults.

    `tf.saved_model.load(path).signatures[name]` needs every input; TF Serving
    feeds the SignatureDef's `defaults` for the inputs a request leaves out.
    This applies them the same way, so `fn(prompt=["def "])` works.

    Args:
        path: the SavedModel (version) directory.
        signature: the signature name. Defaults to `"serving_default"`.

    Returns:
        A function of keyword inputs (anything `tf.constant` takes) returning
        the signature's dict of output tensors.

    Example:
    ```python
    generate = kerasllm.export.load_signature("saved_models/tiny/1")
    generate(prompt=["def "], temperature=[0.8])["text"]
    ```
    """
    import tensorflow as tf

    from kerasllm.export.op_allowlist import read_meta_graph

    loaded = tf.saved_model.load(str(path))
    if signature not in loaded.signatures:
        raise ValueError(
            f"No signature {signature!r} in {path}. Expected one of "
            f"{sorted(loaded.signatures)}"
        )
    function = loaded.signatures[signature]
    defaults = {
        key: tf.make_ndarray(value)
        for key, value in read_meta_graph(path).signature_def[signature].defaults.items()
    }

    def call(**inputs):
        feed = {**defaults, **inputs}
        return function(**{key: tf.constant(value) for key, value in feed.items()})

    call.loaded = loaded  # keeps the restored objects alive
    return call


def _run_warmup(path, requests):
    """Run each warmup request on the reloaded SavedModel, as the server will."""
    for signature, inputs in requests:
        load_signature(path, signature)(**inputs)


def export_saved_model(
    model,
    base_dir=DEFAULT_BASE_DIR,
    *,
    name,
    version=None,
    tokenizer=None,
    max_new_tokens=None,
    overwrite=False,
):
    """Export a GPT and its tokenizer for TensorFlow Serving.

    Writes `base_dir/name/version/`, a SavedModel with the signatures
    `serving_default` (prompt strings and options → generated text),
    `generate` (prompt strings only), `chat` (a conversation → the
    assistant's answer, where the tokenizer has the chat tokens), `score`
    (text → log-probability) and `logits` (token ids → logits); see
    `kerasllm.export.ServingModule`. Only TF core and tensorflow-text ops, no
    XLA-compiled functions: stock `tensorflow_model_server` loads it.

    Args:
        model: a `kerasllm.models.GPT` (e.g. from `kerasllm.load`).
        base_dir: the model base directory's parent. Defaults to
            `"saved_models"`.
        name: the model name (the directory TF Serving's `--model_base_path`
            points at, and the name in `/v1/models/NAME`).
        version: an int version. Defaults to one more than the largest
            existing version (1 for a new model).
        tokenizer: the tokenizer. Defaults to `model.tokenizer`.
        max_new_tokens: default of the `max_new_tokens` input. Defaults to
            `GenerationOptions`'s.
        overwrite: replace an existing version directory. Defaults to
            `False` (a version is immutable once a server may have loaded it).

    Returns:
        A dict: `path`, `name`, `version`, `signatures`, `ops` (op types used).

    Example:
    ```python
    model = kerasllm.load("runs/tiny")
    kerasllm.export.export_saved_model(model, "saved_models", name="tiny")
    ```
    """
    require_tensorflow_backend("SavedModel export")
    import tensorflow as tf

    from kerasllm.export.op_allowlist import check_saved_model_ops
    from kerasllm.export.serving_module import ServingModule
    from kerasllm.export.warmup import warmup_requests, write_warmup_file
    from kerasllm.data.atomic import atomic_directory, check_output_directory

    _check_name(name)
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            "The SavedModel tokenizes in the graph, but no tokenizer was given "
            "and model.tokenizer is None. Pass tokenizer=... or load the model "
            "with kerasllm.load(model_dir)."
        )
    model_dir = pathlib.Path(base_dir) / name
    if version is None:
        version = next_version(model_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive int. Received: version={version!r}")
    path = model_dir / str(version)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists. Export a new version (leave version unset "
            "for the next one) or pass overwrite=True."
        )
    # Even with overwrite, only a version kerasllm exported is replaced.
    check_output_directory(path, overwrite=overwrite, marker=EXPORT_MARKER, what="version")
    module = ServingModule(model, tokenizer, max_new_tokens=max_new_tokens)
    with atomic_directory(path, overwrite=overwrite, marker=EXPORT_MARKER) as staging:
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        ops = check_saved_model_ops(staging)
        requests = dict(end_token_id=tokenizer.end_token_id, chat=module.chat is not None)
        write_warmup_file(staging, name, **requests)
        _run_warmup(staging, warmup_requests(**requests))
        (staging / EXPORT_MARKER).parent.mkdir(exist_ok=True)
        (staging / EXPORT_MARKER).write_text(
            json.dumps({"format": "kerasllm-saved-model", "name": name, "version": version})
            + "\n"
        )
    return {
        "path": str(path),
        "name": name,
        "version": version,
        "signatures": sorted(module.signatures()),
        "ops": ops,
    }
