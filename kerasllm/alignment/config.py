"""Typed configs of the alignment runs: reward model, DPO, GRPO, PPO.

The dataclass fields are the schema of `recipes/configs/alignment/*.yaml`
and of `--set key=value`; unknown keys fail with the closest valid names,
wrong types and impossible values (beta <= 0, a group of one, no reward
source) with what was received. Defaults follow TRL where TRL has one.
"""

import dataclasses
import typing
from typing import Optional

from kerasllm.training.config import PRECISIONS, ConfigError, ConfigFile, _check_type

__all__ = ["ConfigError", "DPOConfig", "GRPOConfig", "PPOConfig", "RewardConfig"]


@dataclasses.dataclass(frozen=True)
class _Common(ConfigFile):
    """Keys every alignment run shares (the optimizer and run keys of pretraining)."""

    base: str = ""
    data: typing.Union[str, list] = ""
    max_length: int = 128
    batch_size: int = 8
    steps: int = 200
    learning_rate: float = 5e-5
    warmup_steps: int = 10
    min_lr_ratio: float = 1.0
    weight_decay: float = 0.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    clipnorm: Optional[float] = 1.0
    precision: str = "float32"
    lora: Optional[dict] = None
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    skip_bad_lines: bool = False
    seed: int = 0

    POSITIVE = ("max_length", "batch_size", "steps", "log_every", "checkpoint_every", "keep_checkpoints")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check_type(field.name, getattr(self, field.name), field.type)
        if not self.base:
            raise ConfigError(
                "base is required: the model directory to start from (an SFT model). "
                f"Received: base={self.base!r}"
            )
        for name in self.POSITIVE:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1. Received: {name}={value!r}")
        for name in ("learning_rate", "clipnorm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0. Received: {name}={value!r}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError(
                "warmup_steps and weight_decay must be >= 0. Received: "
                f"warmup_steps={self.warmup_steps}, weight_decay={self.weight_decay}"
            )
        if self.warmup_steps > self.steps:
            raise ConfigError(
                f"warmup_steps must not exceed steps. Received: warmup_steps="
                f"{self.warmup_steps}, steps={self.steps}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}. Received: {self.precision!r}")
        if self.lora is not None:
            unknown = set(self.lora) - {"rank", "alpha", "targets"}
            if unknown:
                raise ConfigError(
                    f"lora takes rank, alpha and targets. Received: {sorted(unknown)}"
                )
            rank = self.lora.get("rank", 8)
            if not isinstance(rank, int) or rank < 1:
                raise ConfigError(f"lora.rank must be an int >= 1. Received: lora.rank={rank!r}")
        self.check()

    def check(self):
        """Method-specific checks (subclasses)."""

def _check_fraction(config, name):
    value = getattr(config, name)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1). Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class RewardConfig(_Common):
    """A reward model: the base's backbone and a scalar head, trained on pairs.

    Keys beyond the shared ones (`base`, `data` (preference JSONL),
    optimizer and run keys):

    Args:
        center_coefficient: weight of the reward-centring term. Defaults to
            `0.0` (TRL's `center_rewards_coefficient`; `0.01` is typical).
        eval_fraction: share of the pairs held out for pairwise accuracy.
            Defaults to `0.1`.
        eval_data: preference JSONL to evaluate on instead. Defaults to
            `None`.
    """

    learning_rate: float = 1e-4
    center_coefficient: float = 0.0
    eval_fraction: float = 0.1
    eval_data: typing.Union[str, list, None] = None

    def check(self):
        if not self.data:
            raise ConfigError("data is required: preference JSONL path(s).")
        if self.center_coefficient < 0:
            raise ConfigError(
                f"center_coefficient must be >= 0. Received: {self.center_coefficient!r}"
            )
        _check_fraction(self, "eval_fraction")


@dataclasses.dataclass(frozen=True)
class DPOConfig(_Common):
    """Direct preference optimization on preference pairs.

    Args:
        beta: strength of the pull towards the reference. Defaults to `0.1`.
        loss_type: `"sigmoid"` (DPO) or `"ipo"`. Defaults to `"sigmoid"`.
        rpo_alpha: weight of the chosen completions' per-token negative
            log-likelihood added to the loss (RPO; TRL's `rpo_alpha`): keeps
            DPO from lowering the chosen answers' likelihood along with the
            rejected ones'. Defaults to `0.0` (plain DPO).
        eval_fraction: share of the pairs held out. Defaults to `0.1`.
        eval_data: preference JSONL to evaluate on instead.
    """

    beta: float = 0.1
    loss_type: str = "sigmoid"
    rpo_alpha: float = 0.0
    eval_fraction: float = 0.1
    eval_data: typing.Union[str, list, None] = None

    def check(self):
        from kerasllm.alignment.losses import DPO_LOSS_TYPES

        if not self.data:
            raise ConfigError("data is required: preference JSONL path(s).")
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0. Received: beta={self.beta!r}")
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ConfigError(
                f"loss_type must be one of {DPO_LOSS_TYPES}. Received: loss_type={self.loss_type!r}"
            )
        if not isinstance(self.rpo_alpha, (int, float)) or not self.rpo_alpha >= 0:
            raise ConfigError(f"rpo_alpha must be a number >= 0. Received: rpo_alpha={self.rpo_alpha!r}")
        _check_fraction(self, "eval_fraction")


