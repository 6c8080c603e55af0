"""`dpo`: direct preference optimization of a model directory on preference pairs.

    kerasllm dpo --config recipes/configs/alignment/dpo.yaml --output runs/dpo
    kerasllm dpo --config recipes/configs/alignment/dpo.yaml --output runs/dpo --set beta=0.2

The reference model's log-probabilities of every pair are computed once,
before training, with the starting weights (with LoRA: the base without
its adapter, since the adapter starts as a no-op), and cached in
`OUTPUT/reference_logps.npz`; no second model is held during training.
Training is Keras `fit` over a `keras.Model` whose `compute_loss` is the DPO
loss, so the progress bar, TensorBoard and checkpoints work as usual.
"""

import keras
import numpy as np
from keras import ops

from kerasllm.alignment import data as pref_data
from kerasllm.alignment.config import DPOConfig
from kerasllm.alignment.losses import dpo_loss, sequence_log_probs
from kerasllm.alignment.run import (
    evaluate_pairs,
    execute,
    fit_pairs,
    load_pair_splits,
    load_policy,
    log,
    make_optimizer,
    save_model,
)

METRICS = ("loss", "rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies", "nll_chosen")


class DPOObjective(keras.Model):
    """The policy with the DPO loss as its `compute_loss`.

    Inputs are dicts of `chosen_ids`, `chosen_labels`, `rejected_ids`,
    `rejected_labels` `(B, L)` (labels `-100` off the completion) and the
    cached `reference_chosen`, `reference_rejected` `(B,)`. `call` returns
    the policy's `(B, 2)` sequence log-probabilities (chosen, rejected);
    the loss and the implicit-reward metrics (`rewards_chosen`,
    `rewards_rejected`, `rewards_margins`, `rewards_accuracies`) and
    `nll_chosen` (the chosen completions' mean per-token negative
    log-likelihood) come from `compute_loss`.

    Args:
        policy: a `kerasllm.models.GPT`.
        beta: DPO's beta. Defaults to `0.1`.
        loss_type: `"sigmoid"` or `"ipo"`. Defaults to `"sigmoid"`.
        rpo_alpha: weight of `nll_chosen` added to the loss (RPO, Pang et
            al., 2024; TRL's `rpo_alpha`). Defaults to `0.0`.
    """

    def __init__(self, policy, beta=0.1, loss_type="sigmoid", rpo_alpha=0.0, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.beta = beta
        self.loss_type = loss_type
        self.rpo_alpha = rpo_alpha
        self.trackers = [keras.metrics.Mean(name=name) for name in METRICS]

    @property
    def metrics(self):
        return list(self.trackers)

    def call(self, inputs, training=False):
        ids = ops.concatenate([inputs["chosen_ids"], inputs["rejected_ids"]], axis=0)  # (2B, L)
        labels = ops.concatenate([inputs["chosen_labels"], inputs["rejected_labels"]], axis=0)
        logits = self.policy(ids, training=training)  # (2B, L, V)
        log_probs = sequence_log_probs(
            logits, labels, labels >= 0, average=self.loss_type == "ipo"
        )  # (2B,)
        return ops.stack(ops.split(log_probs, 2), axis=1)  # (B, 2)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses, chosen, rejected = dpo_loss(
            y_pred[:, 0], y_pred[:, 1], x["reference_chosen"], x["reference_rejected"],
            beta=self.beta, loss_type=self.loss_type,
        )  # fmt: skip
        # The sigmoid loss reads summed log-probabilities, IPO per-token means.
        tokens = ops.maximum(ops.sum(ops.cast(x["chosen_labels"] >= 0, "float32"), axis=1), 1.0)
        per_token = y_pred[:, 0] if self.loss_type == "ipo" else y_pred[:, 0] / tokens
        nll = -ops.mean(per_token)
        loss = ops.mean(losses)
        if self.rpo_alpha:
            loss = loss + self.rpo_alpha * nll
        values = (
            loss,
            ops.mean(chosen),
            ops.mean(rejected),
            ops.mean(chosen - rejected),
            ops.mean(ops.cast(chosen > rejected, "float32")),
            nll,
        )
        for tracker, value in zip(self.trackers, values):
            tracker.update_state(value)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()


def reference_log_probs(objective, arrays, batch_size):
    """`(N, 2)` log-probabilities of each pair's chosen and rejected completion."""
    inputs = {k: arrays[k] for k in ("chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels")}
    return np.asarray(objective.predict(inputs, batch_size=batch_size, verbose=0), "float32")


