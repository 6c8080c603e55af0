"""Scalar heads on a GPT: the reward model and PPO's policy-with-value.

Both read the backbone's final hidden states (after the final norm), which
`backbone_forward` computes with the GPT's own layers; positions are the
count of real tokens before each one, so a left-padded row computes what it
would alone.
"""

import keras
from keras import ops


def backbone_forward(gpt, token_ids, padding_mask=None, training=False, logits=True):
    """`(hidden, logits)`: `(B, T, d)` final hidden states and float32 `(B, T, V)`
    logits (`None` with `logits=False`, for the heads that read hidden states only)."""
    positions = None
    if padding_mask is not None:
        mask = ops.cast(padding_mask, "int32")
        positions = ops.maximum(ops.cumsum(mask, axis=1) - 1, 0)  # (B, T)
    x = gpt.embedding(token_ids, positions=positions)  # (B, T, d)
    x = gpt.embedding_dropout(x, training=training)
    for block in gpt.blocks:
        x = block(x, padding_mask=padding_mask, positions=positions, training=training)
    hidden = gpt.final_norm(x)  # (B, T, d)
    if not logits:
        return hidden, None
    if gpt.lm_head is None:
        logits = gpt.embedding.attend(hidden)
    else:
        logits = gpt.lm_head(hidden)
    return hidden, ops.cast(logits, "float32")


def last_token_index(padding_mask):
    """Index of each row's last real token `(B,)`, for left or right padding."""
    mask = ops.cast(padding_mask, "int32")
    steps = ops.arange(ops.shape(mask)[1], dtype="int32")[None, :]  # (1, T)
    return ops.max(ops.where(mask > 0, steps, -1), axis=1)  # (B,)


