"""Alignment: reward models, DPO, GRPO and PPO on kerasllm models.

- `losses`: the losses and estimators (Bradley–Terry, DPO/IPO, PPO's clipped
  policy and value losses, k1/k2/k3 KL, GAE, GRPO's group advantages), pure
  `keras.ops`, for TensorFlow and JAX alike.
- `data`: preference pairs and prompts from JSONL.
- `dpo`, `reward`, `grpo`, `ppo`: the runs behind `kerasllm dpo`, `reward`,
  `grpo` and `ppo`, each writing a model directory.

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

__all__ = [
    "ConfigError",
    "DPOConfig",
    "DPOObjective",
    "GRPOConfig",
    "PPOConfig",
    "PreferenceDataError",
    "PreferencePair",
    "RewardConfig",
    "dpo",
    "encode_pairs",
    "load_preferences",
    "load_prompts",
]
