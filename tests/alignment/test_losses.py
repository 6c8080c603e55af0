"""Each loss and estimator against an independent NumPy computation."""

import numpy as np
import pytest
from keras import ops

from kerasllm.alignment import losses
from tests.helpers import assert_close

RNG = np.random.default_rng(7)
B, T, V = 3, 6, 11


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def test_sequence_log_probs_matches_numpy_and_ignores_masked_labels():
    logits = RNG.normal(size=(B, T, V)).astype("float32")
    labels = RNG.integers(0, V, size=(B, T))
    mask = np.array([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    expected = (np.take_along_axis(log_softmax(logits), labels[..., None], -1)[..., 0] * mask).sum(-1)
    assert_close(losses.sequence_log_probs(logits, labels, mask), expected, atol=1e-5)
    # Labels under the mask may be anything (-100): the result is the same.
    noisy = np.where(mask == 1, labels, -100)
    assert_close(losses.sequence_log_probs(logits, noisy, mask), expected, atol=1e-5)
    averaged = losses.sequence_log_probs(logits, labels, mask, average=True)
    assert_close(averaged, expected / mask.sum(-1), atol=1e-5)


def test_padding_does_not_change_a_rows_log_prob():
    logits = RNG.normal(size=(1, 4, V)).astype("float32")
    labels = RNG.integers(0, V, size=(1, 4))
    mask = np.ones((1, 4))
    alone = losses.sequence_log_probs(logits, labels, mask)
    padded_logits = np.concatenate([logits, RNG.normal(size=(1, 3, V)).astype("float32")], 1)
    padded_labels = np.concatenate([labels, np.zeros((1, 3), int)], 1)
    padded_mask = np.concatenate([mask, np.zeros((1, 3))], 1)
    assert_close(losses.sequence_log_probs(padded_logits, padded_labels, padded_mask), alone, atol=1e-6)


def test_entropy():
    logits = RNG.normal(size=(B, V)).astype("float32")
    p = np.exp(log_softmax(logits))
    assert_close(losses.entropy_from_logits(logits), -(p * np.log(p)).sum(-1), atol=1e-5)


@pytest.mark.parametrize("margin", [None, np.array([0.5, 0.0, 1.0, 2.0])])
@pytest.mark.parametrize("center", [0.0, 0.01])
def test_bradley_terry(margin, center):
    chosen = np.array([1.0, -0.5, 2.0, 0.3])
    rejected = np.array([0.2, 0.5, -1.0, 0.3])
    diff = chosen - rejected - (0 if margin is None else margin)
    expected = -log_sigmoid(diff).mean() + center * ((chosen + rejected) ** 2).mean()
    got = losses.bradley_terry_loss(chosen, rejected, margin=margin, center_coefficient=center)
    assert_close(got, expected, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo(loss_type):
    pc, pr = np.array([-3.0, -10.0, -5.5]), np.array([-4.0, -9.0, -5.5])
    rc, rr = np.array([-3.5, -9.5, -6.0]), np.array([-3.9, -9.2, -5.0])
    beta = 0.1
    h = (pc - rc) - (pr - rr)
    expected = -log_sigmoid(beta * h) if loss_type == "sigmoid" else (h - 1 / (2 * beta)) ** 2
    got, chosen, rejected = losses.dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type)
    assert_close(got, expected, atol=1e-5)
    assert_close(chosen, beta * (pc - rc), atol=1e-6)
    assert_close(rejected, beta * (pr - rr), atol=1e-6)


def test_dpo_rejects_an_unknown_loss_type():
    with pytest.raises(ValueError, match="hinge"):
        losses.dpo_loss(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), loss_type="hinge")


def test_kl_estimators():
    lp = np.log(np.array([[0.2, 0.5, 0.9]]))
    ref = np.log(np.array([[0.3, 0.5, 0.6]]))
    r = ref - lp
    assert_close(losses.kl_estimate(lp, ref, "k1"), -r, atol=1e-6)
    assert_close(losses.kl_estimate(lp, ref, "k2"), 0.5 * r**2, atol=1e-6)
    k3 = losses.kl_estimate(lp, ref, "k3")
    assert_close(k3, np.exp(r) - 1 - r, atol=1e-6)
    assert (ops.convert_to_numpy(k3) >= 0).all()


def test_kl_estimators_average_to_the_true_kl():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    q = np.array([0.25, 0.25, 0.25, 0.25])
    true_kl = (p * np.log(p / q)).sum()
    samples = np.random.default_rng(0).choice(4, size=200_000, p=p)
    lp, ref = np.log(p[samples])[None], np.log(q[samples])[None]
    for kind in ("k1", "k3"):
        estimate = float(ops.mean(losses.kl_estimate(lp, ref, kind)))
        assert abs(estimate - true_kl) < 0.01, kind


def numpy_gae(rewards, values, mask, gamma, lam):
    out = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        last = 0.0
        for t in reversed(range(rewards.shape[1])):
            if not mask[b, t]:
                continue
            next_value = values[b, t + 1] if t + 1 < rewards.shape[1] and mask[b, t + 1] else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            last = delta + gamma * lam * last
            out[b, t] = last
    return out


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0)])
def test_gae(gamma, lam):
    rewards = RNG.normal(size=(B, T))
    values = RNG.normal(size=(B, T))
    mask = np.array([[0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0]], "float64")
    advantages, returns = losses.generalized_advantages(rewards, values, mask, gamma, lam)
    expected = numpy_gae(rewards, values, mask, gamma, lam)
    assert_close(advantages, expected, atol=1e-5)
    assert_close(returns, (expected + values) * mask, atol=1e-5)


