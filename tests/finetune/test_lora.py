"""LoRA: layer choice, freezing, NumPy equivalence, adapters saved alone,
switching, the base fingerprint, merging, and the `lora merge` / `generate
--adapter` commands."""

import json
import zipfile

import keras
import numpy as np
import pytest
from keras import ops

import kerasllm
from helpers import assert_close, random_ids
from kerasllm import cli
from kerasllm.finetune import (
    apply_lora,
    format_trainable,
    load_adapter,
    load_with_adapter,
    lora_config,
    merge_lora,
    save_adapter,
    trainable_summary,
    unload_adapter,
)
from kerasllm.finetune.lora import lora_layers, match_targets
from kerasllm.models import GPT

SHAPE = dict(
    vocab_size=258, context_length=32, num_layers=2, num_heads=2, hidden_dim=32,
    intermediate_dim=64,
)
IDS = random_ids((2, 12), 258, seed=3)


def small_gpt(seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    return GPT.from_preset("tiny", **{**SHAPE, **overrides})


def randomize_lora(model, seed):
    """Non-zero factors, so the adapter changes the outputs."""
    rng = np.random.default_rng(seed)
    for _, layer in lora_layers(model):
        for variable in (layer.lora_kernel_a, layer.lora_kernel_b):
            variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))


def base_values(model):
    return {
        v.path: ops.convert_to_numpy(v).copy()
        for v in model.weights
        if "lora_kernel" not in v.path
    }


def test_targets_match_layer_paths_and_freeze_the_rest():
    model = small_gpt()
    paths = apply_lora(model, rank=4, alpha=8, targets=["qkv", "attention/output"])
    assert sorted(paths) == [
        "block_0/attention/output", "block_0/attention/qkv",
        "block_1/attention/output", "block_1/attention/qkv",
    ]
    trainable = sorted(v.path.split("/")[-1] for v in model.trainable_weights)
    assert trainable == ["lora_kernel_a"] * 4 + ["lora_kernel_b"] * 4
    # r * (d_in + d_out) per layer: qkv 32 -> 96, output 32 -> 32.
    expected = 2 * (4 * (32 + 96) + 4 * (32 + 32))
    summary = trainable_summary(model)
    assert summary["trainable"] == expected
    assert summary["total"] == model.count_params()
    assert format_trainable(summary).endswith(f"% of {summary['total'] / 1e3:.1f}K")
    assert lora_config(model)["rank"] == 4 and lora_config(model)["alpha"] == 8


def test_globs_and_unknown_targets():
    model = small_gpt()
    assert [p for p, _ in match_targets(model, ["block_1/*"])] == [
        p for p, _ in match_targets(model, ["block_1/attention/*", "block_1/feed_forward/*"])
    ]
    with pytest.raises(ValueError, match=r"'c_attn' matches no Dense.*down, output, qkv, up"):
        apply_lora(model, targets=["qkv", "c_attn"])
    with pytest.raises(ValueError, match="final_norm"):
        apply_lora(model, targets=["final_norm"])
    assert not lora_layers(model)  # nothing half-applied
    with pytest.raises(ValueError, match="rank must be a positive int. Received: rank=0"):
        apply_lora(model, rank=0)


def test_layer_and_merge_match_numpy():
    """x @ (W + (alpha/r) A B) + b, computed in NumPy from the weights."""
    model = small_gpt()
    apply_lora(model, rank=4, alpha=16, targets=["qkv"])
    randomize_lora(model, seed=1)
    layer = model.blocks[0].attention.qkv
    w = ops.convert_to_numpy(layer._kernel).astype("float64")
    a = ops.convert_to_numpy(layer.lora_kernel_a).astype("float64")
    b = ops.convert_to_numpy(layer.lora_kernel_b).astype("float64")
    bias = ops.convert_to_numpy(layer.bias).astype("float64")
    x = np.random.default_rng(0).normal(size=(3, 32)).astype("float32")
    assert_close(layer(x), x.astype("float64") @ (w + (16 / 4) * a @ b) + bias, atol=1e-5)

    unmerged = model(IDS)
    merge_lora(model)
    assert not lora_layers(model) and lora_config(model) is None
    assert_close(model.blocks[0].attention.qkv.kernel, w + 4.0 * a @ b, atol=1e-6)
    assert_close(model(IDS), unmerged, atol=1e-5)
    assert "lora_rank" not in json.dumps(model.get_config())
    assert len(model.trainable_weights) == len(model.weights)  # flags restored


