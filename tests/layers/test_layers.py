"""Every public layer through the shared checks, plus the maths each promises."""

import keras
import numpy as np
import pytest
from keras import ops

from helpers import assert_close, run_layer_checks
from kerasllm.layers import (
    CausalSelfAttention,
    FeedForward,
    RMSNormalization,
    RotaryEmbedding,
    TokenAndPositionEmbedding,
    TransformerBlock,
)

HIDDEN = np.random.default_rng(0).normal(size=(2, 8, 32)).astype("float32")
IDS = np.random.default_rng(0).integers(0, 50, size=(2, 8)).astype("int32")


@pytest.mark.parametrize(
    "layer_cls, kwargs, data, out_shape",
    [
        (TokenAndPositionEmbedding, dict(vocabulary_size=50, sequence_length=16, embedding_dim=32), IDS, (2, 8, 32)),
        (TokenAndPositionEmbedding, dict(vocabulary_size=50, sequence_length=16, embedding_dim=32, use_position_embedding=False), IDS, (2, 8, 32)),
        (RotaryEmbedding, dict(max_wavelength=500), HIDDEN.reshape(2, 8, 4, 8), None),
        (CausalSelfAttention, dict(num_heads=4), HIDDEN, None),
        (CausalSelfAttention, dict(num_heads=4, num_kv_heads=2, use_rotary_embedding=True, use_bias=False, dropout=0.1), HIDDEN, None),
        (FeedForward, dict(intermediate_dim=64), HIDDEN, None),
        (FeedForward, dict(intermediate_dim=64, activation="swiglu", use_bias=False), HIDDEN, None),
        (RMSNormalization, dict(epsilon=1e-5), HIDDEN, None),
        (TransformerBlock, dict(num_heads=4, intermediate_dim=64), HIDDEN, None),
        (TransformerBlock, dict(num_heads=4, intermediate_dim=64, num_kv_heads=1, norm="rmsnorm", activation="swiglu", use_rotary_embedding=True, dropout=0.1), HIDDEN, None),
    ],
    ids=lambda p: getattr(p, "__name__", None) if isinstance(p, type) else None,
)
def test_standard_layer_checks(layer_cls, kwargs, data, out_shape, tmp_path):
    run_layer_checks(layer_cls, kwargs, data, tmp_path, expected_output_shape=out_shape)


@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_cache_decode_matches_full_forward(rope, kv_heads):
    layer = CausalSelfAttention(num_heads=4, num_kv_heads=kv_heads, use_rotary_embedding=rope)
    full = layer(HIDDEN)  # (B, T, d)
    cache = ops.zeros((2, 2, kv_heads, 12, 8))  # (B, k/v, K, S, D)
    # Prefill three tokens, then decode one token at a time.
    out, cache = layer(HIDDEN[:, :3], cache=cache, cache_update_index=0)
    pieces = [out]
    for t in range(3, 8):
        out, cache = layer(HIDDEN[:, t : t + 1], cache=cache, cache_update_index=t)
        pieces.append(out)
    assert_close(ops.concatenate(pieces, axis=1), full, atol=1e-5)


def test_attention_is_causal():
    layer = CausalSelfAttention(num_heads=4, use_rotary_embedding=True)
    changed = HIDDEN.copy()
    changed[:, 5:] += 3.0
    assert_close(layer(changed)[:, :5], layer(HIDDEN)[:, :5], atol=1e-6)
    assert not np.allclose(ops.convert_to_numpy(layer(changed)[:, 5:]), ops.convert_to_numpy(layer(HIDDEN)[:, 5:]))


def test_padding_mask_hides_keys():
    layer = CausalSelfAttention(num_heads=4)
    mask = np.ones((2, 8), "int32")
    mask[:, 2] = 0  # token 2 is padding: later tokens must not see it
    changed = HIDDEN.copy()
    changed[:, 2] += 5.0
    a = layer(HIDDEN, padding_mask=mask)
    b = layer(changed, padding_mask=mask)
    assert_close(a[:, 3:], b[:, 3:], atol=1e-5)


def test_rope_depends_only_on_relative_position():
    rope = RotaryEmbedding()
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, 1, 1, 16)).astype("float32")
    k = rng.normal(size=(1, 1, 1, 16)).astype("float32")

    def score(pq, pk):
        rq = rope(q, start_index=pq)
        rk = rope(k, start_index=pk)
        return float(ops.sum(rq * rk))

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-4)


