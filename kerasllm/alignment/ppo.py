"""`ppo`: proximal policy optimization with a value head and a frozen reference.

    kerasllm ppo --config recipes/configs/alignment/ppo.yaml --output runs/ppo

One iteration (TRL's classic PPO, Ziegler et al., 2019):

1. Rollout: sample a completion per prompt with the compiled generator
   (stopping at the end token, `<|im_end|>` for chat prompts).
2. Score: the reward model and/or Python functions give each completion a
   score; the per-token reward is `−kl_coefficient · KL_t` at every
   completion token plus the score at the last one (`KL_t` from the k1 or
   k3 estimator against the frozen reference).
3. GAE (gamma, lambda) over the rollout's values gives advantages
   (whitened) and returns.
4. `ppo_epochs` passes over shuffled minibatches of the rollout, each
   minimizing the clipped surrogate plus `vf_coefficient` times the clipped
   value loss.

With `kl_target`, the coefficient adapts after each iteration so the KL
tracks the target. The KL logged is the k1 sum per completion; it should
stay small and positive: a negative KL means the samples did not come from
the policy (wrong temperature, a stale reference, a padding mismatch).
"""

import time

import keras
import numpy as np
from keras import ops

from kerasllm.alignment.config import PPOConfig
from kerasllm.alignment.heads import PolicyWithValue
from kerasllm.alignment.losses import (
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    generalized_advantages,
    kl_estimate,
    masked_mean,
    token_log_probs,
    whiten,
)
from kerasllm.alignment.online import RolloutStepper, at_temperature, predict_log_probs, train_online
from kerasllm.alignment.run import execute

TRAIN_METRICS = ("loss", "policy_loss", "value_loss", "clip_fraction", "value_clip_fraction",
                 "approx_kl", "ratio", "entropy")  # fmt: skip


