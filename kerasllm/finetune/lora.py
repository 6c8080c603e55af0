"""LoRA adapters through Keras's own `Dense.enable_lora`, saved apart from the base.

LoRA (Hu et al., 2021) freezes a projection's kernel `W` `(d_in, d_out)` and
learns a low-rank update: the layer computes `x @ (W + (alpha / r) * A @ B)`
with `A` `(d_in, r)` and `B` `(r, d_out)`, `B` starting at zero so the
adapter starts as a no-op. Keras implements exactly this in
`keras.layers.Dense.enable_lora(rank, lora_alpha)` (and `EinsumDense`); this
module chooses the layers by name, freezes everything else, and adds what
Keras leaves out: adapters saved alone with a fingerprint of their base,
several adapters switched on one base, and merging back into plain kernels.

Layers are named by their path inside the model (`block_0/attention/qkv`,
`block_3/feed_forward/down`, `lm_head`). A target pattern matches a path
that ends with it (`qkv`, `attention/output`) or, with `*`/`?`, as a glob
(`block_5/*`).

Token rows (PEFT's `trainable_token_indices`): `trainable_tokens=[ids]`
lets the embedding rows of a few tokens train while the rest of the table
stays frozen, for tokens the base never learned, such as the chat
template's `<|im_start|>` / `<|im_end|>` (reserved at tokenizer training,
absent from the pretraining text, so their rows are still random). It is
`Embedding.enable_lora` again, with `A` `(vocab, k)` a fixed one-hot
selection of the `k` rows and `B` `(k, d)` the trainable deltas, scale 1:
the table reads `W + A @ B`, which is `W` exactly on every other row. With
tied embeddings the output head reads the same table, so the model also
learns to emit those tokens.

An adapter directory::

    DIR/
      kerasllm_adapter.json   rank, alpha, targets, layer paths, token ids, base fingerprint
      adapter_weights.npz     lora_kernel_a / lora_kernel_b of each layer, the token
                              rows' deltas, and the weights of layers trained in
                              full (a new head)

Example:
```python
model = kerasllm.models.GPT.from_preset("tiny")
paths = kerasllm.finetune.apply_lora(model, rank=8, alpha=8, targets=["qkv", "output"])
model.compile(optimizer="adam", loss=kerasllm.training.LanguageModelLoss())
# ... model.fit(...) trains only the LoRA factors ...
kerasllm.finetune.save_adapter(model, "/tmp/lora_example/adapter", overwrite=True)
kerasllm.finetune.unload_adapter(model)        # back to the plain base
kerasllm.finetune.load_adapter(model, "/tmp/lora_example/adapter")
kerasllm.finetune.merge_lora(model)            # plain Dense kernels again
```
"""

import fnmatch
import hashlib
import json
import pathlib

import keras
import numpy as np
from keras import ops

from kerasllm.data.atomic import atomic_directory, atomic_write_json
from kerasllm.finetune.trainable import (  # noqa: F401  (re-exported)
    format_trainable,
    named_layers,
    named_weights,
    trainable_summary,
)

ADAPTER_FILE = "kerasllm_adapter.json"
WEIGHTS_FILE = "adapter_weights.npz"
FORMAT = "kerasllm-lora-adapter"
FORMAT_VERSION = 1
LORA_WEIGHTS = ("lora_kernel_a", "lora_kernel_b")
TOKEN_WEIGHTS = ("lora_embeddings_a", "lora_embeddings_b")

# Every projection of every block, as QLoRA recommends (adapting all linear
# layers matters more than the rank); `lm_head` (untied models) is opt-in.
DEFAULT_TARGETS = ("qkv", "output", "up", "down")

# Where the LoRA record lives on a model: outside Keras attribute tracking, so
# it is neither a weight nor part of the `.keras` config (as `GPT.tokenizer`).
_STATE_KEY = "_kerasllm_lora"


# ---------------------------------------------------------------- choosing layers


def _is_lora_capable(layer):
    return isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))


