"""`SequenceClassifier`: a GPT backbone's hidden states pooled into class logits."""

import keras
from keras import ops

POOLINGS = ("last", "mean")


@keras.saving.register_keras_serializable(package="kerasllm")
class SequenceClassifier(keras.Model):
    """Class logits for a whole sequence, read from a GPT's hidden states.

    backbone hidden states `(B, T, d)` (`GPT.hidden_states`, no LM head) →
    pooling → dropout → `Dense(num_classes)`. With `num_classes=1` it is a
    scalar head: the reward model of alignment, or a router's score.

    Pooling `"last"` reads the state at each row's last real token, the only
    one that has seen the whole text under causal attention (as TRL's reward
    models do); `"mean"` averages the real tokens. Real tokens are told by
    `padding_mask`, or else by `pad_token_id`; the padding may be on either
    side. Left-padded rows get positions counted from their first real
    token, so left and right padding of the same text give the same output.

    Args:
        backbone: a `kerasllm.models.GPT` (anything with
            `hidden_states(inputs, positions=, training=)` and a `config`
            with `hidden_dim`).
        num_classes: output width; `1` for a scalar score.
        pooling: `"last"` or `"mean"`. Defaults to `"last"`.
        pad_token_id: the id that marks padding when no `padding_mask` is
            passed. Defaults to `None` (every token is real).
        dropout: dropout on the pooled state. Defaults to `0.0`.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: int token ids `(batch, seq)`, or a dict with `"token_ids"`
            and an optional `"padding_mask"` `(batch, seq)` (1 for real
            tokens).
        training: whether dropout is active.

    Returns:
        float32 logits `(batch, num_classes)`.

    Example:
    ```python
    backbone = kerasllm.models.GPT.from_preset("tiny")
    classifier = kerasllm.finetune.SequenceClassifier(backbone, num_classes=3)
    ids = keras.ops.convert_to_tensor([[5, 6, 7, 0], [0, 0, 8, 9]], "int32")
    mask = keras.ops.convert_to_tensor([[1, 1, 1, 0], [0, 0, 1, 1]], "int32")
    logits = classifier({"token_ids": ids, "padding_mask": mask})  # (2, 3)
    classifier.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ```
    """

    def __init__(
        self, backbone, num_classes, pooling="last", pad_token_id=None, dropout=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(
                f"num_classes must be a positive int. Received: num_classes={num_classes!r}"
            )
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        if not hasattr(backbone, "hidden_states"):
            raise TypeError(
                "backbone must have a hidden_states method (a kerasllm GPT). "
                f"Received: {type(backbone).__name__}"
            )
        self.backbone = backbone
        self.num_classes = num_classes
        self.pooling = pooling
        self.pad_token_id = pad_token_id
        self.dropout = dropout
        self.pooled_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="pooled_dropout"
        )
        self.head = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=self.dtype_policy,
            name="head",
        )
        self.head.build((None, backbone.config.hidden_dim))
        self.built = True

    def _split(self, inputs):
        if isinstance(inputs, dict):
            token_ids = inputs["token_ids"]
            mask = inputs.get("padding_mask")
        else:
            token_ids, mask = inputs, None
        if mask is None:
            if self.pad_token_id is None:
                mask = ops.ones_like(token_ids)
            else:
                mask = ops.not_equal(token_ids, self.pad_token_id)
        return token_ids, ops.cast(mask, "int32")

    def pooled(self, inputs, training=None):
        """The pooled hidden state `(batch, hidden_dim)`, before the head."""
        token_ids, mask = self._split(inputs)
        # Position of each token counted over real tokens only: left padding
        # does not shift the text's positions (pads get position 0).
        positions = ops.maximum(ops.cumsum(mask, axis=1) - 1, 0)  # (B, T)
        hidden = self.backbone.hidden_states(
            {"token_ids": token_ids, "padding_mask": mask},
            positions=positions,
            training=training,
        )  # (B, T, d)
        real = ops.cast(mask, "bool")[:, :, None]  # (B, T, 1)
        if self.pooling == "last":
            slots = ops.arange(ops.shape(mask)[1], dtype="int32")[None, :]  # (1, T)
            last = ops.max(ops.where(ops.cast(mask, "bool"), slots, -1), axis=1)  # (B,)
            last = ops.maximum(last, 0)
            return ops.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0, :]
        # `where`, not a product: a pad row's state may be anything.
        total = ops.sum(ops.where(real, hidden, ops.zeros_like(hidden)), axis=1)  # (B, d)
        count = ops.maximum(ops.sum(ops.cast(mask, total.dtype), axis=1, keepdims=True), 1)
        return total / count

    def call(self, inputs, training=None):
        x = self.pooled_dropout(self.pooled(inputs, training=training), training=training)
        return ops.cast(self.head(x), "float32")  # (B, num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_classes": self.num_classes,
                "pooling": self.pooling,
                "pad_token_id": self.pad_token_id,
                "dropout": self.dropout,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
