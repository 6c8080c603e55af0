"""Root-mean-square layer normalization: Keras's own layer, under its old name."""

import keras


@keras.saving.register_keras_serializable(package="kerasllm")
class RMSNormalization(keras.layers.RMSNormalization):
    """`keras.layers.RMSNormalization`, kept so that older `.keras` files load.

    `y = x / sqrt(mean(x**2) + epsilon) * scale` over the last axis (Zhang &
    Sennrich, 2019). New models use `keras.layers.RMSNormalization` directly
    (see `make_norm`); Keras computes the statistics in at least float32 and
    casts the result back, so the layer is stable under `mixed_float16` and
    `mixed_bfloat16`. Files saved before the switch name this class; it
    reads them, with the same weight (`scale`) and the same outputs.

    Args:
        epsilon: small constant added to the mean square. Defaults to `1e-6`.
        **kwargs: `axis` and the standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a float tensor `(..., hidden_dim)`.

    Returns:
        A tensor of the same shape and compute dtype.

    Example:
    ```python
    norm = kerasllm.layers.RMSNormalization()
    y = norm(keras.random.normal((2, 5, 16)))
    ```
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive. Received: epsilon={epsilon}")
        super().__init__(epsilon=epsilon, **kwargs)