def _matches(path, pattern):
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern)


def match_targets(model, targets):
    """The paths of the `Dense`/`EinsumDense` layers that `targets` name.

    Args:
        model: a built Keras model.
        targets: patterns, each matched against the end of a layer's path
            (`"qkv"`, `"attention/output"`) or as a glob (`"block_5/*"`).

    Returns:
        A list of `(path, layer)` in model order.

    Raises:
        ValueError: a pattern matches no such layer; the message lists the
            names that exist.
    """
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    if not targets:
        raise ValueError("targets must name at least one layer. Received: targets=[]")
    candidates = [(p, layer) for p, layer in named_layers(model) if _is_lora_capable(layer)]
    chosen = {}
    for pattern in targets:
        hits = [(p, layer) for p, layer in candidates if _matches(p, pattern)]
        if not hits:
            names = sorted({p.rsplit("/", 1)[-1] for p, _ in candidates})
            examples = ", ".join(p for p, _ in candidates[:4])
            raise ValueError(
                f"LoRA target {pattern!r} matches no Dense layer of this model. "
                f"Dense layer names: {', '.join(names)} (paths like {examples}). "
                "A target matches the end of a path ('qkv', 'attention/output') "
                "or is a glob ('block_5/*')."
            )
        for p, layer in hits:
            chosen[p] = layer
    return [(p, layer) for p, layer in candidates if p in chosen]


def lora_layers(model):
    """`(path, layer)` of every `Dense`/`EinsumDense` of `model` with LoRA enabled."""
    return [
        (p, layer)
        for p, layer in named_layers(model)
        if getattr(layer, "lora_enabled", False) and _is_lora_capable(layer)
    ]


# ---------------------------------------------------------------- token rows


def token_embedding_layer(model):
    """`(path, layer)` of the token `Embedding` of `model` (a GPT, or a model with a GPT `backbone`)."""
    found = [
        (p, layer)
        for p, layer in named_layers(model)
        if isinstance(layer, keras.layers.Embedding) and layer.name == "token_embedding"
    ]
    if len(found) != 1:
        raise ValueError(
            "trainable_tokens needs a model with one token embedding layer named "
            f"'token_embedding' (a kerasllm GPT). Found {len(found)} in {type(model).__name__}."
        )
    return found[0]


def train_token_rows(model, token_ids):
    """Lets the embedding rows of `token_ids` train; every other row stays as it is.

    Keras's `Embedding.enable_lora(k)` on the token table, with `A`
    `(vocab, k)` set to a fixed one-hot selection of the rows and frozen, and
    `B` `(k, d)` (zeros at first) trainable, scale `alpha / rank = 1`: the
    layer reads `W + A @ B`, i.e. `W` with `B[i]` added to row
    `token_ids[i]` and every other row exactly `W`. The stored table `W`
    is frozen. With tied embeddings the output head reads the same rows.
    `merge_lora` folds `B` into `W`; `unload_adapter` drops it.

    Only the table's own flags change: call this after freezing the rest
    (`apply_lora` and `freeze_for_partial` call it for you through their
    `trainable_tokens` argument).

    Args:
        model: a GPT, or a model with a GPT `backbone`.
        token_ids: the ids whose rows train, a non-empty list of distinct ints.

    Returns:
        The path of the embedding layer.

    Raises:
        ValueError: bad ids, or rows already made trainable.
    """
    path, layer = token_embedding_layer(model)
    ids = list(token_ids)
    vocab = layer.input_dim
    bad = [i for i in ids if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < vocab]
    if not ids or bad or len(set(ids)) != len(ids):
        raise ValueError(
            f"trainable token ids must be distinct ints in [0, {vocab}). Received: token_ids={ids!r}"
        )
    if layer.lora_enabled:
        raise ValueError(f"{path} already has trainable token rows; unload or merge them first.")
    selection = np.zeros((vocab, len(ids)), "float32")
    selection[ids, np.arange(len(ids))] = 1.0
    layer.enable_lora(len(ids), lora_alpha=len(ids))  # scale alpha / rank = 1
    layer.lora_embeddings_a.assign(selection)
    layer.lora_embeddings_a.trainable = False
    layer.lora_embeddings_b.trainable = True
    # Keras skips the weights of a frozen layer: open the path down to the
    # table, keeping every other weight on it as it was.
    parts = path.split("/")
    holders = [model] + [dict(named_layers(model))["/".join(parts[: i + 1])] for i in range(len(parts))]
    for holder in holders:
        if not holder.trainable:
            flags = {id(v): v.trainable for v in holder.weights}
            holder.trainable = True
            for v in holder.weights:
                v.trainable = flags[id(v)]
    layer.lora_embeddings_b.trainable = True
    layer.__dict__["_kerasllm_token_ids"] = [int(i) for i in ids]
    _forget_compiled_generation(model)
    return path


