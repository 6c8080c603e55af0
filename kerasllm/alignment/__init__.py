"""Alignment: reward models, DPO, GRPO and PPO on kerasllm models.

- `losses`: the losses and estimators (Bradley–Terry, DPO/IPO, PPO's clipped
  policy and value losses, k1/k2/k3 KL, GAE, GRPO's group advantages), pure
  `keras.ops`, for TensorFlow and JAX alike.
- `data`: preference pairs and prompts from JSONL.
- `dpo`, `reward`, `grpo`, `ppo`: the runs behind `kerasllm dpo`, `reward`,
  `grpo` and `ppo`, each writing a model directory.
- `run`: what every run shares (the run directory, the `fit` loop of the
  pair methods, logging, LoRA through fine-tuning's adapters); `online`:
  what the sampling methods share (prompts, rewards, rollouts, the loop);
  `rollout`: sampling and scoring; `sampled_pairs`: preference pairs from
  a model's own answers, judged by a program.

See docs/alignment.md.
"""

from kerasllm.alignment.config import ConfigError, DPOConfig, GRPOConfig, PPOConfig, RewardConfig
from kerasllm.alignment.data import (
    PreferenceDataError,
    PreferencePair,
    encode_pairs,
    load_preferences,
    load_prompts,
)
from kerasllm.alignment.dpo import DPOObjective, dpo
from kerasllm.alignment.grpo import GRPOStepper, PolicyGradientObjective, grpo
from kerasllm.alignment.heads import PolicyWithValue, RewardModel
from kerasllm.alignment.ppo import PPOObjective, PPOStepper, ppo
from kerasllm.alignment.reward import RewardObjective, load_reward_model, reward
from kerasllm.alignment.sampled_pairs import sample_preferences

__all__ = [
    "ConfigError",
    "DPOConfig",
    "DPOObjective",
    "GRPOConfig",
    "GRPOStepper",
    "PPOConfig",
    "PPOObjective",
    "PPOStepper",
    "PolicyGradientObjective",
    "PolicyWithValue",
    "PreferenceDataError",
    "PreferencePair",
    "RewardConfig",
    "RewardModel",
    "RewardObjective",
    "dpo",
    "encode_pairs",
    "grpo",
    "load_preferences",
    "load_prompts",
    "load_reward_model",
    "ppo",
    "reward",
    "sample_preferences",
]
