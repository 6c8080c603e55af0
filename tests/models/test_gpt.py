"""GPT: config validation, parameter formula, cache parity, causality,
mixed precision, save/load, keras-hub interop."""

import json

import keras
import numpy as np
import pytest
from keras import ops

import kerasllm
import kerasllm.training
from helpers import assert_close, random_ids, run_in_fresh_process, run_layer_checks
from kerasllm.models import GPT, GPTConfig, load_keras_hub_gpt2_weights

SMALL = dict(vocab_size=97, context_length=32, num_layers=2, num_heads=4, hidden_dim=32)
VARIANTS = {
    "gpt2": {},
    "llama": dict(norm="rmsnorm", activation="swiglu", position="rope", num_kv_heads=2, use_bias=False, tie_embeddings=False),
    "mqa": dict(num_kv_heads=1, activation="relu", intermediate_dim=48),
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def model(request):
    return GPT(GPTConfig(**SMALL, **VARIANTS[request.param]))


@pytest.mark.parametrize("variant", ["gpt2", "llama"])
def test_standard_layer_checks(variant, tmp_path):
    """GPT through the checks every layer passes (tests/helpers.py)."""
    config = GPTConfig(**SMALL, **VARIANTS[variant])
    run_layer_checks(GPT, {"config": config.to_dict()}, random_ids((2, 8), 97), tmp_path,
                     expected_output_shape=(2, 8, 97))


def test_parameter_count_equals_formula(model):
    assert model.count_params() == model.config.num_parameters()


def test_presets_match_the_models_they_name():
    """Counts from outside this code: GPT-2 small has 124,439,808 parameters
    (Hugging Face's `gpt2`, 50257-token vocabulary); nanoGPT's PyTorch model
    at the baby shape on bytes has 10,844,160 (benchmarks/nanogpt_quality.py
    counted it with `p.numel()`)."""
    assert GPTConfig.from_preset("gpt2-124m", vocab_size=50257).num_parameters() == 124_439_808
    assert GPTConfig.from_preset("baby", vocab_size=256).num_parameters() == 10_844_160
    # The padded vocabulary adds only the extra embedding rows.
    assert GPTConfig.from_preset("gpt2-124m").num_parameters() == 124_439_808 + 47 * 768


def test_gpt2_124m_builds_with_expected_parameters():
    model = GPT.from_preset("gpt2-124m")
    assert model.count_params() == GPTConfig.from_preset("gpt2-124m").num_parameters()


def test_logits_shape_and_dtype(model):
    logits = model(random_ids((2, 10), 97))
    assert tuple(logits.shape) == (2, 10, 97)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


def test_cache_decode_matches_full_forward(model):
    ids = random_ids((2, 12), 97, seed=3)
    full = model(ids)
    cache = model.init_cache(2, 16)
    logits, cache = model.call_with_cache(ids[:, :5], cache, 0)
    steps = [logits]
    for t in range(5, 12):
        logits, cache = model.call_with_cache(ids[:, t : t + 1], cache, t)
        steps.append(logits)
    assert_close(ops.concatenate(steps, axis=1), full, atol=1e-5)


def test_left_padded_cache_matches_unpadded():
    model = GPT(GPTConfig(**SMALL, **VARIANTS["llama"]))
    ids = random_ids((1, 6), 97, seed=4)
    alone = model(ids)
    # The same prompt behind 3 pad slots: mask them, shift positions.
    padded = np.concatenate([np.zeros((1, 3), "int32"), ids], axis=1)
    mask = np.array([[0, 0, 0] + [1] * 6 + [1] * 3])  # cache has 12 slots
    positions = np.maximum(np.cumsum(mask[:, :9], axis=1) - 1, 0)
    logits, _ = model.call_with_cache(padded, model.init_cache(1, 12), 0, padding_mask=mask, positions=positions)
    assert_close(logits[:, 3:], alone, atol=1e-5)


def test_future_tokens_never_change_earlier_logits(model):
    ids = random_ids((2, 12), 97, seed=5)
    changed = ids.copy()
    changed[:, 7:] = (changed[:, 7:] + 1) % 97
    assert_close(model(changed)[:, :7], model(ids)[:, :7], atol=1e-6)


def test_sequence_longer_than_context_is_rejected():
    model = GPT(GPTConfig(**SMALL))
    with pytest.raises(ValueError, match="context_length=32"):
        model(random_ids((1, 33), 97))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(hidden_dim=30), "hidden_dim must be divisible by num_heads"),
        (dict(num_kv_heads=3), "num_kv_heads"),
        (dict(norm="batchnorm"), "norm='batchnorm'"),
        (dict(dropout=1.5), "dropout=1.5"),
        (dict(num_layers=0), "num_layers=0"),
        (dict(vocab_size="big"), "vocab_size='big'"),
        (dict(tie_embeddings="yes"), "tie_embeddings='yes'"),
        (dict(position="alibi"), "position='alibi'"),
    ],
)
def test_config_errors_name_the_value_and_rule(changes, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**SMALL, **changes})