@dataclasses.dataclass(frozen=True)
class _Online(_Common):
    """Keys of the methods that sample from the policy (GRPO, PPO)."""

    steps: int = 50  # optimizer steps = iterations here: one rollout each
    prompts_per_step: int = 8
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0
    clip_range: float = 0.2
    kl_coefficient: float = 0.0
    kl_estimator: str = "k3"
    reward_functions: list = dataclasses.field(default_factory=list)
    reward_model: Optional[str] = None
    eval_prompts: int = 64

    POSITIVE = _Common.POSITIVE + ("prompts_per_step", "max_new_tokens")

    def check(self):
        from kerasllm.alignment.losses import KL_ESTIMATORS

        if not self.data:
            raise ConfigError("data is required: prompt JSONL path(s), or 'tasks:add,reverse'.")
        if not self.reward_functions and not self.reward_model:
            raise ConfigError(
                "No reward source: set reward_functions (e.g. [tasks.verify] or "
                "['mymodule:score']) or reward_model (a reward model directory)."
            )
        if self.temperature <= 0:
            raise ConfigError(
                f"temperature must be > 0 (sampling). Received: temperature={self.temperature!r}"
            )
        if not 0 < self.clip_range < 1:
            raise ConfigError(f"clip_range must be in (0, 1). Received: {self.clip_range!r}")
        if self.kl_coefficient < 0:
            raise ConfigError(f"kl_coefficient must be >= 0. Received: {self.kl_coefficient!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(
                f"kl_estimator must be one of {KL_ESTIMATORS}. Received: {self.kl_estimator!r}"
            )


@dataclasses.dataclass(frozen=True)
class GRPOConfig(_Online):
    """Group relative policy optimization.

    Args:
        group_size: completions sampled per prompt (`>= 2`). Defaults to `8`.
        scale_rewards: divide the advantages by the group's std. Defaults
            to `True`.
        kl_coefficient: weight of the k3 KL to the reference (TRL: 0).
        updates_per_step: optimizer updates on each batch of samples (TRL's
            `num_iterations`); above 1 the ratio and its clipping matter.
            Defaults to `1`.
    """

    learning_rate: float = 1e-5
    group_size: int = 8
    scale_rewards: bool = True
    updates_per_step: int = 1

    def check(self):
        super().check()
        if self.group_size < 2:
            raise ConfigError(
                "group_size must be >= 2: GRPO compares completions of one prompt "
                f"with each other. Received: group_size={self.group_size}"
            )
        if self.updates_per_step < 1:
            raise ConfigError(f"updates_per_step must be >= 1. Received: {self.updates_per_step}")


@dataclasses.dataclass(frozen=True)
class PPOConfig(_Online):
    """Proximal policy optimization with a value head and a frozen reference.

    Defaults are TRL's classic PPO ones.

    Args:
        kl_coefficient: per-token KL penalty in the reward. Defaults to
            `0.05`.
        kl_estimator: `"k1"` or `"k3"` (or `"k2"`). Defaults to `"k1"`.
        kl_target: with a value, the coefficient adapts so the KL tracks
            it (Ziegler et al., 2019); `None` keeps it fixed. Defaults to
            `None`.
        kl_horizon: the adaptive controller's horizon in samples. Defaults
            to `10000`.
        vf_coefficient: weight of the value loss. Defaults to `0.1`.
        value_clip_range: clip of the value update. Defaults to `0.2`.
        gamma: discount. Defaults to `1.0`.
        lam: GAE lambda. Defaults to `0.95`.
        ppo_epochs: passes over each rollout. Defaults to `4`.
        minibatch_size: rows per update. Defaults to `prompts_per_step`.
        whiten_advantages: normalize advantages per rollout. Defaults to
            `True`.
        value_model: `None` puts the value head on the policy's own backbone
            (TRL's classic `AutoModelForCausalLMWithValueHead`). A reward
            model directory, or `"reward_model"` for the one that scores the
            rollouts, starts a separate value network from it (its backbone
            and head), as TRL's `PPOTrainer` does: the critic then knows what
            the reward model rewards from the first rollout, and the value
            loss never moves the policy's weights. Defaults to `None`.
    """

    learning_rate: float = 1e-5
    kl_coefficient: float = 0.05
    kl_estimator: str = "k1"
    kl_target: Optional[float] = None
    kl_horizon: int = 10000
    vf_coefficient: float = 0.1
    value_clip_range: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    ppo_epochs: int = 4
    minibatch_size: Optional[int] = None
    whiten_advantages: bool = True
    value_model: Optional[str] = None

    def check(self):
        super().check()
        if self.value_model == "reward_model" and not self.reward_model:
            raise ConfigError(
                'value_model "reward_model" starts the value network from the reward model, '
                "but reward_model is not set. Set reward_model, or value_model to a reward model directory."
            )
        if self.ppo_epochs < 1:
            raise ConfigError(f"ppo_epochs must be >= 1. Received: {self.ppo_epochs}")
        if self.minibatch_size is not None and (
            self.minibatch_size < 1 or self.prompts_per_step % self.minibatch_size
        ):
            raise ConfigError(
                "minibatch_size must divide prompts_per_step. Received: "
                f"minibatch_size={self.minibatch_size}, prompts_per_step={self.prompts_per_step}"
            )
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1]. Received: {getattr(self, name)!r}")
        if self.kl_target is not None and not self.kl_target > 0:
            raise ConfigError(f"kl_target must be > 0 or null. Received: {self.kl_target!r}")