def test_training_moves_only_the_adapter():
    model = small_gpt()
    before = base_values(model)
    apply_lora(model, rank=2, targets=["qkv", "down"])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(IDS[:, :-1], IDS[:, 1:], epochs=3, batch_size=2, verbose=0)
    after = base_values(model)
    assert before.keys() == after.keys()
    for path in before:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    assert any(np.abs(ops.convert_to_numpy(l.lora_kernel_b)).max() > 0 for _, l in lora_layers(model))
    # Adam keeps two slots per trainable weight, none for the frozen base.
    slots = [v for v in model.optimizer.variables if len(v.shape) > 0]
    assert sorted(tuple(v.shape) for v in slots) == sorted(
        tuple(v.shape) for v in model.trainable_weights for _ in range(2)
    )


def test_adapter_round_trip_switch_and_unload(tmp_path):
    model = small_gpt()
    base_logits = ops.convert_to_numpy(model(IDS))
    apply_lora(model, rank=4, targets=["qkv", "output"])
    randomize_lora(model, seed=1)
    logits_a = ops.convert_to_numpy(model(IDS))
    save_adapter(model, tmp_path / "a")
    unload_adapter(model)
    apply_lora(model, rank=2, alpha=4, targets=["up", "down"])
    randomize_lora(model, seed=2)
    logits_b = ops.convert_to_numpy(model(IDS))
    save_adapter(model, tmp_path / "b")
    with pytest.raises(FileExistsError):
        save_adapter(model, tmp_path / "b")
    save_adapter(model, tmp_path / "b", overwrite=True)

    # The adapter alone: its factors only, far smaller than the base.
    spec = json.loads((tmp_path / "a" / "kerasllm_adapter.json").read_text())
    assert spec["rank"] == 4 and spec["alpha"] == 4 and spec["targets"] == ["qkv", "output"]
    with np.load(tmp_path / "a" / "adapter_weights.npz") as stored:
        assert all("lora_kernel" in key for key in stored.files) and len(stored.files) == 8

    # Switch on the same base object, in any order; unload gives the base back.
    unload_adapter(model)
    assert_close(model(IDS), base_logits, atol=0.0)
    for directory, expected in (("a", logits_a), ("b", logits_b), ("a", logits_a)):
        load_adapter(model, tmp_path / directory)
        assert_close(model(IDS), expected, atol=1e-6)
    unload_adapter(model)
    assert_close(model(IDS), base_logits, atol=0.0)

    # A fresh copy of the base (another process would do the same) takes it too.
    copy = small_gpt()
    load_adapter(copy, tmp_path / "b")
    assert_close(copy(IDS), logits_b, atol=1e-6)


def test_another_base_is_refused(tmp_path):
    model = small_gpt(seed=0)
    apply_lora(model, rank=2, targets=["qkv"])
    save_adapter(model, tmp_path / "adapter")
    expected_id = json.loads((tmp_path / "adapter" / "kerasllm_adapter.json").read_text())[
        "base_fingerprint"
    ]["id"]
    other_weights = small_gpt(seed=1)
    with pytest.raises(ValueError, match=rf"base {expected_id}.*same config, different weights"):
        load_adapter(other_weights, tmp_path / "adapter")
    other_shape = small_gpt(seed=0, num_layers=3)
    with pytest.raises(ValueError, match=r"configs differ in num_layers"):
        load_adapter(other_shape, tmp_path / "adapter")
    assert not lora_layers(other_shape)


