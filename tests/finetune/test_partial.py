"""Partial fine-tuning: the frozen weights stay bit-identical and get no optimizer state."""

import keras
import numpy as np
import pytest
from keras import ops

from helpers import random_ids
from kerasllm.finetune import freeze_for_partial, trainable_summary
from kerasllm.models import GPT

SHAPE = dict(
    vocab_size=258, context_length=32, num_layers=3, num_heads=2, hidden_dim=32,
    intermediate_dim=64,
)
IDS = random_ids((4, 12), 258, seed=3)


def values(model):
    return {v.path: ops.convert_to_numpy(v).copy() for v in model.weights}


def train(model, steps=3):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(IDS[:, :-1], IDS[:, 1:], epochs=steps, batch_size=4, verbose=0)


def changed(before, after):
    return {path for path in before if not np.array_equal(before[path], after[path])}


def assert_no_state_for_frozen(model):
    # Adam keeps two slots per trainable weight, nothing for the frozen ones.
    slots = [v for v in model.optimizer.variables if len(v.shape) > 0]
    assert len(slots) == 2 * len(model.trainable_weights)
    assert sorted(tuple(v.shape) for v in slots) == sorted(
        tuple(v.shape) for v in model.trainable_weights for _ in range(2)
    )


def test_untied_model_trains_top_blocks_norm_and_head():
    keras.utils.set_random_seed(0)
    model = GPT.from_preset("tiny", tie_embeddings=False, **SHAPE)
    paths = freeze_for_partial(model, trainable_blocks=1)
    assert paths == ["block_2", "final_norm", "lm_head"]
    before = values(model)
    train(model)
    moved = changed(before, values(model))
    frozen = [p for p in before if "/embedding/" in p or "/block_0/" in p or "/block_1/" in p]
    assert frozen and not moved & set(frozen)  # bit-identical
    assert moved == set(before) - set(frozen)  # everything else trained
    assert_no_state_for_frozen(model)


def test_tied_head_stays_frozen_unless_asked():
    keras.utils.set_random_seed(0)
    model = GPT.from_preset("tiny", **SHAPE)  # tie_embeddings=True
    assert freeze_for_partial(model, trainable_blocks=2) == ["block_1", "block_2", "final_norm"]
    before = values(model)
    train(model)
    moved = changed(before, values(model))
    assert not any("/embedding/" in p for p in moved)  # the shared table is the embedding
    assert any("/final_norm/" in p for p in moved)
    assert_no_state_for_frozen(model)

    keras.utils.set_random_seed(0)
    model = GPT.from_preset("tiny", **SHAPE)
    paths = freeze_for_partial(model, trainable_blocks=0, train_tied_head=True)
    assert paths == ["embedding/token_embedding", "final_norm"]
    before = values(model)
    train(model)
    moved = changed(before, values(model))
    assert moved == {
        p for p in before if "token_embedding" in p or "final_norm" in p
    }  # the position table and every block stay as they were


def test_bad_block_counts_and_full_count():
    model = GPT.from_preset("tiny", **SHAPE)
    with pytest.raises(ValueError, match=r"from 0 to 3.*Received: trainable_blocks=4"):
        freeze_for_partial(model, trainable_blocks=4)
    with pytest.raises(TypeError, match="Received: Dense"):
        freeze_for_partial(keras.layers.Dense(2), 1)
    freeze_for_partial(model, trainable_blocks=3)
    summary = trainable_summary(model)
    embeddings = 258 * 32 + 32 * 32
    assert summary["total"] - summary["trainable"] == embeddings


def test_token_rows_train_beside_the_top_blocks_and_merge_into_the_table():
    from kerasllm.finetune import merge_lora

    keras.utils.set_random_seed(0)
    model = GPT.from_preset("tiny", **SHAPE)
    freeze_for_partial(model, trainable_blocks=1, trainable_tokens=[7])
    before = values(model)
    ids = np.array(IDS)
    ids[:, ::2] = 7
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(ids[:, :-1], ids[:, 1:], epochs=3, batch_size=4, verbose=0)
    moved = changed(before, values(model))
    deltas = [p for p in moved if p.endswith("lora_embeddings_b")]
    assert len(deltas) == 1  # the row's delta trains; the stored tables and lower blocks do not
    assert not any("/embedding/" in p or "/block_0/" in p or "/block_1/" in p for p in set(moved) - set(deltas))
    assert_no_state_for_frozen(model)
    table = model.embedding.token_embedding
    stored = before[table._embeddings.path]
    logits = ops.convert_to_numpy(model(IDS))
    merge_lora(model)  # what a partial run does before saving
    merged = ops.convert_to_numpy(table.embeddings)
    assert np.flatnonzero(np.any(merged != stored, axis=1)).tolist() == [7]
    np.testing.assert_allclose(ops.convert_to_numpy(model(IDS)), logits, atol=1e-5)
    with pytest.raises(ValueError, match="train_tied_head trains every row"):
        freeze_for_partial(GPT.from_preset("tiny", **SHAPE), 1, train_tied_head=True,
                           trainable_tokens=[7])