def test_rms_normalization_matches_formula_and_keeps_dtype():
    out = RMSNormalization(epsilon=1e-6)(HIDDEN)
    expected = HIDDEN / np.sqrt(np.mean(HIDDEN**2, axis=-1, keepdims=True) + 1e-6)
    assert_close(out, expected, atol=1e-5)
    bf16 = RMSNormalization(dtype="mixed_bfloat16")(HIDDEN)
    assert keras.backend.standardize_dtype(bf16.dtype) == "bfloat16"


def test_feed_forward_swiglu_formula():
    ffn = FeedForward(intermediate_dim=16, activation="swiglu", use_bias=False)
    out = ffn(HIDDEN)
    gate = HIDDEN @ ops.convert_to_numpy(ffn.gate.kernel)
    up = HIDDEN @ ops.convert_to_numpy(ffn.up.kernel)
    silu = gate / (1 + np.exp(-gate))
    assert_close(out, (silu * up) @ ops.convert_to_numpy(ffn.down.kernel), atol=1e-4)


def test_lora_applies_to_projections():
    layer = CausalSelfAttention(num_heads=4)
    layer(HIDDEN)
    before = ops.convert_to_numpy(layer(HIDDEN))
    layer.qkv.enable_lora(rank=2)
    layer.output_dense.enable_lora(rank=2)
    assert_close(layer(HIDDEN), before, atol=1e-6)  # LoRA B starts at zero
    trainable = {v.path.split("/")[-1] for v in layer.trainable_variables}
    assert {"lora_kernel_a", "lora_kernel_b"} <= trainable


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: CausalSelfAttention(num_heads=4, num_kv_heads=3), "num_kv_heads=3"),
        (lambda: CausalSelfAttention(num_heads=0), "num_heads=0"),
        (lambda: FeedForward(intermediate_dim=8, activation="tanh"), "activation='tanh'"),
        (lambda: TransformerBlock(num_heads=2, intermediate_dim=8, norm="batchnorm"), "norm='batchnorm'"),
        (lambda: TokenAndPositionEmbedding(0, 8, 8), "vocabulary_size=0"),
        (lambda: RMSNormalization(epsilon=0), "epsilon=0"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


def test_attention_rejects_indivisible_hidden_dim():
    with pytest.raises(ValueError, match="hidden_dim=30"):
        CausalSelfAttention(num_heads=4)(np.zeros((1, 2, 30), "float32"))


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_single_row_under_xla_decoding_matches_keras_dense(use_bias):
    """The decode-only form (row blocks, bias kept apart) gives Dense's values."""
    from kerasllm.generation.compile import compile_model_function
    from kerasllm.layers.dense import Dense
    from kerasllm.layers.xla_decoding import in_xla_decoding

    # 384 inputs: three blocks of 128 kernel rows.
    row = np.random.default_rng(2).normal(size=(1, 1, 384)).astype("float32")
    ours = Dense(24, use_bias=use_bias, bias_initializer="random_normal")
    ours.build(row.shape)
    reference = keras.layers.Dense(24, use_bias=use_bias)
    reference.build(row.shape)
    reference.set_weights(ours.get_weights())

    def seen_inside(x):
        assert in_xla_decoding()
        return ours(x)

    compiled = compile_model_function(ours, seen_inside)
    assert_close(compiled(ops.convert_to_tensor(row)), reference(row), atol=1e-5)
    assert not in_xla_decoding()  # the context ends with the trace
    batch = np.concatenate([row, row], axis=0)
    assert_close(ours(batch), reference(batch), atol=1e-6)


def test_cache_write_is_the_same_in_place_and_by_select():
    from kerasllm.layers.causal_self_attention import write_to_cache
    from kerasllm.layers.xla_decoding import xla_decoding

    rng = np.random.default_rng(1)
    cache = rng.normal(size=(2, 2, 3, 10, 4)).astype("float32")  # (B, 2, K, S, D)
    update = rng.normal(size=(2, 2, 3, 3, 4)).astype("float32")
    expected = cache.copy()
    expected[:, :, :, 6:9] = update
    assert_close(write_to_cache(cache, update, 6), expected)
    with xla_decoding():
        assert_close(write_to_cache(cache, update, 6), expected)
