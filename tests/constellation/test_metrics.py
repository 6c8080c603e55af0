"""RouteLLM's routing measures, checked on cases worked out by hand."""

import numpy as np
import pytest

from kerasllm.constellation.metrics import (
    apgr,
    call_performance_threshold,
    random_curve,
    routing_curve,
    routing_report,
)

# Four prompts: the strong member fixes prompts 0 and 1, neither gets 2,
# both get 3. Weak accuracy 1/4, strong 3/4.
WEAK = [0, 0, 0, 1]
STRONG = [1, 1, 0, 1]


def test_an_oracle_router_recovers_the_gap_with_the_fewest_calls():
    shares, accuracies = routing_curve([0.9, 0.8, 0.1, 0.0], WEAK, STRONG)
    np.testing.assert_allclose(shares, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(accuracies, [0.25, 0.5, 0.75, 0.75, 0.75])
    # PGR: 0, .5, 1, 1, 1 -> trapezoids of width .25: (0+.5)/2 + (.5+1)/2 + 1 + 1, times .25
    assert apgr(shares, accuracies, 0.25, 0.75) == pytest.approx(0.25 * (0.25 + 0.75 + 1 + 1))
    assert call_performance_threshold(shares, accuracies, 0.25, 0.75, 0.5) == 0.25
    assert call_performance_threshold(shares, accuracies, 0.25, 0.75, 0.8) == 0.5


def test_the_worst_router_sends_the_useless_prompts_first():
    shares, accuracies = routing_curve([0.0, 0.1, 0.8, 0.9], WEAK, STRONG)
    np.testing.assert_allclose(accuracies, [0.25, 0.25, 0.25, 0.5, 0.75])
    assert call_performance_threshold(shares, accuracies, 0.25, 0.75, 0.8) == 1.0


def test_random_routing_is_the_straight_line_with_apgr_one_half():
    shares = np.linspace(0, 1, 11)
    line = random_curve(WEAK, STRONG, shares)
    np.testing.assert_allclose(line, 0.25 + 0.5 * shares)
    assert apgr(shares, line, 0.25, 0.75) == pytest.approx(0.5)


def test_ties_and_bad_inputs():
    report = routing_report([1.0, 1.0, 1.0, 1.0], WEAK, STRONG)
    assert report["shares"][0] == 0 and report["accuracies"][-1] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="one length"):
        routing_curve([1.0], WEAK, STRONG)
    with pytest.raises(ValueError, match="strong member must beat the weak one"):
        apgr([0, 1], [0.5, 0.5], 0.5, 0.5)