@pytest.fixture(scope="module")
def model_and_adapter(tmp_path_factory):
    from kerasllm.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("lora_cli")
    docs = ["def add(a, b):\n    return a + b\n", "こんにちは世界 hello world"] * 20
    tokenizer = train_tokenizer(
        docs, kind="bpe", vocab_size=300, output_dir=root / "tok", show_progress=False
    )
    model = small_gpt(vocab_size=tokenizer.vocabulary_size)
    kerasllm.save(model, root / "base", tokenizer=tokenizer)
    apply_lora(model, rank=4, targets=["qkv", "output", "up", "down"])
    randomize_lora(model, seed=5)
    save_adapter(model, root / "adapter")
    ids = random_ids((2, 10), tokenizer.vocabulary_size, seed=7)
    return root, ops.convert_to_numpy(model(ids)), ids


def test_lora_merge_command_writes_a_plain_model(model_and_adapter):
    root, adapted_logits, ids = model_and_adapter
    code = cli.main([
        "lora", "merge", "--base", str(root / "base"), "--adapter", str(root / "adapter"),
        "--output", str(root / "merged"),
    ])
    assert code == 0
    with zipfile.ZipFile(root / "merged" / "model.keras") as archive:
        assert "lora" not in archive.read("config.json").decode()
    merged = kerasllm.load(root / "merged")
    assert merged.tokenizer is not None
    assert not lora_layers(merged)
    assert_close(merged(ids), adapted_logits, atol=1e-5)
    assert_close(load_with_adapter(root / "base", root / "adapter")(ids), adapted_logits, atol=1e-6)


@pytest.mark.slow  # compiles the decode loop twice
def test_generate_with_adapter(model_and_adapter, capsys):
    root, _, _ = model_and_adapter
    argv = ["generate", "--model", str(root / "base"), "--prompt", "def",
            "--max-new-tokens", "8", "--json"]
    assert cli.main(argv + ["--adapter", str(root / "adapter")]) == 0
    adapted = json.loads(capsys.readouterr().out)["completions"][0]["text"]
    expected = load_with_adapter(root / "base", root / "adapter").generate("def", max_new_tokens=8)
    assert adapted == expected


def test_classifier_head_trains_beside_the_adapter_and_travels_with_it(tmp_path):
    from kerasllm.finetune import SequenceClassifier

    def classifier(head_seed):
        backbone = small_gpt(seed=0)
        keras.utils.set_random_seed(head_seed)
        return SequenceClassifier(backbone, num_classes=1)

    model = classifier(head_seed=1)
    apply_lora(model, rank=2, targets=["qkv"])
    assert lora_config(model)["trained_layers"] == ["head"]
    trainable = {v.path.split("/")[-1] for v in model.trainable_weights}
    assert trainable == {"lora_kernel_a", "lora_kernel_b", "kernel", "bias"}
    head_before = ops.convert_to_numpy(model.head.kernel).copy()
    randomize_lora(model, seed=1)
    model.head.kernel.assign(head_before + 1.0)  # as training would move it
    expected = ops.convert_to_numpy(model(IDS))
    save_adapter(model, tmp_path / "reward")
    with np.load(tmp_path / "reward" / "adapter_weights.npz") as stored:
        assert {"head/kernel", "head/bias"} <= set(stored.files)

    other = classifier(head_seed=2)  # same backbone, another head: the same base
    load_adapter(other, tmp_path / "reward")
    assert_close(other(IDS), expected, atol=1e-6)
    unload_adapter(model)
    assert_close(model.head.kernel, head_before, atol=0.0)


def greedy_by_full_forward(model, prompt, steps):
    """Greedy continuation by re-running the whole sequence (no cache, no compiled loop)."""
    ids = list(prompt)
    for _ in range(steps):
        logits = ops.convert_to_numpy(model(np.array([ids], "int32")))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


