"""The losses and estimators of preference learning and RL fine-tuning.

Pure `keras.ops` functions of tensors, so they run inside any backend's
compiled train step (TensorFlow, JAX). Each is the formula from its paper,
in the form TRL uses, checked against an independent NumPy computation in
tests/alignment/test_losses.py.

Conventions: `B` sequences, `T` positions. A `mask` is 1 on the positions
that count (completion tokens) and 0 elsewhere (prompt, padding); every
per-token mean here is taken over the mask only, so padding never dilutes
a loss and a padded batch gives what each row would give alone.
"""

from keras import ops

from kerasllm.training.losses import token_cross_entropy

DPO_LOSS_TYPES = ("sigmoid", "ipo")
KL_ESTIMATORS = ("k1", "k2", "k3")


def masked_mean(values, mask, axis=None):
    """Mean of `values` over the positions where `mask` is 1 (0 if none)."""
    mask = ops.cast(mask, values.dtype)
    total = ops.sum(values * mask, axis=axis)
    return total / ops.maximum(ops.sum(mask, axis=axis), 1.0)


# ---------------------------------------------------------------- log-probs


def token_log_probs(logits, labels, mask=None):
    """`log softmax(logits)[label]` at every position, `(B, T)`.

    Args:
        logits: `(B, T, V)` next-token logits (position `t` predicts
            `labels[:, t]`).
        labels: int `(B, T)`; any value (e.g. `-100`) where `mask` is 0.
        mask: optional `(B, T)`; positions where it is 0 give 0.

    Returns:
        float32 `(B, T)`.
    """
    labels = ops.cast(labels, "int32")
    if mask is None:
        return -token_cross_entropy(labels, logits)
    mask = ops.cast(mask, "bool")
    log_probs = -token_cross_entropy(ops.where(mask, labels, 0), logits)
    return ops.where(mask, log_probs, 0.0)


def sequence_log_probs(logits, labels, mask, average=False):
    """Summed (or averaged) log-probability of the masked tokens of each row.

    Args:
        logits: `(B, T, V)`.
        labels: int `(B, T)`.
        mask: `(B, T)`, 1 on the tokens whose probability counts.
        average: divide by the number of counted tokens (IPO's
            length-normalized log-probability). Defaults to `False`.

    Returns:
        float32 `(B,)`.
    """
    per_token = token_log_probs(logits, labels, mask)  # (B, T)
    total = ops.sum(per_token, axis=-1)  # (B,)
    if average:
        total = total / ops.maximum(ops.sum(ops.cast(mask, "float32"), axis=-1), 1.0)
    return total


def entropy_from_logits(logits):
    """Entropy of the softmax of `logits` `(..., V)`, in nats: `(...)`."""
    logits = ops.cast(logits, "float32")
    log_probs = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
    return -ops.sum(ops.exp(log_probs) * log_probs, axis=-1)


# ---------------------------------------------------------------- reward model


def bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None, center_coefficient=0.0):
    """Pairwise reward-model loss `-log σ(r_chosen − r_rejected − margin)`.

    With `center_coefficient > 0`, adds `c · mean((r_chosen + r_rejected)²)`,
    which keeps the rewards centred near zero (the reward is defined only up
    to a constant; Eisenstein et al., 2023).

    Args:
        chosen_rewards: `(B,)` scalar rewards of the preferred completions.
        rejected_rewards: `(B,)`.
        margin: optional `(B,)` how much better the chosen one should score.
        center_coefficient: weight of the centring term. Defaults to `0.0`.

    Returns:
        A float32 scalar.
    """
    chosen = ops.cast(chosen_rewards, "float32")
    rejected = ops.cast(rejected_rewards, "float32")
    difference = chosen - rejected
    if margin is not None:
        difference = difference - ops.cast(margin, "float32")
    loss = -ops.mean(ops.log_sigmoid(difference))
    if center_coefficient:
        loss = loss + center_coefficient * ops.mean(ops.square(chosen + rejected))
    return loss


# ---------------------------------------------------------------- DPO


