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

import math
import pathlib
import time

import keras
import numpy as np
from keras import ops

from kerasllm.alignment import data as pref_data
from kerasllm.alignment.config import DPOConfig
from kerasllm.alignment.losses import dpo_loss, sequence_log_probs
from kerasllm.alignment.run import (
    MetricsLog,
    diverged,
    load_policy,
    log,
    make_optimizer,
    prepare_output,
    save_policy,
)
from kerasllm.training.callbacks import NonFiniteGuard, StepCheckpoint

METRICS = ("loss", "rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies")


class DPOObjective(keras.Model):
    """The policy with the DPO loss as its `compute_loss`.

    Inputs are dicts of `chosen_ids`, `chosen_labels`, `rejected_ids`,
    `rejected_labels` `(B, L)` (labels `-100` off the completion) and the
    cached `reference_chosen`, `reference_rejected` `(B,)`. `call` returns
    the policy's `(B, 2)` sequence log-probabilities (chosen, rejected);
    the loss and the implicit-reward metrics (`rewards_chosen`,
    `rewards_rejected`, `rewards_margins`, `rewards_accuracies`) come from
    `compute_loss`.

    Args:
        policy: a `kerasllm.models.GPT`.
        beta: DPO's beta. Defaults to `0.1`.
        loss_type: `"sigmoid"` or `"ipo"`. Defaults to `"sigmoid"`.
    """

    def __init__(self, policy, beta=0.1, loss_type="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.beta = beta
        self.loss_type = loss_type
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
        loss = ops.mean(losses)
        values = (
            loss,
            ops.mean(chosen),
            ops.mean(rejected),
            ops.mean(chosen - rejected),
            ops.mean(ops.cast(chosen > rejected, "float32")),
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


def encode_preferences(config, tokenizer, paths, report=None):
    pairs = pref_data.load_preferences(paths, config.skip_bad_lines, report)
    if not pairs:
        raise ValueError(f"No preference pairs in {paths}.")
    return pairs


def _split(pairs, fraction, seed):
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_eval = int(round(len(pairs) * fraction)) if len(pairs) > 1 else 0
    return [pairs[i] for i in order[n_eval:]], [pairs[i] for i in order[:n_eval]]


def _arrays(encoded):
    return {
        "chosen_ids": encoded.chosen_ids,
        "chosen_labels": encoded.chosen_labels,
        "rejected_ids": encoded.rejected_ids,
        "rejected_labels": encoded.rejected_labels,
    }


def _batches(arrays, batch_size, seed, start_step):
    """An endless stream of shuffled batches, each epoch reshuffled, from `start_step`."""
    n = len(arrays["chosen_ids"])
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(1 + (start_step + 1) * batch_size // n)])
    position = start_step * batch_size
    while True:
        while position + batch_size > len(order):
            order = np.concatenate([order, rng.permutation(n)])
        index = order[position : position + batch_size]
        position += batch_size
        yield ({k: v[index] for k, v in arrays.items()},)


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
    started = time.perf_counter()
    output = pathlib.Path(output)
    config, run = prepare_output(
        output, DPOConfig, config, overrides, resume=resume, overwrite=overwrite, method="dpo"
    )
    with run.session(config.to_dict()):
        return _train_dpo(config, output, run, callbacks, verbose, started)


def _train_dpo(config, output, run, callbacks, verbose, started):
    keras.utils.set_random_seed(config.seed)

    policy = load_policy(config)
    tokenizer = policy.tokenizer
    max_length = min(config.max_length, policy.config.context_length)
    report = pref_data.LoadReport()
    pairs = encode_preferences(config, tokenizer, config.data, report)
    if config.eval_data:
        train_pairs, eval_pairs = pairs, encode_preferences(config, tokenizer, config.eval_data)
    else:
        train_pairs, eval_pairs = _split(pairs, config.eval_fraction, config.seed)
    train = pref_data.encode_pairs(train_pairs, tokenizer, max_length)
    train_arrays = _arrays(train)
    eval_arrays = _arrays(pref_data.encode_pairs(eval_pairs, tokenizer, max_length)) if eval_pairs else None

    objective = DPOObjective(policy, beta=config.beta, loss_type=config.loss_type)
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

    def evaluate():
        if not eval_arrays:
            return {}
        return objective.evaluate(eval_arrays, batch_size=config.batch_size, verbose=0, return_dict=True)

    before = evaluate()
    start_step = run.restore(objective)
    epoch_steps = math.gcd(config.log_every, config.checkpoint_every, config.steps)
    guard = NonFiniteGuard()
    run_callbacks = [
        guard,
        MetricsLog(output, "kerasllm dpo", METRICS, start_step=start_step),
        StepCheckpoint(output / "checkpoints", every=config.checkpoint_every, keep=config.keep_checkpoints),
        *(callbacks or []),
    ]
    log(
        f"DPO ({config.loss_type}, beta={config.beta}) on {len(train)} pairs "
        f"({len(eval_pairs)} held out, {train.truncated} truncated, "
        f"{len(report.skipped)} bad lines skipped), steps {start_step}..{config.steps}.",
        "dpo",
    )
    if start_step < config.steps:
        objective.fit(
            _batches(train_arrays, config.batch_size, config.seed, start_step),
            steps_per_epoch=epoch_steps,
            epochs=config.steps // epoch_steps,
            initial_epoch=start_step // epoch_steps,
            shuffle=False,  # the batches are shuffled (seeded, resumable) by _batches
            callbacks=run_callbacks,
            verbose=verbose,
        )
    if guard.diverged_at is not None:
        diverged(run, guard.diverged_at, guard.message)
    after = evaluate()
    step = int(ops.convert_to_numpy(objective.optimizer.iterations))
    result = {
        "output": str(output),
        "step": step,
        "pairs": {
            "train": len(train_pairs), "eval": len(eval_pairs),
            "truncated": train.truncated, "skipped": len(report.skipped),
        },  # fmt: skip
        "before": _rounded(before),
        "after": _rounded(after),
    }
    result["model_dir"] = str(save_policy(policy, output, "dpo", config, result))
    result["seconds"] = round(time.perf_counter() - started, 1)
    run.complete(result)
    if after:
        log(
            f"Done: held-out reward accuracy {before.get('rewards_accuracies', 0):.3f} -> "
            f"{after['rewards_accuracies']:.3f}, margin {after['rewards_margins']:.3f}. "
            f"Model: {result['model_dir']}",
            "dpo",
        )
    return result


def _rounded(metrics):
    return {k: round(float(v), 5) for k, v in metrics.items()}
