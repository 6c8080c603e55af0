"""The training basics: masked LM loss, AdamW's decay rule, the schedule."""

import keras
import numpy as np
import pytest
from keras import ops

from kerasllm.training import (
    AdamW,
    LanguageModelLoss,
    create_optimizer,
    masked_sparse_categorical_crossentropy,
    warmup_cosine_schedule,
)


def reference_loss(labels, logits):
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = [-log_probs[i, j, labels[i, j]] for i, j in zip(*np.nonzero(labels >= 0))]
    return float(np.mean(picked))


LABELS = np.array([[1, 2, -100, 3], [-100, -100, 0, 4]])
LOGITS = np.random.default_rng(0).normal(size=(2, 4, 5)).astype("float32")


def test_loss_ignores_masked_positions_and_averages_over_the_rest():
    expected = reference_loss(LABELS, LOGITS)
    assert float(LanguageModelLoss()(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-5)
    assert float(masked_sparse_categorical_crossentropy(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-5)


def gradient(fn, x):
    """d fn(x) / dx with the active backend's autodiff."""
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.jit(jax.grad(fn))(x)), jax.grad(fn)(x).dtype
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(x)
    grad = tape.gradient(value, x)
    return grad.numpy(), grad.dtype


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loss_gradient_is_softmax_minus_one_hot_over_valid_positions(dtype):
    # The gradient is written by hand (losses.token_cross_entropy); check it
    # against the closed form, in the logits' own dtype.
    logits = ops.cast(LOGITS * 4.0, dtype)
    grad, grad_dtype = gradient(lambda x: LanguageModelLoss()(LABELS, x), logits)
    x = np.asarray(ops.convert_to_numpy(ops.cast(logits, "float32")))
    probs = np.exp(x - x.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    valid = LABELS >= 0
    one_hot = np.eye(x.shape[-1])[np.where(valid, LABELS, 0)]
    expected = (probs - one_hot) * valid[..., None] / valid.sum()
    assert keras.backend.standardize_dtype(grad_dtype) == dtype
    tolerance = 1e-6 if dtype == "float32" else 2e-3
    np.testing.assert_allclose(np.asarray(grad, "float32"), expected, atol=tolerance)
    assert np.all(np.asarray(grad, "float32")[~valid] == 0)


def test_loss_is_unchanged_by_logits_at_ignored_positions():
    changed = LOGITS.copy()
    changed[0, 2] += 100.0
    assert float(LanguageModelLoss()(LABELS, changed)) == pytest.approx(
        float(LanguageModelLoss()(LABELS, LOGITS)), rel=1e-6
    )


def test_loss_all_ignored_is_zero_not_nan():
    labels = np.full((2, 4), -100)
    assert float(LanguageModelLoss()(labels, LOGITS)) == 0.0


def test_loss_config_round_trip():
    loss = LanguageModelLoss(ignore_index=-1)
    assert LanguageModelLoss.from_config(loss.get_config()).ignore_index == -1


def test_adamw_decays_matrices_only():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.LayerNormalization()])
    optimizer = AdamW(learning_rate=0.0, weight_decay=0.5)
    optimizer.build(model.trainable_variables)
    decayed = {v.path: optimizer._use_weight_decay(v) for v in model.trainable_variables}
    assert [p for p, d in decayed.items() if d] == [model.layers[0].kernel.path]


def test_adamw_weight_decay_moves_only_the_kernel():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, bias_initializer="ones")])
    optimizer = AdamW(learning_rate=0.1, weight_decay=0.5)
    kernel_before = ops.convert_to_numpy(model.layers[0].kernel.value).copy()
    zero_grads = [ops.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zero_grads, model.trainable_variables))
    assert np.allclose(ops.convert_to_numpy(model.layers[0].bias.value), 1.0)
    assert np.allclose(ops.convert_to_numpy(model.layers[0].kernel.value), kernel_before * (1 - 0.1 * 0.5))


def test_warmup_cosine_schedule_shape():
    schedule = warmup_cosine_schedule(1e-3, total_steps=100, warmup_steps=10, min_ratio=0.1)
    lr = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert lr[0] == pytest.approx(0.0, abs=1e-9)
    assert lr[1] == pytest.approx(5e-4, rel=1e-3)
    assert lr[2] == pytest.approx(1e-3, rel=1e-3)
    assert lr[2] > lr[3] > lr[4]
    assert lr[4] == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(ValueError, match="warmup_steps=200"):
        warmup_cosine_schedule(1e-3, total_steps=100, warmup_steps=200)


def test_create_optimizer_clips_global_norm():
    optimizer = create_optimizer(learning_rate=1e-3, total_steps=10, clipnorm=1.0)
    assert optimizer.global_clipnorm == 1.0
    restored = AdamW.from_config(optimizer.get_config())
    assert restored.decay_matrices_only and restored.global_clipnorm == 1.0
