"""`reward`: train a reward model on preference pairs.

    kerasllm reward --config recipes/configs/alignment/reward.yaml --output runs/rm

The model is the base's backbone with a scalar head (`RewardModel`), read
at the last real token; the loss is Bradley–Terry,
`−log σ(r_chosen − r_rejected)`, with optional reward centring. The run
reports held-out pairwise accuracy (the share of held-out pairs whose chosen
completion scores higher) and writes `OUTPUT/model`, which
`load_reward_model` reads back as a scorer: `rm.score(prompts, completions)`.
"""

import keras
import numpy as np
from keras import ops

from kerasllm.alignment import data as pref_data
from kerasllm.alignment.config import RewardConfig
from kerasllm.alignment.heads import RewardModel
from kerasllm.alignment.losses import bradley_terry_loss
from kerasllm.alignment.run import (
    apply_configured_lora,
    evaluate_pairs,
    execute,
    fit_pairs,
    load_pair_splits,
    load_policy,
    log,
    make_optimizer,
    save_model,
)

METRICS = ("loss", "accuracy", "reward_chosen", "reward_rejected", "margin")


class RewardObjective(keras.Model):
    """A `RewardModel` with the Bradley–Terry loss as `compute_loss`.

    Inputs: `chosen_ids`, `chosen_mask`, `rejected_ids`, `rejected_mask`
    `(B, L)`; `call` returns `(B, 2)` rewards (chosen, rejected).
    """

    def __init__(self, reward_model, center_coefficient=0.0, **kwargs):
        super().__init__(**kwargs)
        self.reward_model = reward_model
        self.center_coefficient = center_coefficient
        self.trackers = [keras.metrics.Mean(name=name) for name in METRICS]

    @property
    def metrics(self):
        return list(self.trackers)

    def call(self, inputs, training=False):
        ids = ops.concatenate([inputs["chosen_ids"], inputs["rejected_ids"]], axis=0)
        mask = ops.concatenate([inputs["chosen_mask"], inputs["rejected_mask"]], axis=0)
        rewards = self.reward_model({"token_ids": ids, "padding_mask": mask}, training=training)
        return ops.stack(ops.split(rewards, 2), axis=1)  # (B, 2)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        chosen, rejected = y_pred[:, 0], y_pred[:, 1]
        loss = bradley_terry_loss(chosen, rejected, center_coefficient=self.center_coefficient)
        values = (
            loss,
            ops.mean(ops.cast(chosen > rejected, "float32")),
            ops.mean(chosen),
            ops.mean(rejected),
            ops.mean(chosen - rejected),
        )
        for tracker, value in zip(self.trackers, values):
            tracker.update_state(value)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()


def pair_arrays(pairs, tokenizer, max_length):
    """Right-padded `chosen_ids/mask`, `rejected_ids/mask` of whole sequences."""
    encoded = pref_data.encode_pairs(pairs, tokenizer, max_length)
    arrays = {}
    for key in ("chosen", "rejected"):
        ids, labels = getattr(encoded, f"{key}_ids"), getattr(encoded, f"{key}_labels")
        # Input ids plus the last label make the whole sequence.
        lengths = np.max(np.where(labels != pref_data.IGNORE_INDEX, np.arange(labels.shape[1]), -1), axis=1) + 1
        full = np.concatenate([ids, np.full((len(ids), 1), int(tokenizer.pad_token_id), "int32")], 1)
        full[np.arange(len(ids)), lengths] = labels[np.arange(len(ids)), lengths - 1]
        mask = (np.arange(full.shape[1])[None] <= lengths[:, None]).astype("int32")
        arrays[f"{key}_ids"], arrays[f"{key}_mask"] = full, mask
    return arrays, encoded.truncated


def load_reward_model(path):
    """A trained `RewardModel` from its directory, with its tokenizer attached."""
    import kerasllm

    model = kerasllm.load(path)
    if not isinstance(model, RewardModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a RewardModel.")
    return model


def reward(config, output, *, overrides=None, resume=False, overwrite=False, callbacks=None, verbose="auto"):
    """Trains a reward model; writes `OUTPUT/model`.

    Returns:
        A dict: `output`, `model_dir`, `step`, `seconds`, `pairs`, and the
        held-out `eval` metrics (`accuracy`: pairwise accuracy, `margin`,
        `loss`) before and after training.

    Example:
    ```python
    from kerasllm.alignment.reward import reward, load_reward_model
    result = reward("recipes/configs/alignment/reward.yaml", "runs/rm")
    rm = load_reward_model(result["model_dir"])
    rm.score(["2+3="], ["5"])
    ```
    """
    return execute(
        "reward", RewardConfig, lambda c, out, run: _train_reward(c, out, run, callbacks, verbose),
        config, output, overrides=overrides, resume=resume, overwrite=overwrite,
    )


def _train_reward(config, output, run, callbacks, verbose):
    backbone = load_policy(config, lora=False)
    tokenizer = backbone.tokenizer
    max_length = min(config.max_length, backbone.config.context_length - 1)
    report = pref_data.LoadReport()
    train_pairs, eval_pairs = load_pair_splits(config, report)
    train_arrays, truncated = pair_arrays(train_pairs, tokenizer, max_length)
    eval_arrays = pair_arrays(eval_pairs, tokenizer, max_length)[0] if eval_pairs else None

    model = RewardModel(backbone, dtype=backbone.dtype_policy)
    model.metadata = backbone.metadata
    apply_configured_lora(model, config)  # the new head trains in full beside the adapter
    objective = RewardObjective(model, config.center_coefficient)
    objective.compile(optimizer=make_optimizer(config))

    before = evaluate_pairs(objective, eval_arrays, config.batch_size)
    log(
        f"Reward model on {len(train_pairs)} pairs ({len(eval_pairs)} held out, {truncated} "
        f"truncated, {len(report.skipped)} bad lines skipped), up to step {config.steps}.",
        "reward",
    )
    step = fit_pairs(
        objective, run, output, config, train_arrays, title="kerasllm reward", metrics=METRICS,
        callbacks=callbacks, verbose=verbose,
    )
    after = evaluate_pairs(objective, eval_arrays, config.batch_size)
    result = {
        "step": step,
        "pairs": {"train": len(train_pairs), "eval": len(eval_pairs), "truncated": truncated,
                  "skipped": len(report.skipped)},  # fmt: skip
        "eval_before": before,
        "eval": after,
    }
    result["model_dir"] = str(save_model(model, output, "reward", config, result))
    if after:
        log(f"Done: held-out pairwise accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}. "
            f"Model: {result['model_dir']}", "reward")  # fmt: skip
    return result