def test_unknown_config_key_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'num_layers'"):
        GPTConfig.from_preset("tiny", num_layer=3)
    with pytest.raises(ValueError, match="Available presets"):
        GPTConfig.from_preset("huge")
    with pytest.raises(TypeError, match="Did you mean 'hidden_dim'"):
        GPTConfig(hiden_dim=64)


def numpy_weights(model):
    """`{path within the model: value}` (without the model's own name)."""
    return {v.path.split("/", 1)[1]: ops.convert_to_numpy(v) for v in model.weights}


def test_every_tensor_follows_gpt2_initialization():
    """N(0, 0.02) everywhere; the residual projections 0.02 / sqrt(2 L); biases
    zero, norm scales one (GPT-2 / nanoGPT)."""
    model = GPT.from_preset("baby", num_layers=4, tie_embeddings=False)
    residual = 0.02 / np.sqrt(2 * 4)
    for path, value in numpy_weights(model).items():
        name = path.split("/")[-1]
        if name in ("bias", "beta"):
            assert not value.any(), path
        elif name == "gamma":
            np.testing.assert_array_equal(value, 1.0, err_msg=path)
        else:
            is_residual = path.endswith(("attention/output/kernel", "feed_forward/down/kernel"))
            expected = residual if is_residual else 0.02
            assert float(np.mean(value)) == pytest.approx(0.0, abs=expected / 20), path
            assert float(np.std(value)) == pytest.approx(expected, rel=0.03), path


def test_every_weight_starts_from_its_own_values():
    """One initializer shared by every sublayer made all blocks identical, the
    SwiGLU gate equal to its up projection, and the position table equal to
    the first rows of the token table."""
    model = GPT.from_preset("baby", num_layers=2, activation="swiglu", tie_embeddings=False)
    first, second = model.blocks
    for get in (
        lambda b: b.attention.qkv.kernel,
        lambda b: b.attention.output_dense.kernel,
        lambda b: b.feed_forward.up.kernel,
        lambda b: b.feed_forward.gate.kernel,
        lambda b: b.feed_forward.down.kernel,
    ):
        assert not np.allclose(ops.convert_to_numpy(get(first)), ops.convert_to_numpy(get(second)))
    ffn = first.feed_forward
    assert not np.allclose(ops.convert_to_numpy(ffn.gate.kernel), ops.convert_to_numpy(ffn.up.kernel))
    positions = ops.convert_to_numpy(model.embedding.position_embeddings)
    tokens = ops.convert_to_numpy(model.embedding.token_embedding.embeddings)
    assert not np.allclose(positions, tokens[: len(positions)])
    # No two random tensors share their leading values (same seed, other shape).
    heads = {
        path: value.reshape(-1)[:64]
        for path, value in numpy_weights(model).items()
        if value.ndim == 2
    }
    paths = sorted(heads)
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            assert not np.allclose(heads[a], heads[b]), (a, b)


def test_seeded_construction_is_reproducible():
    keras.utils.set_random_seed(7)
    a = numpy_weights(GPT(GPTConfig(**SMALL)))
    keras.utils.set_random_seed(7)
    b = numpy_weights(GPT(GPTConfig(**SMALL)))
    keras.utils.set_random_seed(8)
    c = numpy_weights(GPT(GPTConfig(**SMALL)))
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)
    assert not np.allclose(a["block_0/attention/qkv/kernel"], c["block_0/attention/qkv/kernel"])


