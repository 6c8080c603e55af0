"""Partial fine-tuning: retrain only the top blocks, the final norm and the head."""

from kerasllm.finetune.trainable import named_layers


def freeze_for_partial(model, trainable_blocks, *, train_tied_head=False, trainable_tokens=None):
    """Freezes a GPT's embeddings and lower blocks; the top ones stay trainable.

    The last `trainable_blocks` transformer blocks, the final norm and the
    output head are trainable; the token and position embeddings and every
    block below are frozen (`layer.trainable = False`, Keras's own freezing:
    the optimizer builds no state for them and they receive no update).

    Tied embeddings: when the model has no separate head (`tie_embeddings`,
    the default), the head *is* the token embedding table. It stays frozen
    by default, because training it also moves the input embedding under
    every frozen block; then "the head" trains nothing of its own and the
    top blocks and final norm adapt to the fixed table. Pass
    `train_tied_head=True` to train the shared table anyway (the position
    table stays frozen).

    For a model wrapping a GPT `backbone` (e.g. `SequenceClassifier`), the
    backbone is frozen the same way and the wrapper's own layers (its head)
    stay trainable.

    Args:
        model: a `kerasllm.models.GPT`, or a model with such a `.backbone`.
        trainable_blocks: how many of the top blocks to train, `0` to
            `num_layers`.
        train_tied_head: train the tied token table as the head. Defaults to
            `False`.
        trainable_tokens: token ids whose embedding rows train while the
            rest of the table stays frozen (`kerasllm.finetune.lora.
            train_token_rows`), e.g. the chat tokens a base never learned.
            `merge_lora` folds them into the table before saving. Defaults
            to `None`.

    Returns:
        The paths of the layers left trainable (relative to `model`).

    Example:
    ```python
    model = kerasllm.models.GPT.from_preset("tiny")   # 4 blocks
    kerasllm.finetune.freeze_for_partial(model, trainable_blocks=1)
    # ['block_3', 'final_norm']
    ```
    """
    gpt = getattr(model, "backbone", model)
    blocks = getattr(gpt, "blocks", None)
    if blocks is None or not hasattr(gpt, "embedding"):
        raise TypeError(
            "freeze_for_partial needs a kerasllm GPT (or a model with a GPT "
            f"`backbone`). Received: {type(model).__name__}"
        )
    num_layers = len(blocks)
    if (
        not isinstance(trainable_blocks, int)
        or isinstance(trainable_blocks, bool)
        or not 0 <= trainable_blocks <= num_layers
    ):
        raise ValueError(
            f"trainable_blocks must be an int from 0 to {num_layers} (the model's "
            f"blocks). Received: trainable_blocks={trainable_blocks!r}"
        )
    model.trainable = True  # cascades to every layer and weight; then freeze
    gpt.embedding.trainable = False
    for block in blocks[: num_layers - trainable_blocks]:
        block.trainable = False
    tied = getattr(gpt, "lm_head", None) is None
    if tied and train_tied_head:
        if trainable_tokens is not None:
            raise ValueError(
                "train_tied_head trains every row of the token table already; "
                f"drop trainable_tokens. Received: trainable_tokens={trainable_tokens!r}"
            )
        gpt.embedding.token_embedding.trainable = True
    if trainable_tokens is not None:
        from kerasllm.finetune.lora import train_token_rows

        train_token_rows(model, trainable_tokens)
    trainable = {id(v) for v in model.trainable_weights}
    full = [
        path
        for path, layer in named_layers(model)
        if layer.weights and all(id(v) in trainable for v in layer.weights)
    ]
    # A fully trainable layer is listed once, not with each of its sublayers.
    return [p for p in full if not any(p.startswith(q + "/") for q in full)]
