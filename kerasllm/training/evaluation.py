"""Held-out loss, perplexity and bits-per-byte, with a unigram baseline.

    loss            mean next-token cross-entropy, nats per token
    perplexity      exp(loss)
    bits_per_byte   total nats / ln 2 / UTF-8 bytes of the text. Independent of
                    the tokenizer, so models with different vocabularies compare.
    unigram_bits_per_byte
                    the same for a unigram model of token frequencies (fit on
                    the training split, add-one smoothing): the score of a
                    model that learned nothing but which tokens are common.

Every token of the text after the first is scored, in windows of the model's
context length (the last window is shorter and padded; padding is ignored).
"""

import math
import os
import tempfile

import keras
import numpy as np
from keras import ops

from kerasllm.training.losses import IGNORE_INDEX


def unigram_counts(tokens, vocabulary_size):
    """How often each id occurs in `tokens`, a `(vocabulary_size,)` int64 array."""
    return np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocabulary_size)[
        :vocabulary_size
    ]


def unigram_bits(tokens, counts):
    """Total bits of `tokens` under the add-one-smoothed unigram model `counts`."""
    counts = np.asarray(counts, dtype=np.float64)
    log2_p = np.log2(counts + 1.0) - np.log2(counts.sum() + len(counts))
    return float(-log2_p[np.asarray(tokens, dtype=np.int64)].sum())


def windows(tokens, context_length, pad_id=0):
    """Non-overlapping `(inputs, targets)` windows covering every next token.

    Returns:
        Two int32 arrays `(num_windows, context_length)`; targets past the end
        of `tokens` are `IGNORE_INDEX`.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    num_targets = len(tokens) - 1
    if num_targets < 1:
        raise ValueError(f"Need at least 2 tokens to evaluate. Received: {len(tokens)} tokens")
    count = -(-num_targets // context_length)
    inputs = np.full((count, context_length), pad_id, dtype=np.int32)
    targets = np.full((count, context_length), IGNORE_INDEX, dtype=np.int32)
    for row, start in enumerate(range(0, num_targets, context_length)):
        chunk = tokens[start : start + context_length + 1]
        inputs[row, : len(chunk) - 1] = chunk[:-1]
        targets[row, : len(chunk) - 1] = chunk[1:]
    return inputs, targets


class _WindowNats(keras.layers.Layer):
    """Summed cross-entropy of each window's valid targets: `(B, T, V), (B, T) -> (B,)`."""

    def call(self, logits, targets):
        valid = ops.not_equal(targets, IGNORE_INDEX)
        per_token = ops.sparse_categorical_crossentropy(
            ops.where(valid, targets, 0), ops.cast(logits, "float32"), from_logits=True
        )  # (B, T)
        return ops.sum(per_token * ops.cast(valid, "float32"), axis=-1)  # (B,)


def total_nats(model, tokens, batch_size=8, context_length=None):
    """Summed next-token cross-entropy (nats) of `tokens`, and the count.

    The model and the loss run as one compiled `predict` (on any backend),
    which returns one number per window, never the logits.

    Args:
        model: a causal LM returning logits `(batch, seq, vocab)`.
        tokens: a 1-D integer array.
        batch_size: windows per forward pass. Defaults to `8`.
        context_length: window length. Defaults to `model.config.context_length`.

    Returns:
        `(nats, num_scored_tokens)`.
    """
    context_length = context_length or model.config.context_length
    inputs, targets = windows(tokens, context_length)
    token_ids = keras.Input((context_length,), dtype="int32")
    labels = keras.Input((context_length,), dtype="int32")
    scorer = keras.Model([token_ids, labels], _WindowNats()(model(token_ids), labels))
    nats = scorer.predict([inputs, targets], batch_size=batch_size, verbose=0)  # (N,)
    return float(np.sum(nats, dtype=np.float64)), int((targets != IGNORE_INDEX).sum())