def test_fit_step_lowers_loss(model):
    model.compile(optimizer=kerasllm.training.AdamW(learning_rate=3e-3), loss=kerasllm.training.LanguageModelLoss())
    ids = random_ids((8, 17), 97, seed=6)
    history = model.fit(ids[:, :-1], ids[:, 1:], epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    if policy == "mixed_float16" and keras.config.backend() == "jax":
        import jax

        if jax.default_backend() == "cpu":
            pytest.skip("XLA:CPU has no float16 dot_general with float32 accumulation")
    model = GPT(GPTConfig(**SMALL, **VARIANTS["llama"]), dtype=policy)
    ids = random_ids((4, 17), 97)
    logits = model(ids[:, :-1])
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert keras.backend.standardize_dtype(model.blocks[0].attention.qkv.kernel.dtype) == "float32"
    model.compile(optimizer=kerasllm.training.AdamW(learning_rate=1e-3), loss=kerasllm.training.LanguageModelLoss())
    history = model.fit(ids[:, :-1], ids[:, 1:], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_get_config_round_trip(model):
    clone = GPT.from_config(model.get_config())
    assert clone.config == model.config
    assert clone.count_params() == model.count_params()


def test_keras_file_round_trip_in_fresh_process(model, tmp_path):
    ids = random_ids((2, 9), 97, seed=7)
    kerasllm.save(model, tmp_path / "m", metadata={"steps": 3})
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "logits.npy", ops.convert_to_numpy(model(ids)))
    out = run_in_fresh_process(
        f"""
        import numpy as np, kerasllm
        m = kerasllm.load({str(tmp_path / "m")!r})
        ids = np.load({str(tmp_path / "ids.npy")!r})
        diff = np.abs(np.asarray(m(ids)) - np.load({str(tmp_path / "logits.npy")!r})).max()
        print(type(m).__name__, diff, m.metadata["steps"])
        """,
        env={"KERAS_BACKEND": keras.config.backend()},
    )
    assert out.split() == ["GPT", "0.0", "3"]


def test_model_dir_is_atomic_and_refuses_overwrite(tmp_path):
    model = GPT(GPTConfig(**SMALL))
    path = kerasllm.save(model, tmp_path / "m")
    meta = json.loads((path / "kerasllm.json").read_text())
    assert meta["config"] == model.config.to_dict()
    with pytest.raises(FileExistsError):
        kerasllm.save(model, path)
    kerasllm.save(model, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp dirs left


def test_a_run_directory_loads_its_one_model(tmp_path):
    """`runs/x` stands for `runs/x/model`; with two models the error names both."""
    model = GPT(GPTConfig(**SMALL))
    kerasllm.save(model, tmp_path / "run" / "model")
    (tmp_path / "run" / "checkpoints").mkdir()
    assert kerasllm.load(tmp_path / "run").config == model.config
    kerasllm.save(model, tmp_path / "run" / "best")
    with pytest.raises(FileNotFoundError, match=r"holds 2: .*best, .*model\. Pass one"):
        kerasllm.load(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a kerasllm model directory"):
        kerasllm.load(tmp_path / "empty")


def test_keras_hub_gpt2_weights_give_equal_logits():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=97, num_layers=2, num_heads=4, hidden_dim=32,
        intermediate_dim=128, max_sequence_length=32, dropout=0.0,
    )
    model = GPT(GPTConfig(**SMALL))
    load_keras_hub_gpt2_weights(model, backbone)
    ids = random_ids((2, 11), 97, seed=8)
    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    expected = ops.matmul(hidden, ops.transpose(backbone.token_embedding.embeddings))
    assert_close(model(ids), expected, atol=1e-5)
    with pytest.raises(ValueError, match="num_layers=3"):
        load_keras_hub_gpt2_weights(GPT(GPTConfig(**{**SMALL, "num_layers": 3})), backbone)


def test_cache_longer_than_learned_positions_is_rejected():
    model = GPT(GPTConfig(**SMALL))
    with pytest.raises(ValueError, match="max_length=40, context_length=32"):
        model.init_cache(1, 40)


def test_model_dir_from_a_newer_format_is_refused(tmp_path):
    path = kerasllm.save(GPT(GPTConfig(**SMALL)), tmp_path / "m")
    meta = json.loads((path / "kerasllm.json").read_text())
    meta["format_version"] = 99
    (path / "kerasllm.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version 99"):
        kerasllm.load(path)
