"""Evaluation maths: windows, unigram baseline, bits-per-byte."""

import math

import keras
import numpy as np
import pytest

from kerasllm.models import GPT, GPTConfig
from kerasllm.training import language_model_metrics, unigram_bits, unigram_counts
from kerasllm.training.evaluation import IGNORE_INDEX, total_nats, windows


def test_windows_cover_every_next_token_once():
    tokens = np.arange(10)
    inputs, targets = windows(tokens, context_length=4)
    assert inputs.shape == targets.shape == (3, 4)
    scored = targets[targets != IGNORE_INDEX]
    np.testing.assert_array_equal(scored, np.arange(1, 10))
    np.testing.assert_array_equal(inputs[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(targets[2], [9, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX])


def test_unigram_baseline_is_add_one_smoothed():
    counts = unigram_counts(np.array([0, 0, 0, 1]), vocabulary_size=3)
    np.testing.assert_array_equal(counts, [3, 1, 0])
    # p = (c + 1) / (4 + 3): p0 = 4/7, p2 = 1/7.
    assert unigram_bits([0, 2], counts) == pytest.approx(-math.log2(4 / 7) - math.log2(1 / 7))


def test_uniform_model_scores_log_vocab():
    """A model with all-zero logits costs ln(V) nats per token."""
    config = GPTConfig.from_preset(
        "tiny", vocab_size=64, context_length=8, num_layers=1, hidden_dim=16, num_heads=2
    )
    model = GPT(config)
    model.build((None, 8))
    for weight in model.weights:
        weight.assign(keras.ops.zeros(weight.shape, weight.dtype))
    tokens = np.random.default_rng(0).integers(0, 64, size=50)
    nats, count = total_nats(model, tokens, batch_size=3)
    assert count == 49
    assert nats / count == pytest.approx(math.log(64), rel=1e-5)
    metrics = language_model_metrics(model, tokens, num_bytes=98, unigram=np.ones(64))
    assert metrics["loss"] == pytest.approx(math.log(64), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(64, rel=1e-4)
    assert metrics["num_tokens"] == 49  # the tokens scored, not the 50 read
    # 49 tokens x 6 bits over 98 bytes; the uniform unigram scores the same.
    assert metrics["bits_per_byte"] == pytest.approx(49 * 6 / 98, rel=1e-5)
    assert metrics["unigram_bits_per_byte"] == pytest.approx(49 * 6 / 98, rel=1e-5)


def test_evaluate_reads_the_test_corpus_the_run_named(small_tokenizer, small_corpus, tmp_path):
    """`evaluate` scores the run's own test split: a named `test_corpus` file."""
    from kerasllm.tokenizers import load
    from kerasllm.training import evaluate

    held_out = tmp_path / "held_out.txt"
    text = "def held_out(value):\n    return value + 1\n"
    held_out.write_text(text, encoding="utf-8")
    config = GPTConfig.from_preset("tiny", vocab_size=320, context_length=16, num_layers=1, hidden_dim=16, num_heads=2)
    model = GPT(config)
    model.tokenizer = load(small_tokenizer)
    model.metadata = {
        "corpus": small_corpus,
        "pretrain_config": {"corpus": small_corpus, "test_corpus": str(held_out), "tokenizer": small_tokenizer},
    }
    metrics = evaluate(model, split="test")
    assert metrics["evaluated"] == {"corpus": str(held_out), "split": "all"}
    assert metrics["num_bytes"] == len(text.encode("utf-8"))