def language_model_metrics(model, tokens, num_bytes, unigram=None, batch_size=8):
    """Loss, perplexity and bits-per-byte of `model` on a tokenized text.

    Args:
        model: a causal LM (a `kerasllm.models.GPT`).
        tokens: the text's ids, a 1-D integer array.
        num_bytes: UTF-8 bytes of the text.
        unigram: token counts of the training split (see `unigram_counts`)
            for `unigram_bits_per_byte`, or `None`. Defaults to `None`.
        batch_size: windows per forward pass. Defaults to `8`.

    Returns:
        A dict with `loss`, `perplexity`, `bits_per_byte`, `num_tokens`
        (the tokens scored: every token but the first), `num_bytes` and,
        given `unigram`, `unigram_bits_per_byte`.
    """
    nats, count = total_nats(model, tokens, batch_size=batch_size)
    loss = nats / count
    metrics = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_byte": nats / math.log(2) / num_bytes,
        "num_tokens": count,
        "num_bytes": int(num_bytes),
    }
    if unigram is not None:
        # The same targets as the model is scored on: every token but the first.
        metrics["unigram_bits_per_byte"] = unigram_bits(np.asarray(tokens)[1:], unigram) / num_bytes
    return metrics


def evaluate(model, inputs=None, *, split="test", batch_size=8, cache_dir=None):
    """Evaluate a trained model directory on held-out text.

    Args:
        model: a model directory written by `pretrain` (or `kerasllm.save`),
            or a loaded model with `.tokenizer` and `.metadata`.
        inputs: a path or list of paths (files, directories, globs) to
            evaluate on, all of their text. `None` evaluates `split` of the
            corpus the model was trained on. Defaults to `None`.
        split: the split of the training corpus to use without `inputs`:
            `"val"` or `"test"`. Defaults to `"test"`.
        batch_size: windows per forward pass. Defaults to `8`.
        cache_dir: where to keep the tokenized text (`None`: a temporary
            directory). Defaults to `None`.

    Returns:
        A dict: `loss`, `perplexity`, `bits_per_byte`,
        `unigram_bits_per_byte` (when the model directory has unigram counts
        from training), `num_tokens`, `num_bytes`, and what was evaluated.

    Example:
    ```python
    metrics = kerasllm.training.evaluate("runs/tiny/model", split="test")
    print(metrics["bits_per_byte"], metrics["unigram_bits_per_byte"])
    ```
    """
    from kerasllm.data import TokenCache

    if isinstance(model, (str, os.PathLike)):
        import kerasllm

        model = kerasllm.load(model)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("The model has no tokenizer; evaluate needs one to read text.")
    metadata = getattr(model, "metadata", None) or {}
    reader_kwargs = {}
    if inputs is None and metadata.get("pretrain_config"):
        # The run's own split rule: its text unit, and a named
        # validation_corpus / test_corpus where it had them.
        from kerasllm.training.config import PretrainConfig

        config = PretrainConfig.from_dict(metadata["pretrain_config"])
        corpus, corpus_split, reader_kwargs = config.corpus_split(split)
    elif inputs is None:
        corpus, corpus_split = metadata.get("corpus", "python-stdlib"), split
    else:
        corpus, corpus_split = inputs, "all"
    with tempfile.TemporaryDirectory(prefix="kerasllm-eval-") as scratch:
        cache = TokenCache.get_or_build(
            corpus,
            tokenizer,
            cache_dir or scratch,
            split=corpus_split,
            show_progress=False,
            **reader_kwargs,
        )
        tokens = np.asarray(cache.tokens)
        num_bytes = cache.num_bytes
    unigram = metadata.get("unigram_counts")
    metrics = language_model_metrics(
        model, tokens, num_bytes, unigram=unigram, batch_size=batch_size
    )
    metrics["evaluated"] = {"corpus": corpus, "split": corpus_split}
    return metrics