def trainable_token_ids(model):
    """The ids whose embedding rows train on `model` (`train_token_rows`), or `None`."""
    try:
        _, layer = token_embedding_layer(model)
    except ValueError:
        return None
    if not layer.lora_enabled:
        return None
    return list(layer.__dict__.get("_kerasllm_token_ids") or [])


def _drop_variables(layer, names):
    """Untracks and deletes the variables `layer.<name>`.

    What `del layer.<name>` does, without the `gc.collect()` that Keras's
    `Layer.__delattr__` runs after each deletion: a full collection per
    LoRA factor took seconds each in a process holding many objects (4 min
    to unload and merge the tiny model inside the test suite). The
    variables are freed by reference counting once nothing else holds them.
    """
    for name in names:
        layer._untrack_variable(getattr(layer, name))
        super(keras.layers.Layer, layer).__delattr__(name)


def _remove_token_rows(model, fold):
    try:
        _, layer = token_embedding_layer(model)
    except ValueError:
        return
    if not layer.lora_enabled:
        return
    table = layer._embeddings
    if fold:
        delta = ops.matmul(layer.lora_embeddings_a, layer.lora_embeddings_b)  # scale 1
        table.assign(ops.cast(ops.add(ops.cast(table, "float32"), delta), table.dtype))
    _drop_variables(layer, ("lora_embeddings_a", "lora_embeddings_b"))
    layer.lora_enabled = False
    layer.lora_rank = None
    layer.lora_alpha = None
    layer.__dict__.pop("_kerasllm_token_ids", None)
    table.trainable = True


# ---------------------------------------------------------------- enabling / removing


def _fully_trained_layers(model, train):
    """`(path, layer)` of the layers `train` names (see `apply_lora`)."""
    if train is None:
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            return []
        return [
            (p, layer)
            for p, layer in named_layers(model)
            if "/" not in p and layer is not backbone and layer.weights
        ]
    train = [train] if isinstance(train, str) else list(train)
    chosen = {}
    for pattern in train:
        hits = [(p, layer) for p, layer in named_layers(model) if _matches(p, pattern)]
        hits = [(p, layer) for p, layer in hits if layer.weights]
        if not hits:
            raise ValueError(f"train pattern {pattern!r} matches no layer with weights.")
        chosen.update(hits)
    # A chosen layer inside another chosen one is covered by its parent.
    return [
        (p, layer) for p, layer in chosen.items()
        if not any(p.startswith(q + "/") for q in chosen)
    ]