def dpo_loss(
    policy_chosen,
    policy_rejected,
    reference_chosen,
    reference_rejected,
    beta=0.1,
    loss_type="sigmoid",
):
    """Direct preference optimization, per pair.

    With `h = (π_c − π_r) − (ref_c − ref_r)` (log-probabilities of the
    chosen and rejected completions under the policy and the reference):

    - `"sigmoid"` (Rafailov et al., 2023): `−log σ(β h)`.
    - `"ipo"` (Azar et al., 2023): `(h − 1 / (2β))²`; pass length-averaged
      log-probabilities, as TRL does.

    Args:
        policy_chosen, policy_rejected, reference_chosen,
        reference_rejected: `(B,)` sequence log-probabilities.
        beta: the strength of the implicit KL constraint. Defaults to `0.1`.
        loss_type: `"sigmoid"` or `"ipo"`. Defaults to `"sigmoid"`.

    Returns:
        `(losses, chosen_rewards, rejected_rewards)`, each `(B,)`: the
        implicit rewards are `β (π − ref)`.
    """
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}. Received: {loss_type!r}")
    chosen_ratio = ops.cast(policy_chosen, "float32") - ops.cast(reference_chosen, "float32")
    rejected_ratio = ops.cast(policy_rejected, "float32") - ops.cast(reference_rejected, "float32")
    h = chosen_ratio - rejected_ratio  # (B,)
    if loss_type == "sigmoid":
        losses = -ops.log_sigmoid(beta * h)
    else:
        losses = ops.square(h - 1.0 / (2.0 * beta))
    chosen_rewards = beta * ops.stop_gradient(chosen_ratio)
    rejected_rewards = beta * ops.stop_gradient(rejected_ratio)
    return losses, chosen_rewards, rejected_rewards


# ---------------------------------------------------------------- KL


def kl_estimate(log_probs, reference_log_probs, kind="k3"):
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π.

    With `r = log π_ref − log π` at the sampled token (Schulman, "Approximating
    KL divergence", 2020):

    - `"k1"`: `−r`, unbiased, high variance, can be negative per token.
    - `"k2"`: `r² / 2`, biased, low variance.
    - `"k3"`: `exp(r) − 1 − r`, unbiased and never negative.

    Args:
        log_probs: `(B, T)` log-probabilities under the policy.
        reference_log_probs: `(B, T)` under the reference.
        kind: `"k1"`, `"k2"` or `"k3"`. Defaults to `"k3"`.

    Returns:
        `(B, T)`.
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"kind must be one of {KL_ESTIMATORS}. Received: {kind!r}")
    log_ratio = ops.cast(reference_log_probs, "float32") - ops.cast(log_probs, "float32")
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * ops.square(log_ratio)
    return ops.exp(log_ratio) - 1.0 - log_ratio


# ---------------------------------------------------------------- PPO


def generalized_advantages(rewards, values, mask, gamma=1.0, lam=0.95):
    """Generalized advantage estimation (Schulman et al., 2016) over each row.

    `δ_t = r_t + γ V_{t+1} − V_t` (with `V` zero after the last masked
    position) and `A_t = Σ_{l ≥ t} (γλ)^{l−t} δ_l`, written as one product
    with the `(T, T)` matrix of discounts instead of a backwards loop, so it
    compiles to a single matmul. The masked positions must be contiguous in
    each row (a completion); elsewhere the advantage is 0.

    Args:
        rewards: `(B, T)` per-token rewards.
        values: `(B, T)` value estimates.
        mask: `(B, T)`.
        gamma: discount. Defaults to `1.0`.
        lam: GAE λ. Defaults to `0.95`.

    Returns:
        `(advantages, returns)`, each `(B, T)`; `returns = advantages + values`
        (the value head's targets), both 0 off the mask.
    """
    mask = ops.cast(mask, "float32")
    rewards = ops.cast(rewards, "float32") * mask
    values = ops.cast(values, "float32") * mask
    next_values = ops.pad(values[:, 1:], [[0, 0], [0, 1]])  # (B, T): V_{t+1}, 0 at the end
    deltas = (rewards + gamma * next_values - values) * mask  # (B, T)
    length = ops.shape(mask)[1]
    steps = ops.arange(length, dtype="float32")
    lag = steps[:, None] - steps[None, :]  # (T, T): l - t for row l, column t
    discount = ops.where(lag >= 0, ops.power(gamma * lam, ops.maximum(lag, 0.0)), 0.0)
    advantages = ops.matmul(deltas, discount) * mask  # (B, T): Σ_l δ_l (γλ)^{l-t}
    return advantages, (advantages + values) * mask


