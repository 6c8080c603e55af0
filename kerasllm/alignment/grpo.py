"""`grpo`: group relative policy optimization against Python reward functions.

    kerasllm grpo --config recipes/configs/alignment/grpo.yaml --output runs/grpo

Each step samples `group_size` completions for each of `prompts_per_step`
prompts with the compiled generator, scores them (the task verifiers, any
`module:function`, or a reward model), turns the rewards into advantages
relative to each prompt's group, and takes `updates_per_step` optimizer
steps of the clipped surrogate (plus `kl_coefficient` times the k3 KL to
the frozen base, if asked). No value model.

With one update per step the ratio is 1 and the loss is the negative mean
advantage, which is zero by construction: a GRPO loss near zero is normal.
Watch the reward instead.
"""

import time

import keras
import numpy as np
from keras import ops

from kerasllm.alignment.config import GRPOConfig
from kerasllm.alignment.losses import clipped_policy_loss, group_advantages, kl_estimate, masked_mean
from kerasllm.alignment.online import RolloutStepper, TokenLogProbs, predict_log_probs, train_online
from kerasllm.alignment.run import execute

TRAIN_METRICS = ("loss", "clip_fraction", "approx_kl", "ratio", "kl")


class PolicyGradientObjective(TokenLogProbs):
    """The policy with a clipped policy-gradient loss as its `compute_loss`.

    Inputs: `token_ids`, `labels` `(B, L)` (labels `-100` off the
    completion), `advantages` `(B,)` or `(B, L)`, and optionally
    `old_log_probs` (else the current ones, detached: one update per
    sample) and `reference_log_probs` `(B, L)` for the KL term. `call`
    returns the per-token log-probabilities `(B, L)`.

    Args:
        policy: a `kerasllm.models.GPT`.
        clip_range: PPO's epsilon. Defaults to `0.2`.
        kl_coefficient: weight of the KL to the reference. Defaults to `0.0`.
        kl_estimator: `"k1"`, `"k2"` or `"k3"`. Defaults to `"k3"`.
        temperature: the rollouts' sampling temperature (`TokenLogProbs`).
            Defaults to `1.0`.
    """

    def __init__(self, policy, clip_range=0.2, kl_coefficient=0.0, kl_estimator="k3", temperature=1.0, **kwargs):
        super().__init__(policy, temperature, **kwargs)
        self.clip_range = clip_range
        self.kl_coefficient = kl_coefficient
        self.kl_estimator = kl_estimator
        self.trackers = [keras.metrics.Mean(name=name) for name in TRAIN_METRICS]

    @property
    def metrics(self):
        return list(self.trackers)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        mask = ops.cast(x["labels"] >= 0, "float32")
        old = x["old_log_probs"] if "old_log_probs" in x else ops.stop_gradient(y_pred)
        loss, stats = clipped_policy_loss(y_pred, old, x["advantages"], mask, self.clip_range)
        kl = ops.zeros(())
        if "reference_log_probs" in x:
            kl = masked_mean(kl_estimate(y_pred, x["reference_log_probs"], self.kl_estimator), mask)
            loss = loss + self.kl_coefficient * kl
        values = (loss, stats["clip_fraction"], stats["approx_kl"], stats["ratio"], kl)
        for tracker, value in zip(self.trackers, values):
            tracker.update_state(value)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()


class GRPOStepper(RolloutStepper):
    """One GRPO step at a time: sample, score, advantages, update.

    Usable alone (the benchmark times `step`), and what `grpo` runs.

    Args:
        policy: the `GPT` being trained (compiled into an objective here).
        config: a `GRPOConfig`.
        reward_fn: `(records, texts, stopped) -> rewards (N,)`.
        reference: a frozen `GPT` for the KL term (used when
            `kl_coefficient > 0`). Defaults to `None`.
        end_token_id: the id that ends a completion; `None` always samples
            `max_new_tokens`.
    """

    def __init__(self, policy, config, reward_fn, reference=None, end_token_id=None, optimizer=None):
        objective = PolicyGradientObjective(
            policy, config.clip_range, config.kl_coefficient, config.kl_estimator, config.temperature
        )
        if config.kl_coefficient <= 0:
            reference = None
        super().__init__(policy, config, reward_fn, objective, reference, end_token_id, optimizer)

    def step(self, records, prompt_ids, seed):
        """One step over `records` (with their prompt ids); returns a dict of metrics."""
        config, group = self.config, self.config.group_size
        started = time.perf_counter()
        repeated = [ids for ids in prompt_ids for _ in range(group)]
        sampled = self.sample(repeated, seed)
        sample_seconds = time.perf_counter() - started
        group_records = [r for r in records for _ in range(group)]
        rewards = np.asarray(self.reward_fn(group_records, sampled.texts, sampled.stopped), "float32")
        advantages = ops.convert_to_numpy(
            group_advantages(rewards, group, scale=config.scale_rewards)
        )
        arrays = {"token_ids": sampled.token_ids, "labels": sampled.labels, "advantages": advantages}
        if self.reference is not None:
            arrays["reference_log_probs"] = predict_log_probs(self.reference, arrays, len(repeated))
        if config.updates_per_step > 1:
            arrays["old_log_probs"] = predict_log_probs(self.objective, arrays, len(repeated))
        totals = {}
        for _ in range(config.updates_per_step):
            metrics = self.objective.train_on_batch(arrays, return_dict=True)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + float(value) / config.updates_per_step
        grouped = rewards.reshape(-1, group)
        return {
            **totals,
            "reward": float(rewards.mean()),
            "reward_std_in_group": float(grouped.std(axis=1).mean()),
            # Groups whose samples score alike have zero advantage: no signal.
            "groups_with_signal": float((grouped.max(axis=1) > grouped.min(axis=1)).mean()),
            "response_length": float(sampled.lengths.mean()),
            "stopped": float(sampled.stopped.mean()),
            "sample_seconds": sample_seconds,
            "step_seconds": time.perf_counter() - started,
        }


def grpo(config, output, *, overrides=None, resume=False, overwrite=False, verbose=1):
    """Trains a model directory with GRPO; writes `OUTPUT/model`.

    Args:
        config: a `GRPOConfig`, a dict, a YAML path, or `None` with `resume`.
        output: the run directory.
        overrides, resume, overwrite: as in `dpo`.
        verbose: print a line per logged step. Defaults to `1`.

    Returns:
        A dict: `output`, `model_dir`, `step`, `seconds`, `eval_reward_before`
        / `eval_reward_after` (mean reward of greedy answers to held-out
        prompts, when there are some) and `last` (the last logged metrics).
    """
    return execute(
        "grpo", GRPOConfig, train_online(GRPOStepper, "grpo", verbose=verbose),
        config, output, overrides=overrides, resume=resume, overwrite=overwrite,
    )