def apply_lora(model, rank=8, alpha=None, targets=DEFAULT_TARGETS, *, train=None,
               trainable_tokens=None):
    """Enables LoRA on the layers `targets` name and freezes every other weight.

    Calls Keras's `layer.enable_lora(rank, lora_alpha=alpha)` on each matched
    `Dense`/`EinsumDense`: its kernel is frozen, `lora_kernel_a` (`he_uniform`)
    and `lora_kernel_b` (zeros) are added, and the layer computes with
    `W + (alpha / rank) * A @ B`. Every other weight of the model (embeddings,
    norms, biases, the head) is made non-trainable, so
    `model.trainable_weights` is exactly the LoRA factors and the optimizer
    keeps state for nothing else. Compile (or re-compile) the model after
    this call. Setting `model.trainable = True` afterwards would unfreeze the
    base again (Keras cascades the flag to every weight); don't.

    Args:
        model: a built Keras model (e.g. `kerasllm.models.GPT`).
        rank: the rank `r` of the update. Defaults to `8` (PEFT's default).
        alpha: the scale numerator; the update is scaled by `alpha / rank`.
            Defaults to `rank` (scale 1, as PEFT's `lora_alpha=8` at `r=8`).
        targets: layer patterns (see `match_targets`). Defaults to
            `DEFAULT_TARGETS`, every projection of every block.
        train: patterns of layers trained in full beside the adapter and
            saved with it (PEFT's `modules_to_save`), e.g. a new head.
            Defaults to `None`: for a model wrapping a `backbone` (a
            `SequenceClassifier`), its own layers outside the backbone (the
            head); otherwise none.
        trainable_tokens: token ids whose embedding rows train beside the
            adapter (`train_token_rows`; PEFT's `trainable_token_indices`),
            e.g. the chat tokens a base never learned. Saved with the
            adapter. Defaults to `None`.

    Returns:
        The matched layer paths, a list of `str`.

    Raises:
        ValueError: a bad rank/alpha, a pattern that matches nothing, or a
            model that already has LoRA layers (unload or merge them first).
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be a positive int. Received: rank={rank!r}")
    alpha = rank if alpha is None else alpha
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number. Received: alpha={alpha!r}")
    existing = lora_layers(model)
    if existing:
        raise ValueError(
            "The model already has LoRA on "
            f"{', '.join(p for p, _ in existing[:3])}{' ...' if len(existing) > 3 else ''}; "
            "call unload_adapter(model) or merge_lora(model) first."
        )
    targets = [targets] if isinstance(targets, str) else list(targets)
    chosen = match_targets(model, targets)
    trained = _fully_trained_layers(model, train)

    layers = [("", model)] + named_layers(model)
    saved = {
        "layers": [layer.trainable for _, layer in layers],
        "weights": {id(v): v.trainable for _, v in named_weights(model)},
    }
    model.trainable = True  # cascades: every layer flag on, then freeze weights one by one
    for _, variable in named_weights(model):
        variable.trainable = False
    for _, layer in trained:
        for variable in layer.weights:
            variable.trainable = True
    for _, layer in chosen:
        layer.enable_lora(rank, lora_alpha=alpha)
    if trainable_tokens is not None:
        train_token_rows(model, trainable_tokens)
    model.__dict__[_STATE_KEY] = {
        "rank": rank,
        "alpha": alpha,
        "targets": targets,
        "layers": [p for p, _ in chosen],
        "trained_layers": [p for p, _ in trained],
        "trainable_tokens": trainable_token_ids(model),
        "saved_trainable": saved,
        # The fully trained layers' values before training, put back by unload.
        "trained_before": {
            path: ops.convert_to_numpy(v).copy()
            for path, v in named_weights(model)
            if _under(path, [p for p, _ in trained])
        },
        "adapter": None,
    }
    _forget_compiled_generation(model)
    return [p for p, _ in chosen]


def lora_config(model):
    """`{"rank", "alpha", "targets", "layers", "trained_layers", "trainable_tokens", "adapter"}`
    of the LoRA on `model`, or `None`."""
    state = model.__dict__.get(_STATE_KEY)
    if state is None:
        found = lora_layers(model)
        if not found:
            return None
        # LoRA layers without a record: a `.keras` saved with LoRA enabled.
        first = found[0][1]
        state = {
            "rank": first.lora_rank,
            "alpha": first.lora_alpha,
            "targets": [p for p, _ in found],
            "layers": [p for p, _ in found],
            "trained_layers": [],
            "trainable_tokens": trainable_token_ids(model),
            "adapter": None,
        }
    keys = ("rank", "alpha", "targets", "layers", "trained_layers", "trainable_tokens", "adapter")
    return {k: state[k] for k in keys}


def _under(weight_path, layer_paths):
    return any(weight_path.startswith(p + "/") for p in layer_paths)


def _remove_lora(model, fold):
    """Drops every LoRA factor (folding `(alpha/r) A @ B` into the kernel if
    `fold`), the token rows' deltas likewise, and puts back the trainable
    flags the model had before `apply_lora`."""
    for _, layer in lora_layers(model):
        if fold:
            kernel = layer._kernel
            delta = (layer.lora_alpha / layer.lora_rank) * ops.matmul(
                layer.lora_kernel_a, layer.lora_kernel_b
            )
            kernel.assign(ops.cast(ops.add(ops.cast(kernel, "float32"), delta), kernel.dtype))
        _drop_variables(layer, ("lora_kernel_a", "lora_kernel_b"))
        layer.lora_enabled = False
        layer.lora_rank = None
        layer.lora_alpha = None
        layer._kernel.trainable = True
    _remove_token_rows(model, fold)
    state = model.__dict__.pop(_STATE_KEY, None)
    if state is not None:
        if not fold:
            for path, variable in named_weights(model):
                if path in state["trained_before"]:
                    variable.assign(state["trained_before"][path])
        saved = state["saved_trainable"]
        for (_, layer), flag in zip([("", model)] + named_layers(model), saved["layers"]):
            layer.trainable = flag  # parents first, so children's flags win
        for _, variable in named_weights(model):
            if id(variable) in saved["weights"]:
                variable.trainable = saved["weights"][id(variable)]
    _forget_compiled_generation(model)


def unload_adapter(model):
    """Removes the LoRA factors: the model computes as its base again.

    The base weights are untouched (LoRA never trains them), so this is the
    plain base model without reloading it; layers trained in full beside the
    adapter (`train`) get their values from before `apply_lora` back, and
    trainable flags return to what they were. A model without LoRA is left
    as it is.
    """
    _remove_lora(model, fold=False)


def merge_lora(model):
    """Folds each adapter into its kernel: `W <- W + (alpha / r) * A @ B`.

    Afterwards the layers are plain `Dense` layers (no LoRA weights, no
    `lora_rank` in their config), so the model saves, loads and exports like
    any other. The sum is taken in float32 and stored in the kernel's dtype.

    Returns:
        The LoRA config that was merged (see `lora_config`), or `None`.
    """
    merged = lora_config(model)
    _remove_lora(model, fold=True)
    return merged


def _forget_compiled_generation(model):
    # The compiled decode programs cached for `model` read the layers' LoRA
    # state at trace time (TensorFlow captures the variables), so a change of
    # LoRA layers must drop them; a change of values alone need not.
    from kerasllm.generation import forget_generator

    forget_generator(model)


# ---------------------------------------------------------------- fingerprints


def base_fingerprint(model, exclude=()):
    """What identifies the base an adapter belongs to: config and weights.

    Hashes every weight except the LoRA factors and token-row deltas (for a
    LoRA layer its frozen base kernel, for the token table the table itself) and those of the layers under `exclude` (layers an adapter
    trains in full), by path, dtype, shape and bytes, so it is the same on
    TensorFlow and JAX and for a model built here or loaded from disk.

    Returns:
        `{"id": 16 hex digits, "config": the model config, "weights_sha256": ...}`.
    """
    config = _model_config(model)
    digest = hashlib.sha256()
    for path, variable in sorted(named_weights(model), key=lambda item: item[0]):
        if path.rsplit("/", 1)[-1] in LORA_WEIGHTS + TOKEN_WEIGHTS or _under(path, exclude):
            continue
        array = np.ascontiguousarray(ops.convert_to_numpy(variable))
        digest.update(f"{path}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    weights_sha = digest.hexdigest()
    config_text = json.dumps(config, sort_keys=True, default=str)
    ident = hashlib.sha256(f"{config_text}|{weights_sha}".encode()).hexdigest()[:16]
    return {"id": ident, "config": config, "weights_sha256": weights_sha}


def _model_config(model):
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        return {"class": type(model).__name__, **config.to_dict()}
    def unnamed(value):
        # Layer names are auto-numbered per process ("gpt_3"): not part of the base.
        if isinstance(value, dict):
            return {k: unnamed(v) for k, v in value.items() if k != "name"}
        if isinstance(value, list):
            return [unnamed(v) for v in value]
        return value

    config = json.loads(json.dumps(model.get_config(), default=str))
    return {"class": type(model).__name__, **unnamed(config)}


def _describe(fingerprint):
    config = fingerprint.get("config") or {}
    shape = ", ".join(
        f"{k}={config[k]}"
        for k in ("num_layers", "hidden_dim", "vocab_size")
        if k in config
    )
    return f"{fingerprint['id']}" + (f" ({shape})" if shape else "")


# ---------------------------------------------------------------- saving / loading


def save_adapter(model, directory, *, overwrite=False):
    """Writes only the LoRA factors of `model`, with their config and base fingerprint.

    The directory is small (for `rank` r, `r * (d_in + d_out)` floats per
    layer) and is written atomically.

    Args:
        model: a model with LoRA (from `apply_lora` or `load_adapter`).
        directory: the adapter directory to write.
        overwrite: replace an existing adapter directory. Defaults to `False`.

    Returns:
        The directory as a `pathlib.Path`.
    """
    config = lora_config(model)
    if config is None:
        raise ValueError("The model has no LoRA layers; call apply_lora(model, ...) first.")
    arrays = {}
    for path, layer in lora_layers(model):
        for name in LORA_WEIGHTS:
            arrays[f"{path}/{name}"] = ops.convert_to_numpy(getattr(layer, name))
    if config["trainable_tokens"]:
        # The one-hot selection `A` follows from the ids; only the deltas are stored.
        path, layer = token_embedding_layer(model)
        arrays[f"{path}/lora_embeddings_b"] = ops.convert_to_numpy(layer.lora_embeddings_b)
    for path, variable in named_weights(model):
        if _under(path, config["trained_layers"]):
            arrays[path] = ops.convert_to_numpy(variable)
    spec = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rank": config["rank"],
        "alpha": config["alpha"],
        "targets": config["targets"],
        "layers": config["layers"],
        "trained_layers": config["trained_layers"],
        "trainable_tokens": config["trainable_tokens"],
        "base_fingerprint": base_fingerprint(model, exclude=config["trained_layers"]),
    }
    directory = pathlib.Path(directory)
    with atomic_directory(directory, overwrite=overwrite, marker=ADAPTER_FILE) as staging:
        np.savez(staging / WEIGHTS_FILE, **arrays)
        atomic_write_json(staging / ADAPTER_FILE, spec)
    return directory


def read_adapter_config(directory):
    """The parsed, validated `kerasllm_adapter.json` of an adapter directory."""
    directory = pathlib.Path(directory)
    spec_path = directory / ADAPTER_FILE
    if not spec_path.is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{directory} is not a LoRA adapter directory: expected {ADAPTER_FILE} "
            f"and {WEIGHTS_FILE} in it."
        )
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if spec.get("format") != FORMAT or spec.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{spec_path} has format {spec.get('format')!r} version "
            f"{spec.get('format_version')!r}; this kerasllm reads {FORMAT!r} up to "
            f"version {FORMAT_VERSION}."
        )
    return spec


def load_adapter(model, directory):
    """Puts a saved adapter on `model`, replacing any adapter it has.

    The base must be the one the adapter was trained on: its fingerprint
    (config and weights, see `base_fingerprint`) is compared first and a
    mismatch is refused. If the model already has LoRA on the same layers
    with the same rank and alpha, only the factor values change (fast, and
    compiled programs stay valid); otherwise the old adapter is unloaded and
    the new one enabled.

    Args:
        model: the base model (plain, or carrying another adapter).
        directory: an adapter directory written by `save_adapter`.

    Returns:
        The adapter's config dict (rank, alpha, targets, layers,
        trainable_tokens, base_fingerprint).

    Raises:
        ValueError: the adapter belongs to another base (the message names
            both fingerprints), or its weights do not fit the layers.
    """
    directory = pathlib.Path(directory)
    spec = read_adapter_config(directory)
    expected = spec["base_fingerprint"]
    trained_layers = spec.get("trained_layers", [])
    tokens = spec.get("trainable_tokens")
    actual = base_fingerprint(model, exclude=trained_layers)
    if actual["id"] != expected["id"]:
        differing = sorted(
            key
            for key in set(expected.get("config", {})) | set(actual["config"])
            if expected.get("config", {}).get(key) != actual["config"].get(key)
        )
        why = (
            f"configs differ in {', '.join(differing)}"
            if differing
            else "same config, different weights"
        )
        raise ValueError(
            f"The adapter at {directory} was trained on base {_describe(expected)}, "
            f"but this model is base {_describe(actual)} ({why}). Load it onto the "
            "model it was trained from."
        )
    with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}

    current = lora_config(model)
    reusable = (
        current is not None
        and current["layers"] == spec["layers"]
        and current["rank"] == spec["rank"]
        and current["alpha"] == spec["alpha"]
        and current["trained_layers"] == trained_layers
        and current["trainable_tokens"] == tokens
        and _STATE_KEY in model.__dict__
    )
    if not reusable:
        unload_adapter(model)
        matched = apply_lora(
            model, spec["rank"], spec["alpha"], spec["targets"], train=trained_layers,
            trainable_tokens=tokens,
        )
        if matched != spec["layers"]:
            unload_adapter(model)
            raise ValueError(
                f"The adapter at {directory} covers layers {spec['layers']}, but its "
                f"targets match {matched} on this model."
            )
    layers = dict(lora_layers(model))
    for path in spec["layers"]:
        for name in LORA_WEIGHTS:
            key = f"{path}/{name}"
            if key not in arrays:
                raise ValueError(f"{directory / WEIGHTS_FILE} has no array {key!r}.")
            variable = getattr(layers[path], name)
            if tuple(arrays[key].shape) != tuple(variable.shape):
                raise ValueError(
                    f"{key} in {directory / WEIGHTS_FILE} has shape "
                    f"{tuple(arrays[key].shape)}; the layer expects {tuple(variable.shape)}."
                )
            variable.assign(arrays[key])
    if tokens:
        path, layer = token_embedding_layer(model)
        key = f"{path}/lora_embeddings_b"
        if key not in arrays or tuple(arrays[key].shape) != tuple(layer.lora_embeddings_b.shape):
            raise ValueError(
                f"{directory / WEIGHTS_FILE} has no array {key!r} of shape "
                f"{tuple(layer.lora_embeddings_b.shape)}."
            )
        layer.lora_embeddings_b.assign(arrays[key])
    for path, variable in named_weights(model):
        if _under(path, trained_layers):
            if path not in arrays or tuple(arrays[path].shape) != tuple(variable.shape):
                raise ValueError(
                    f"{directory / WEIGHTS_FILE} has no array {path!r} of shape "
                    f"{tuple(variable.shape)}."
                )
            variable.assign(arrays[path])
    model.__dict__[_STATE_KEY]["adapter"] = str(directory)
    return spec


def load_with_adapter(model_dir, adapter_dir):
    """`kerasllm.load(model_dir)` with the adapter at `adapter_dir` on it.

    What `kerasllm generate --adapter` and `evaluate-tasks --adapter` use.
    """
    from kerasllm.models.model_dir import load_model_dir

    model = load_model_dir(model_dir)
    load_adapter(model, adapter_dir)
    return model
