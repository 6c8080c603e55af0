"""Routing quality as RouteLLM measures it.

A router between a weak and a strong member sends a share `s` of the
prompts to the strong one. Sweeping its threshold traces accuracy against
`s`, from the weak member's accuracy (`s = 0`) to the strong one's
(`s = 1`). The measures, both from RouteLLM (Ong et al., 2024):

- PGR(s), the performance gap recovered: `(acc(s) - weak) / (strong - weak)`.
- APGR, the area under PGR over `s` in [0, 1]; random routing gives 0.5,
  a perfect router more.
- CPT(x), the call-performance threshold: the smallest share of strong
  calls whose PGR reaches `x` (e.g. CPT(50%), CPT(80%)).

A router is given as one score per prompt, higher meaning "more in need of
the strong member"; the share `s` sends the top `round(s * n)` prompts up.
"""

import numpy as np


def routing_curve(scores, weak_correct, strong_correct, *, num_points=None):
    """Accuracy against the share of prompts sent to the strong member.

    Args:
        scores: one float per prompt; higher goes to the strong member first.
        weak_correct, strong_correct: 0/1 per prompt.
        num_points: shares to evaluate; defaults to every `k / n`.

    Returns:
        `(shares, accuracies)`, NumPy arrays from share 0 to 1.
    """
    scores = np.asarray(scores, dtype="float64")
    weak = np.asarray(weak_correct, dtype="float64")
    strong = np.asarray(strong_correct, dtype="float64")
    if not (scores.shape == weak.shape == strong.shape) or scores.ndim != 1 or scores.size == 0:
        raise ValueError(
            "scores, weak_correct and strong_correct must be 1-D of one length. "
            f"Received shapes {scores.shape}, {weak.shape}, {strong.shape}"
        )
    n = scores.size
    # A stable sort keeps the order deterministic for tied scores.
    order = np.argsort(-scores, kind="stable")
    gain = (strong - weak)[order]  # what sending each prompt up changes
    accuracy_at_k = weak.mean() + np.concatenate([[0.0], np.cumsum(gain)]) / n  # k = 0..n
    counts = np.arange(n + 1) if num_points is None else np.unique(np.round(np.linspace(0, n, num_points)).astype(int))
    return counts / n, accuracy_at_k[counts]


def random_curve(weak_correct, strong_correct, shares):
    """The expected accuracy of routing a random share `s` of prompts up."""
    weak = float(np.mean(weak_correct))
    strong = float(np.mean(strong_correct))
    return weak + np.asarray(shares, dtype="float64") * (strong - weak)


def performance_gap_recovered(accuracies, weak_accuracy, strong_accuracy):
    """PGR per point: 0 at the weak member's accuracy, 1 at the strong one's."""
    gap = strong_accuracy - weak_accuracy
    if gap <= 0:
        raise ValueError(
            "The strong member must beat the weak one for the gap to be recovered. "
            f"Received: weak accuracy {weak_accuracy:.4f}, strong accuracy {strong_accuracy:.4f}"
        )
    return (np.asarray(accuracies, dtype="float64") - weak_accuracy) / gap


def apgr(shares, accuracies, weak_accuracy, strong_accuracy):
    """Area under the PGR curve over shares 0..1 (trapezoid rule)."""
    pgr = performance_gap_recovered(accuracies, weak_accuracy, strong_accuracy)
    shares = np.asarray(shares, dtype="float64")
    return float(np.sum((shares[1:] - shares[:-1]) * (pgr[1:] + pgr[:-1]) / 2))


def call_performance_threshold(shares, accuracies, weak_accuracy, strong_accuracy, target):
    """The smallest share of strong calls whose PGR reaches `target` (or `None`)."""
    pgr = performance_gap_recovered(accuracies, weak_accuracy, strong_accuracy)
    reached = np.nonzero(pgr >= target - 1e-12)[0]
    return float(np.asarray(shares)[reached[0]]) if reached.size else None


def routing_report(scores, weak_correct, strong_correct, targets=(0.5, 0.8)):
    """APGR and CPT of one router, with the curve, as a JSON-ready dict."""
    shares, accuracies = routing_curve(scores, weak_correct, strong_correct)
    weak, strong = float(np.mean(weak_correct)), float(np.mean(strong_correct))
    return {
        "apgr": apgr(shares, accuracies, weak, strong),
        "cpt": {f"{round(t * 100)}%": call_performance_threshold(shares, accuracies, weak, strong, t) for t in targets},
        "shares": shares.tolist(),
        "accuracies": accuracies.tolist(),
    }