@pytest.mark.slow  # compiles the decode loop for each LoRA structure
def test_compiled_generation_follows_adapter_switches(tmp_path):
    """The decode programs cached for a model must not keep computing with the
    adapter (or the absence of one) they were traced with."""
    model = small_gpt()
    prompt = [5, 17, 42, 9]
    assert model.generate_ids(prompt, max_new_tokens=6) == greedy_by_full_forward(model, prompt, 6)
    apply_lora(model, rank=4, targets=["qkv", "up"])
    randomize_lora(model, seed=11)
    save_adapter(model, tmp_path / "a")
    randomize_lora(model, seed=12)
    save_adapter(model, tmp_path / "b")
    unload_adapter(model)
    for directory in ("a", "b"):  # a: new LoRA layers; b: same layers, new values
        load_adapter(model, tmp_path / directory)
        expected = greedy_by_full_forward(model, prompt, 6)
        assert model.generate_ids(prompt, max_new_tokens=6) == expected, directory
    unload_adapter(model)
    assert model.generate_ids(prompt, max_new_tokens=6) == greedy_by_full_forward(model, prompt, 6)


def test_token_rows_train_and_the_rest_of_the_table_stays_bit_identical(tmp_path):
    """`trainable_tokens`: only the chosen embedding rows move (input and tied head alike)."""
    model = small_gpt()
    table = model.embedding.token_embedding
    before = base_values(model)
    rows = [5, 200]
    apply_lora(model, rank=2, targets=["qkv"], trainable_tokens=rows)
    assert lora_config(model)["trainable_tokens"] == rows
    trainable = sorted(v.path.split("/")[-1] for v in model.trainable_weights)
    assert trainable == ["lora_embeddings_b"] + ["lora_kernel_a"] * 2 + ["lora_kernel_b"] * 2
    # The deltas are (k, d): 2 rows of width 32 beside the rank-2 factors.
    assert trainable_summary(model)["trainable"] == 2 * 32 + 2 * 2 * (32 + 96)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ids = np.array(IDS)
    ids[:, ::3] = rows[0]  # the chosen tokens appear as inputs and as targets
    ids[:, 1::4] = rows[1]
    model.fit(ids[:, :-1], ids[:, 1:], epochs=3, batch_size=2, verbose=0)

    # Every stored base weight, the table included, is bit-identical.
    after = base_values(model)
    for path in before:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    # The table the model reads differs from the stored one on the chosen rows only.
    stored = before[table._embeddings.path]
    read = ops.convert_to_numpy(table.embeddings)
    changed = np.flatnonzero(np.any(read != stored, axis=1))
    assert sorted(changed.tolist()) == rows

    # Saved with the adapter (the deltas only), loaded onto a fresh base, merged.
    logits = ops.convert_to_numpy(model(IDS))
    save_adapter(model, tmp_path / "adapter")
    spec = json.loads((tmp_path / "adapter" / "kerasllm_adapter.json").read_text())
    assert spec["trainable_tokens"] == rows
    with np.load(tmp_path / "adapter" / "adapter_weights.npz") as stored_arrays:
        assert stored_arrays["embedding/token_embedding/lora_embeddings_b"].shape == (2, 32)
    copy = small_gpt()
    load_adapter(copy, tmp_path / "adapter")
    assert_close(copy(IDS), logits, atol=1e-6)
    unload_adapter(copy)
    assert_close(copy.embedding.token_embedding.embeddings, stored, atol=0.0)
    merge_lora(model)
    assert_close(model(IDS), logits, atol=1e-5)
    merged = ops.convert_to_numpy(model.embedding.token_embedding.embeddings)
    np.testing.assert_array_equal(np.delete(merged, rows, axis=0), np.delete(stored, rows, axis=0))
    assert "lora" not in json.dumps(model.get_config())


def test_bad_token_rows_are_refused():
    model = small_gpt()
    with pytest.raises(ValueError, match=r"distinct ints in \[0, 258\). Received: token_ids=\[5, 5\]"):
        apply_lora(model, rank=2, targets=["qkv"], trainable_tokens=[5, 5])
    with pytest.raises(ValueError, match=r"Received: token_ids=\[999\]"):
        apply_lora(small_gpt(), rank=2, targets=["qkv"], trainable_tokens=[999])