class PPOObjective(keras.Model):
    """Policy-with-value and PPO's loss as `compute_loss`.

    `critic`: a `RewardModel` to train as a separate value network (see
    `PolicyWithValue`); `None` puts a value head on the policy.

    Inputs: `token_ids`, `labels` `(B, L)`, and from the rollout
    `old_log_probs`, `old_values`, `advantages`, `returns` `(B, L)`. `call`
    returns a dict of per-token `log_probs`, `values` and `entropy`, of
    the policy at the rollouts' sampling `temperature`.
    """

    def __init__(self, policy, clip_range=0.2, value_clip_range=0.2, vf_coefficient=0.1, temperature=1.0,
                 critic=None, **kwargs):
        super().__init__(**kwargs)
        self.actor_critic = PolicyWithValue(policy, critic)
        self.temperature = float(temperature)
        self.clip_range = clip_range
        self.value_clip_range = value_clip_range
        self.vf_coefficient = vf_coefficient
        self.trackers = [keras.metrics.Mean(name=name) for name in TRAIN_METRICS]
        self.built = True  # the actor-critic is built: a checkpoint loads before the first call

    @property
    def metrics(self):
        return list(self.trackers)

    def call(self, inputs, training=False):
        labels = inputs["labels"]
        mask = labels >= 0
        logits, values = self.actor_critic(inputs["token_ids"], training=training)
        logits = at_temperature(logits, self.temperature)  # the rollouts' distribution
        return {
            "log_probs": token_log_probs(logits, labels, mask),  # (B, L)
            "values": values,  # (B, L)
            "entropy": ops.stop_gradient(entropy_from_logits(logits)),  # (B, L)
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        mask = ops.cast(x["labels"] >= 0, "float32")
        policy_loss, stats = clipped_policy_loss(
            y_pred["log_probs"], x["old_log_probs"], x["advantages"], mask, self.clip_range
        )
        value_loss, value_clip = clipped_value_loss(
            y_pred["values"], x["old_values"], x["returns"], mask, self.value_clip_range
        )
        loss = policy_loss + self.vf_coefficient * value_loss
        values = (
            loss, policy_loss, value_loss, stats["clip_fraction"], value_clip,
            stats["approx_kl"], stats["ratio"], masked_mean(y_pred["entropy"], mask),
        )  # fmt: skip
        for tracker, value in zip(self.trackers, values):
            tracker.update_state(value)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()


class AdaptiveKLController:
    """Ziegler et al.'s controller: `β ← β (1 + clip(KL / target − 1, ±0.2) · n / horizon)`."""

    def __init__(self, coefficient, target=None, horizon=10000):
        self.value, self.target, self.horizon = coefficient, target, horizon

    def update(self, kl, n_samples):
        if self.target is not None:
            error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
            self.value *= 1.0 + error * n_samples / self.horizon


class PPOStepper(RolloutStepper):
    """One PPO iteration at a time: rollout, score, GAE, several epochs of updates.

    Args:
        policy: the `GPT` being trained.
        config: a `PPOConfig`.
        reward_fn: `(records, texts, stopped) -> scores (N,)`.
        reference: the frozen `GPT` the KL is measured against.
        end_token_id: the id that ends a completion (`None`: never stop).
    """

    def __init__(self, policy, config, reward_fn, reference, end_token_id=None, optimizer=None):
        objective = PPOObjective(
            policy, config.clip_range, config.value_clip_range, config.vf_coefficient, config.temperature,
            critic=load_value_model(config, policy),
        )
        super().__init__(policy, config, reward_fn, objective, reference, end_token_id, optimizer)
        self.kl = AdaptiveKLController(config.kl_coefficient, config.kl_target, config.kl_horizon)

    def state(self):
        # The adaptive coefficient has moved since the start: a resume continues from it.
        return {"kl_coefficient": self.kl.value}

    def load_state(self, state):
        if "kl_coefficient" in state:
            self.kl.value = float(state["kl_coefficient"])

    def step(self, records, prompt_ids, seed):
        config = self.config
        started = time.perf_counter()
        sampled = self.sample(prompt_ids, seed)
        sample_seconds = time.perf_counter() - started
        n = len(prompt_ids)
        inputs = {"token_ids": sampled.token_ids, "labels": sampled.labels}
        out = self.objective.predict(inputs, batch_size=n, verbose=0)
        old_log_probs = np.asarray(out["log_probs"], "float32")
        old_values = np.asarray(out["values"], "float32")
        reference = predict_log_probs(self.reference, inputs, n)
        mask = sampled.mask
        scores = np.asarray(self.reward_fn(records, sampled.texts, sampled.stopped), "float32")

        # Per-token reward: the KL penalty everywhere, the score at the last token.
        kl = ops.convert_to_numpy(kl_estimate(old_log_probs, reference, config.kl_estimator)) * mask
        rewards = -self.kl.value * kl
        last = np.maximum(mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1), 0)
        rewards[np.arange(n), last] += scores
        advantages, returns = generalized_advantages(rewards, old_values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = whiten(advantages, mask)
        arrays = {
            **inputs,
            "old_log_probs": old_log_probs,
            "old_values": old_values,
            "advantages": ops.convert_to_numpy(advantages),
            "returns": ops.convert_to_numpy(returns),
        }
        minibatch = config.minibatch_size or n
        rng = np.random.default_rng(seed)
        totals, count = {}, 0
        for _ in range(config.ppo_epochs):
            order = rng.permutation(n)
            for start in range(0, n, minibatch):
                index = order[start : start + minibatch]
                metrics = self.objective.train_on_batch(
                    {k: v[index] for k, v in arrays.items()}, return_dict=True
                )
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
        k1 = ((old_log_probs - reference) * mask).sum(axis=1)  # summed k1 per completion
        coefficient = self.kl.value
        self.kl.update(float(k1.mean()), n)
        return {
            **{k: v / count for k, v in totals.items()},
            "reward": float(scores.mean()),
            "kl": float(k1.mean()),
            "kl_coefficient": coefficient,
            "response_length": float(sampled.lengths.mean()),
            "stopped": float(sampled.stopped.mean()),
            "sample_seconds": sample_seconds,
            "step_seconds": time.perf_counter() - started,
        }


def load_value_model(config, policy):
    """The separate value network `value_model` asks for (a `RewardModel`), or `None`."""
    if config.value_model is None:
        return None
    from kerasllm.alignment.reward import load_reward_model

    path = config.reward_model if config.value_model == "reward_model" else config.value_model
    critic = load_reward_model(path)
    if critic.tokenizer.fingerprint != policy.tokenizer.fingerprint:
        raise ValueError(
            f"value_model {path} reads text with another tokenizer than the policy {config.base}: "
            "the value network must read the policy's token ids."
        )
    return critic


def ppo(config, output, *, overrides=None, resume=False, overwrite=False, verbose=1):
    """Trains a model directory with PPO; writes `OUTPUT/model` (the policy).

    Args and returns as `grpo`; `config` is a `PPOConfig` (or dict / YAML).
    The value head is kept in the checkpoints, not in the model directory.
    """
    return execute(
        "ppo", PPOConfig, train_online(PPOStepper, "ppo", verbose=verbose),
        config, output, overrides=overrides, resume=resume, overwrite=overwrite,
    )