def _arrays(encoded):
    return {
        "chosen_ids": encoded.chosen_ids,
        "chosen_labels": encoded.chosen_labels,
        "rejected_ids": encoded.rejected_ids,
        "rejected_labels": encoded.rejected_labels,
    }


def dpo(config, output, *, overrides=None, resume=False, overwrite=False, callbacks=None, verbose="auto"):
    """Trains a model directory with DPO; writes `OUTPUT/model`.

    Args:
        config: a `DPOConfig`, a dict of its fields, a YAML path, or `None`
            with `resume=True`.
        output: the run directory.
        overrides: `--set` values. Defaults to `None`.
        resume: continue from the last checkpoint. Defaults to `False`.
        overwrite: start over in `output`. Defaults to `False`.
        callbacks: extra Keras callbacks. Defaults to `None`.
        verbose: `fit`'s verbosity. Defaults to `"auto"`.

    Returns:
        A dict: `output`, `model_dir`, `step`, `seconds`, `pairs` (train,
        eval, truncated, skipped) and `before` / `after` (the eval pairs'
        loss and implicit-reward metrics).

    Example:
    ```python
    from kerasllm.alignment import dpo
    result = dpo("recipes/configs/alignment/dpo.yaml", "runs/dpo",
                 overrides={"base": "runs/sft/model", "steps": 50})
    ```
    """
    return execute(
        "dpo", DPOConfig, lambda c, out, run: _train_dpo(c, out, run, callbacks, verbose),
        config, output, overrides=overrides, resume=resume, overwrite=overwrite,
    )


def _train_dpo(config, output, run, callbacks, verbose):
    policy = load_policy(config)
    tokenizer = policy.tokenizer
    max_length = min(config.max_length, policy.config.context_length)
    report = pref_data.LoadReport()
    train_pairs, eval_pairs = load_pair_splits(config, report)
    train = pref_data.encode_pairs(train_pairs, tokenizer, max_length)
    train_arrays = _arrays(train)
    eval_arrays = _arrays(pref_data.encode_pairs(eval_pairs, tokenizer, max_length)) if eval_pairs else None

    objective = DPOObjective(policy, beta=config.beta, loss_type=config.loss_type, rpo_alpha=config.rpo_alpha)
    objective.compile(optimizer=make_optimizer(config))
    cache = output / "reference_logps.npz"
    if cache.is_file():
        saved = np.load(cache)
        train_ref, eval_ref = saved["train"], saved["eval"] if "eval" in saved else None
    else:
        log("Computing the reference log-probabilities once...", "dpo")
        train_ref = reference_log_probs(objective, train_arrays, config.batch_size)
        eval_ref = reference_log_probs(objective, eval_arrays, config.batch_size) if eval_arrays else None
        np.savez(cache, train=train_ref, **({"eval": eval_ref} if eval_ref is not None else {}))
    train_arrays.update(reference_chosen=train_ref[:, 0], reference_rejected=train_ref[:, 1])
    if eval_arrays:
        eval_arrays.update(reference_chosen=eval_ref[:, 0], reference_rejected=eval_ref[:, 1])

    before = evaluate_pairs(objective, eval_arrays, config.batch_size)
    log(
        f"DPO ({config.loss_type}, beta={config.beta}) on {len(train)} pairs "
        f"({len(eval_pairs)} held out, {train.truncated} truncated, "
        f"{len(report.skipped)} bad lines skipped), up to step {config.steps}.",
        "dpo",
    )
    step = fit_pairs(
        objective, run, output, config, train_arrays, title="kerasllm dpo", metrics=METRICS,
        callbacks=callbacks, verbose=verbose,
    )
    after = evaluate_pairs(objective, eval_arrays, config.batch_size)
    result = {
        "step": step,
        "pairs": {
            "train": len(train_pairs), "eval": len(eval_pairs),
            "truncated": train.truncated, "skipped": len(report.skipped),
        },  # fmt: skip
        "before": before,
        "after": after,
    }
    result["model_dir"] = str(save_model(policy, output, "dpo", config, result))
    if after:
        log(
            f"Done: held-out reward accuracy {before.get('rewards_accuracies', 0):.3f} -> "
            f"{after['rewards_accuracies']:.3f}, margin {after['rewards_margins']:.3f}. "
            f"Model: {result['model_dir']}",
            "dpo",
        )
    return result
