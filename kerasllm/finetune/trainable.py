"""Counting what a fine-tuning method leaves trainable, and walking layer paths."""

import math


def trainable_summary(model):
    """Trainable and total parameter counts of `model`.

    `total` counts every weight, LoRA factors included (as PEFT's
    `print_trainable_parameters` does), so `fraction` is the share the
    optimizer updates and keeps state for.

    Args:
        model: a built Keras model.

    Returns:
        A dict `{"trainable": int, "total": int, "fraction": float}`.

    Example:
    ```python
    model = kerasllm.models.GPT.from_preset("tiny")
    kerasllm.finetune.apply_lora(model, rank=8)
    summary = kerasllm.finetune.trainable_summary(model)
    print(kerasllm.finetune.format_trainable(summary))  # "4.7% of 1.40M"
    ```
    """
    trainable = sum(_size(v) for v in model.trainable_weights)
    total = sum(_size(v) for v in _unique(model.weights))
    return {
        "trainable": trainable,
        "total": total,
        "fraction": trainable / total if total else 0.0,
    }


def format_trainable(summary):
    """`"0.9% of 10.8M"` for a `trainable_summary` dict."""
    percent = 100.0 * summary["fraction"]
    digits = 1 if percent >= 0.1 or percent == 0 else 3
    return f"{percent:.{digits}f}% of {_human(summary['total'])}"


def named_layers(model):
    """Every sublayer of `model` with its path relative to `model`.

    Paths join layer names from the model down (`block_0/attention/qkv`),
    so they are the same for a model built here and one loaded from a
    `.keras` file, whatever the model object's own (auto-numbered) name. A
    wrapped model's `backbone` is called `backbone`, not by its name, for
    the same reason (`backbone/block_0/attention/qkv`).

    Returns:
        A list of `(path, layer)`, parents before children.
    """
    found, seen = [], set()

    def walk(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            seen.add(id(child))
            name = "backbone" if child is getattr(layer, "backbone", None) else child.name
            path = prefix + name
            found.append((path, child))
            walk(child, path + "/")

    walk(model, "")
    return found


def named_weights(model):
    """Every weight of `model` as `(layer_path/weight_name, variable)`, once each."""
    out, seen = [], set()
    for path, layer in [("", model)] + named_layers(model):
        for variable in layer._trainable_variables + layer._non_trainable_variables:
            if id(variable) in seen:
                continue
            seen.add(id(variable))
            name = variable.name.split("/")[-1]
            out.append((f"{path}/{name}" if path else name, variable))
    return out


def _unique(variables):
    seen = set()
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            yield variable


def _size(variable):
    return math.prod(variable.shape)


def _human(n):
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value >= 10 else f"{value:.2f}{unit}"
    return str(n)