def test_clipped_policy_loss():
    lp = RNG.normal(size=(B, T)) * 0.3 - 1
    old = lp + RNG.normal(size=(B, T)) * 0.3
    adv = RNG.normal(size=(B, T))
    mask = (RNG.random((B, T)) > 0.3).astype("float64")
    ratio = np.exp(lp - old)
    per_token = np.maximum(-adv * ratio, -adv * np.clip(ratio, 0.8, 1.2))
    loss, stats = losses.clipped_policy_loss(lp, old, adv, mask, clip_range=0.2)
    assert_close(loss, (per_token * mask).sum() / mask.sum(), atol=1e-5)
    clipped = (-adv * np.clip(ratio, 0.8, 1.2)) > (-adv * ratio)
    assert_close(stats["clip_fraction"], (clipped * mask).sum() / mask.sum(), atol=1e-6)
    assert_close(stats["approx_kl"], (0.5 * (lp - old) ** 2 * mask).sum() / mask.sum(), atol=1e-6)
    assert_close(stats["ratio"], (ratio * mask).sum() / mask.sum(), atol=1e-5)


def test_per_sequence_advantages_broadcast_over_tokens():
    lp = RNG.normal(size=(B, T))
    old = lp + 0.1
    adv = np.array([1.0, -2.0, 0.5])
    mask = np.ones((B, T))
    a, _ = losses.clipped_policy_loss(lp, old, adv, mask)
    b, _ = losses.clipped_policy_loss(lp, old, np.repeat(adv[:, None], T, 1), mask)
    assert_close(a, b, atol=1e-7)


def test_clipped_value_loss():
    values = RNG.normal(size=(B, T))
    old = values + RNG.normal(size=(B, T)) * 0.5
    returns = RNG.normal(size=(B, T))
    mask = (RNG.random((B, T)) > 0.3).astype("float64")
    clipped = old + np.clip(values - old, -0.2, 0.2)
    per_token = np.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    loss, fraction = losses.clipped_value_loss(values, old, returns, mask, clip_range=0.2)
    assert_close(loss, 0.5 * (per_token * mask).sum() / mask.sum(), atol=1e-5)
    expected_fraction = (((clipped - returns) ** 2 > (values - returns) ** 2) * mask).sum() / mask.sum()
    assert_close(fraction, expected_fraction, atol=1e-6)


def test_group_advantages():
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 2.0, 0.0, 1.0, 3.0])
    grouped = rewards.reshape(3, 4)
    expected = (grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, ddof=1, keepdims=True) + 1e-4)
    assert_close(losses.group_advantages(rewards, 4), expected.reshape(-1), atol=1e-5)
    unscaled = losses.group_advantages(rewards, 4, scale=False)
    assert_close(unscaled, (grouped - grouped.mean(1, keepdims=True)).reshape(-1), atol=1e-6)
    # A group whose completions all score the same teaches nothing.
    assert np.allclose(ops.convert_to_numpy(unscaled)[4:8], 0)


def test_group_size_one_is_refused():
    with pytest.raises(ValueError, match="group_size=1"):
        losses.group_advantages(np.zeros(4), 1)


def test_whiten():
    x = RNG.normal(size=(B, T)) * 3 + 2
    mask = (RNG.random((B, T)) > 0.3).astype("float64")
    sel = x[mask == 1]
    expected = (x - sel.mean()) / np.sqrt(sel.var() + 1e-8) * mask
    assert_close(losses.whiten(x, mask), expected, atol=1e-5)
