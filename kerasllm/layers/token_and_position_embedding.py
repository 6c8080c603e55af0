"""Token embedding plus an optional learned position embedding."""

import keras
from keras import ops

from kerasllm.layers.initializers import clone_initializer, gpt2_normal


@keras.saving.register_keras_serializable(package="kerasllm")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Looks up token vectors and adds learned absolute position vectors.

    With `use_position_embedding=False` only the token embedding is applied
    (for models that encode positions with `RotaryEmbedding` inside
    attention). The token table doubles as the output projection of a model
    with tied embeddings: `attend(hidden)` returns `hidden @ embeddings.T`.

    Args:
        vocabulary_size: number of token ids.
        sequence_length: the longest sequence the position table covers.
        embedding_dim: width of the vectors.
        use_position_embedding: add learned positions. Defaults to `True`.
        embeddings_initializer: initializer of both tables (each table
            draws from its own clone). Defaults to `RandomNormal(stddev=0.02)`
            (GPT-2).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        token_ids: int tensor `(batch, seq)`.
        positions: optional int positions `(batch, seq)`, e.g. shifted for
            left-padded prompts. Defaults to `start_index + arange(seq)`.
        start_index: position of the first token when `positions` is not
            given. Defaults to `0`.

    Returns:
        `(batch, seq, embedding_dim)` in the layer's compute dtype.

    Example:
    ```python
    embed = kerasllm.layers.TokenAndPositionEmbedding(
        vocabulary_size=1000, sequence_length=64, embedding_dim=32)
    x = embed(keras.ops.ones((2, 10), "int32"))  # (2, 10, 32)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        use_position_embedding=True,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("vocabulary_size", vocabulary_size),
            ("sequence_length", sequence_length),
            ("embedding_dim", embedding_dim),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{name} must be a positive int. Received: {name}={value!r}"
                )
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.use_position_embedding = use_position_embedding
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or gpt2_normal()
        )
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size,
            embedding_dim,
            embeddings_initializer=clone_initializer(self.embeddings_initializer),
            dtype=self.dtype_policy,
            name="token_embedding",
        )

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        if self.use_position_embedding:
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(self.sequence_length, self.embedding_dim),
                initializer=clone_initializer(self.embeddings_initializer),
            )

    def call(self, token_ids, positions=None, start_index=0):
        x = self.token_embedding(token_ids)  # (B, T, d)
        if not self.use_position_embedding:
            return x
        if positions is None:
            seq_len = ops.shape(token_ids)[1]
            positions = ops.arange(seq_len, dtype="int32") + ops.cast(
                start_index, "int32"
            )
            positions = positions[None, :]  # (1, T)
        table = ops.cast(self.position_embeddings, self.compute_dtype)
        return x + ops.take(table, ops.cast(positions, "int32"), axis=0)

    def attend(self, hidden):
        """Scores `hidden` `(..., d)` against every token vector: `(..., vocab)`."""
        table = ops.cast(self.token_embedding.embeddings, hidden.dtype)
        return ops.matmul(hidden, ops.transpose(table))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "embedding_dim": self.embedding_dim,
            "use_position_embedding": self.use_position_embedding,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
        }