@keras.saving.register_keras_serializable(package="kerasllm")
class RewardModel(keras.Model):
    """A GPT backbone with a scalar head read at the last real token.

    Args:
        backbone: a `kerasllm.models.GPT` (usually the SFT model).
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: a dict with `"token_ids"` and `"padding_mask"` `(B, T)`
            (left or right padding).

    Returns:
        float32 rewards `(B,)`.

    Example:
    ```python
    rm = RewardModel(kerasllm.load("runs/sft/model"))
    rm.score(["2+3="], ["5"])
    ```
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = keras.layers.Dense(
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=backbone.dtype_policy,
            name="reward_head",
        )
        self.head.build((None, backbone.config.hidden_dim))

    def call(self, inputs, training=False):
        mask = inputs["padding_mask"]
        hidden, _ = backbone_forward(self.backbone, inputs["token_ids"], mask, training, logits=False)
        index = last_token_index(mask)  # (B,)
        last = ops.take_along_axis(hidden, index[:, None, None], axis=1)[:, 0]  # (B, d)
        return ops.cast(self.head(last)[:, 0], "float32")  # (B,)

    @property
    def tokenizer(self):
        """The backbone's tokenizer (attached by `kerasllm.load`)."""
        return self.backbone.tokenizer

    @tokenizer.setter
    def tokenizer(self, value):
        self.backbone.tokenizer = value

    @property
    def metadata(self):
        return self.__dict__.get("_kerasllm_metadata", {})

    @metadata.setter
    def metadata(self, value):
        self.__dict__["_kerasllm_metadata"] = dict(value or {})

    def score(self, prompts, completions, batch_size=32, *, end_token_id=None, ended=None):
        """Rewards of `prompt + completion` texts, as a NumPy array `(N,)`.

        Args:
            prompts, completions: lists of texts.
            batch_size: rows per forward pass. Defaults to `32`.
            end_token_id: appended to the completions that `ended` marks.
                Preference pairs train the model with each completion
                ending at the end token, so the reward is read there; a
                sampled completion that stopped (whose text leaves the end
                token out) must be scored the same way, not one token
                early. `"auto"`: `<|im_end|>` after a chat-rendered prompt
                (one holding `<|im_start|>`), else the tokenizer's end token.
            ended: bools `(N,)`, the completions that stopped at the end
                token. Defaults to every row when `end_token_id` is given.
        """
        import numpy as np

        from kerasllm.tokenizers.chat_template import IM_END, IM_START

        tokenizer = self.backbone.tokenizer
        context = self.backbone.config.context_length
        if ended is None:
            ended = [end_token_id is not None] * len(prompts)
        if not len(prompts) == len(completions) == len(ended):
            raise ValueError(
                f"prompts, completions and ended must have one entry per row. Received: "
                f"{len(prompts)} prompts, {len(completions)} completions, {len(ended)} ended."
            )
        if not (end_token_id is None or end_token_id == "auto" or isinstance(end_token_id, (int, np.integer))):
            raise ValueError(f'end_token_id must be None, a token id or "auto". Received: {end_token_id!r}')

        def end_for(prompt):
            if end_token_id != "auto":
                return end_token_id
            name, end = (IM_END, tokenizer.token_to_id(IM_END)) if IM_START in prompt else (
                "the end-of-text token", tokenizer.end_token_id)
            if end is None:
                raise ValueError(
                    f'end_token_id="auto" reads a chat prompt\'s answer at {name}, but the reward '
                    f"model's tokenizer has no such token. Pass end_token_id explicitly."
                )
            return end

        rows = []
        for p, c, stop in zip(prompts, completions, ended):
            end = end_for(p) if stop else None
            rows.append((list(tokenizer.encode(p + c)) + ([] if end is None else [int(end)]))[-context:])
        from kerasllm.generation import prompt_bucket

        scores = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            # Padded to a few shapes (power-of-two rows and lengths) and run
            # through Keras's compiled predict step: the program is reused
            # across calls instead of running every op eagerly per new shape
            # (PPO scores every rollout; a reward-scored route every request).
            height = min(batch_size, 1 << (len(chunk) - 1).bit_length())
            length = prompt_bucket(max(len(r) for r in chunk), context)
            ids = np.full((height, length), int(tokenizer.pad_token_id), "int32")
            mask = np.zeros((height, length), "int32")
            mask[len(chunk) :, 0] = 1  # filler rows, dropped below
            for i, row in enumerate(chunk):
                ids[i, : len(row)] = row
                mask[i, : len(row)] = 1
            out = self.predict_on_batch({"token_ids": ids, "padding_mask": mask})
            scores.append(np.asarray(out, "float32")[: len(chunk)])
        return np.concatenate(scores)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        return cls(backbone, **config)


class PolicyWithValue(keras.Model):
    """PPO's actor-critic: the policy's logits and a value per position.

    Without `critic`, the value head shares the policy's backbone (TRL's
    `AutoModelForCausalLMWithValueHead`). With `critic`, a `RewardModel`,
    the values are its scalar head read at every position of its own
    backbone: a separate value network, as TRL's `PPOTrainer` builds it from
    the reward model, so it starts out predicting what the reward model
    rewards and its gradients never reach the policy. Either is saved with
    checkpoints but not in the output model directory, which holds the
    policy alone.

    Call returns `(logits (B, T, V), values (B, T))`.
    """

    def __init__(self, policy, critic=None, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.critic = critic
        if critic is None:
            self.value_head = keras.layers.Dense(
                1, kernel_initializer="zeros", dtype=policy.dtype_policy, name="value_head"
            )
            self.value_head.build((None, None, policy.config.hidden_dim))
        else:
            critic.trainable = True
        self.built = True  # all state exists now: a checkpoint loads before the first call

    def call(self, token_ids, training=False):
        hidden, logits = backbone_forward(self.policy, token_ids, training=training)
        head = self.value_head if self.critic is None else self.critic.head
        if self.critic is not None:
            hidden, _ = backbone_forward(self.critic.backbone, token_ids, training=training, logits=False)
        values = ops.cast(head(hidden)[..., 0], "float32")  # (B, T)
        return logits, values