def whiten(values, mask, shift_mean=True, epsilon=1e-8):
    """`(x − mean) / std` over the masked positions (the mean kept unless asked)."""
    mean = masked_mean(values, mask)
    variance = masked_mean(ops.square(values - mean), mask)
    whitened = (values - mean) * ops.rsqrt(variance + epsilon)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * ops.cast(mask, values.dtype)


def clipped_policy_loss(log_probs, old_log_probs, advantages, mask, clip_range=0.2):
    """PPO's clipped surrogate (Schulman et al., 2017), a per-token mean.

    `ratio = exp(log π − log π_old)`; the loss is
    `mean(max(−A · ratio, −A · clip(ratio, 1 − ε, 1 + ε)))` over the mask.

    Args:
        log_probs: `(B, T)` under the policy being trained.
        old_log_probs: `(B, T)` under the policy that sampled the tokens.
        advantages: `(B, T)`, or `(B,)` for one advantage per sequence
            (GRPO), broadcast over its tokens.
        mask: `(B, T)`.
        clip_range: `ε`. Defaults to `0.2`.

    Returns:
        `(loss, stats)`: a scalar and a dict of scalars `clip_fraction` (share
        of tokens where the clipped term won), `approx_kl` (`mean((log
        ratio)²) / 2`) and `ratio` (its mean).
    """
    log_probs = ops.cast(log_probs, "float32")
    advantages = ops.cast(advantages, "float32")
    if len(advantages.shape) == 1:
        advantages = advantages[:, None]  # (B, 1)
    log_ratio = log_probs - ops.stop_gradient(ops.cast(old_log_probs, "float32"))
    ratio = ops.exp(log_ratio)  # (B, T)
    unclipped = -advantages * ratio
    clipped = -advantages * ops.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(ops.maximum(unclipped, clipped), mask)
    stats = {
        "clip_fraction": masked_mean(ops.cast(clipped > unclipped, "float32"), mask),
        "approx_kl": masked_mean(0.5 * ops.square(ops.stop_gradient(log_ratio)), mask),
        "ratio": masked_mean(ops.stop_gradient(ratio), mask),
    }
    return loss, stats


def clipped_value_loss(values, old_values, returns, mask, clip_range=0.2):
    """PPO's clipped value loss, a per-token mean.

    `0.5 · mean(max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²))`.

    Returns:
        `(loss, clip_fraction)`.
    """
    values = ops.cast(values, "float32")
    old_values = ops.cast(old_values, "float32")
    returns = ops.cast(returns, "float32")
    clipped_values = old_values + ops.clip(values - old_values, -clip_range, clip_range)
    loss_unclipped = ops.square(values - returns)
    loss_clipped = ops.square(clipped_values - returns)
    loss = 0.5 * masked_mean(ops.maximum(loss_unclipped, loss_clipped), mask)
    clip_fraction = masked_mean(ops.cast(loss_clipped > loss_unclipped, "float32"), mask)
    return loss, clip_fraction


# ---------------------------------------------------------------- GRPO


def group_advantages(rewards, group_size, scale=True, epsilon=1e-4):
    """GRPO's group-relative advantages (Shao et al., 2024).

    Rows come in consecutive groups of `group_size` completions of one
    prompt; each reward is compared with its group:
    `A = (r − mean_group) / (std_group + ε)`, `std` with Bessel's correction
    as in TRL. A group whose rewards are all equal gets advantage 0: it
    teaches nothing.

    Args:
        rewards: `(N · group_size,)`.
        group_size: completions per prompt (`>= 2`).
        scale: divide by the group's standard deviation. Defaults to `True`.
        epsilon: added to the standard deviation. Defaults to `1e-4`.

    Returns:
        `(N · group_size,)`.
    """
    if group_size < 2:
        raise ValueError(
            "group_size must be >= 2: one completion per prompt has nothing to "
            f"be compared with. Received: group_size={group_size}"
        )
    rewards = ops.cast(rewards, "float32")
    grouped = ops.reshape(rewards, (-1, group_size))  # (N, G)
    mean = ops.mean(grouped, axis=1, keepdims=True)  # (N, 1)
    advantages = grouped - mean
    if scale:
        variance = ops.sum(ops.square(advantages), axis=1, keepdims=True) / (group_size - 1)
        advantages = advantages / (ops.sqrt(variance) + epsilon)
    return ops.reshape(advantages, (-1,))
