"""How likely a model finds a text: the confidence signals routing uses.

`token_log_probs` is one batched forward pass (`keras.ops` only): for each
row it returns the log-probability the model gives every token of the
continuation after the prompt. Routing reads two numbers from it: the mean
log-probability of a member's own answer (a cascade's confidence) and the
mean log-probability of the prompt itself (the perplexity policy).
"""

import numpy as np
from keras import ops

from kerasllm.alignment.losses import token_log_probs as token_log_probs_of_labels


def token_log_probs(model, prompt_ids, continuation_ids, *, batch_size=16):
    """Log-probabilities of each continuation token given its prompt.

    Rows are right-padded (a causal model's real positions do not see the
    padding to their right), so no padding mask is needed.

    Args:
        model: a `kerasllm.models.GPT` (or any model mapping `(B, T)` ids to
            `(B, T, V)` logits).
        prompt_ids: a list of id lists; each must hold at least one id.
        continuation_ids: a list of id lists, one per prompt.
        batch_size: rows per forward pass. Defaults to 16.

    Returns:
        A list of float32 NumPy arrays, one per row, of length
        `len(continuation_ids[i])`.
    """
    if len(prompt_ids) != len(continuation_ids):
        raise ValueError(
            "prompt_ids and continuation_ids must have one row each per example. "
            f"Received: {len(prompt_ids)} and {len(continuation_ids)} rows"
        )
    context = model.config.context_length
    results = []
    for start in range(0, len(prompt_ids), batch_size):
        rows = []
        for prompt, continuation in zip(
            prompt_ids[start : start + batch_size], continuation_ids[start : start + batch_size]
        ):
            if not prompt:
                raise ValueError("Every prompt needs at least one token to condition on. Received: []")
            row = list(prompt) + list(continuation)
            # Keep the most recent tokens when a row exceeds the context.
            rows.append((row[-context:], len(continuation)))
        width = max(len(row) for row, _ in rows)
        ids = np.zeros((len(rows), width), dtype="int32")
        for i, (row, _) in enumerate(rows):
            ids[i, : len(row)] = row
        logits = model(ops.convert_to_tensor(ids), training=False)  # (B, T, V)
        # Position t predicts token t+1.
        picked = ops.convert_to_numpy(token_log_probs_of_labels(logits[:, :-1, :], ids[:, 1:]))  # (B, T-1)
        for i, (row, count) in enumerate(rows):
            end = len(row) - 1
            count = min(count, end)
            results.append(picked[i, end - count : end].astype("float32"))
    return results


def mean_log_prob(values):
    """The mean of per-token log-probabilities; `-inf` for an empty row."""
    values = np.asarray(values, dtype="float64")
    return float(values.mean()) if values.size else float("-inf")
