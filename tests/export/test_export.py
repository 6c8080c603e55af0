"""Export: the TF Serving SavedModel and the TFLite file against Keras greedy.

One tiny model, tokenizer and set of exports are built once per session (the
exports are the slow part); the tests read them. TensorFlow backend only.
"""

import glob
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.tf_only

HERE = pathlib.Path(__file__).parent
CONTEXT = 64
NEW_TOKENS = 24
PROMPTS = [
    "def main():",
    "import os\n",
    "class Foo(object):",
    "return x + 1",
    "# comment",
    "for i in range(10):",
    "x = [1, 2, 3]",
    "print('hello')",
]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A tiny model directory, its Keras greedy completions and its exports."""
    import kerasllm
    from kerasllm.cli import main as cli_main
    from kerasllm.export import export_saved_model, export_tflite
    from kerasllm.generation import complete
    from kerasllm.models import GPT
    from kerasllm.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("export")
    stdlib_json = os.path.join(os.path.dirname(os.__file__), "json")
    documents = [pathlib.Path(p).read_text() for p in sorted(glob.glob(stdlib_json + "/*.py"))]
    tokenizer = train_tokenizer(
        documents, vocab_size=500, output_dir=root / "tokenizer", show_progress=False
    )
    keras.utils.set_random_seed(3)
    model = GPT.from_preset(
        "tiny", vocab_size=tokenizer.vocabulary_size, context_length=CONTEXT, tie_embeddings=False
    )
    # A fresh GPT-2 init has nearly uniform logits, so greedy repeats one
    # token and any export would "match". Larger weights make every next
    # token depend on the context: a much stronger parity test.
    for weight in model.weights:
        if "kernel" in weight.path or "embedding" in weight.path:
            weight.assign(weight * 3.0)
    model.tokenizer = tokenizer
    model_dir = root / "tiny"
    kerasllm.save(model, model_dir)
    reference = complete(model, PROMPTS, max_new_tokens=NEW_TOKENS, strategy="greedy")

    saved = export_saved_model(model, root / "saved_models", name="tiny", max_new_tokens=32)
    # float32 TFLite through the command line, int8 through the Python API.
    cli_main(
        ["export", "--model", str(model_dir), "--format", "tflite", "--output", str(root / "fp32"), "--json"]
    )
    int8 = export_tflite(model, root / "int8", quantize="int8")
    return {
        "root": root,
        "model": model,
        "tokenizer": tokenizer,
        "model_dir": model_dir,
        "reference": reference,
        "saved": saved,
        "int8": int8,
    }


# ---------------------------------------------------------------- SavedModel


def _run_without_keras(saved_model_dir, requests, tmp_path):
    """Runs `load_without_keras.py` in a fresh process; returns its JSON."""
    requests_path = tmp_path / "requests.json"
    requests_path.write_text(json.dumps(requests))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        [sys.executable, str(HERE / "load_without_keras.py"), str(saved_model_dir), str(requests_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fresh_process(exported, tmp_path_factory):
    """Every request the SavedModel tests need, run in one fresh process."""
    too_long = "x = 1\n" * 40
    requests = {
        "batch": ("serving_default", {"prompt": PROMPTS, "max_new_tokens": [NEW_TOKENS]}),
        "single": ("serving_default", {"prompt": [PROMPTS[0]], "max_new_tokens": [NEW_TOKENS]}),
        "defaults_only": ("serving_default", {"prompt": [PROMPTS[0]]}),
        "empty": ("serving_default", {"prompt": ["def f():", ""]}),
        "too_long": ("serving_default", {"prompt": [too_long]}),
        "zero_new": ("serving_default", {"prompt": ["x"], "max_new_tokens": [0]}),
        "many_new": ("serving_default", {"prompt": ["x"], "max_new_tokens": [CONTEXT]}),
        "overflow": ("serving_default", {"prompt": [PROMPTS[0]], "max_new_tokens": [CONTEXT - 1]}),
        "mismatched": ("serving_default", {"prompt": ["a", "b", "c"], "top_k": [1, 2]}),
        "score": ("score", {"text": PROMPTS[:3] + [""]}),
        "score_too_long": ("score", {"text": ["x = 1\n" * 60]}),
        "logits": ("logits", {"token_ids": [[1, 2, 3]]}),
        "logits_bad_id": ("logits", {"token_ids": [[1, 100000]]}),
    }
    output = _run_without_keras(
        exported["saved"]["path"],
        [{"signature": s, "inputs": i} for s, i in requests.values()],
        tmp_path_factory.mktemp("fresh"),
    )
    return {**output, "by_name": dict(zip(requests, output["results"]))}


def test_saved_model_has_tf_serving_layout(exported):
    version_dir = pathlib.Path(exported["saved"]["path"])
    assert version_dir.name == "1" and version_dir.parent.name == "tiny"
    assert (version_dir / "saved_model.pb").is_file()
    assert version_dir.stat().st_mode & 0o777 == 0o755  # readable by a server user
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").is_file()
    # Nothing half-written is left beside the version.
    assert sorted(p.name for p in version_dir.parent.iterdir()) == ["1"]


def test_saved_model_cli_shows_predict_signatures(exported):
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run(
        [str(cli), "show", "--dir", exported["saved"]["path"], "--all"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for signature in ("serving_default", "generate", "chat", "score", "logits"):
        assert f"signature_def['{signature}']" in shown
    assert shown.count("Method name is: tensorflow/serving/predict") == 5
    for name in ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "text"):
        assert f"inputs['{name}']" in shown
    for name in ("text", "token_ids", "stop_reason", "log_probability", "num_tokens", "logits"):
        assert f"outputs['{name}']" in shown
    assert "Xla" not in shown


@pytest.mark.slow
def test_loads_without_keras_and_warms_up(fresh_process):
    assert not fresh_process["imported_keras"]
    assert not fresh_process["imported_kerasllm"]
    assert "_regex_split_ops.so" in fresh_process["tf_text_libraries"]
    assert [w["signature"] for w in fresh_process["warmup"]] == [
        "serving_default", "generate", "score", "logits", "chat"
    ]
    assert all(w["ok"] for w in fresh_process["warmup"])


@pytest.mark.slow
def test_saved_model_greedy_equals_keras_token_for_token(exported, fresh_process):
    reference = exported["reference"]
    for name in ("batch", "single"):
        out = fresh_process["by_name"][name]
        for row, completion in enumerate(reference[: len(out["text"])]):
            ids = [i for i in out["token_ids"][row] if i != -1]
            assert ids == completion.token_ids, (name, row)
            assert out["text"][row] == completion.text
            assert out["stop_reason"][row] == completion.stop_reason
    # With no optional input, the signature's defaults apply: greedy, 32 tokens.
    defaults = fresh_process["by_name"]["defaults_only"]
    ids = [i for i in defaults["token_ids"][0] if i != -1]
    assert ids[:NEW_TOKENS] == reference[0].token_ids


@pytest.mark.slow
def test_score_and_logits_match_keras(exported, fresh_process):
    model, tokenizer = exported["model"], exported["tokenizer"]
    scored = fresh_process["by_name"]["score"]
    for row, text in enumerate(PROMPTS[:3]):
        ids = tokenizer.encode(text)
        inputs = np.array([[tokenizer.end_token_id] + ids[:-1]], "int32")
        logits = keras.ops.convert_to_numpy(model(inputs))[0].astype("float64")
        top = logits.max(-1, keepdims=True)
        log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        expected = sum(log_probs[t, i] for t, i in enumerate(ids))
        assert scored["num_tokens"][row] == len(ids)
        np.testing.assert_allclose(scored["log_probability"][row], expected, rtol=1e-4)
    assert scored["num_tokens"][3] == 0 and scored["log_probability"][3] == 0.0
    logits = np.array(fresh_process["by_name"]["logits"]["logits"])
    expected = keras.ops.convert_to_numpy(model(np.array([[1, 2, 3]], "int32")))
    np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "request_name, message",
    [
        ("empty", "Every prompt needs at least one token"),
        ("too_long", "A prompt is longer than the model context: context_length=64"),
        ("zero_new", "max_new_tokens must be at least 1"),
        ("many_new", "max_new_tokens must be at most context_length - 1 = 63"),
        ("overflow", "The longest prompt plus max_new_tokens exceeds the model context_length=64"),
        ("mismatched", "top_k must have one value, or one per prompt"),
        ("score_too_long", "A text is longer than the model context_length=64"),
        ("logits_bad_id", "token_ids must be < vocab_size=500"),
    ],
)
def test_bad_inputs_fail_with_readable_messages(fresh_process, request_name, message):
    outcome = fresh_process["by_name"][request_name]
    assert "error" in outcome, outcome
    assert message in outcome["error"]


def test_existing_version_is_never_overwritten(exported):
    from kerasllm.export import export_saved_model, next_version

    base = exported["root"] / "saved_models"
    assert next_version(base / "tiny") == 2
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(exported["model"], base, name="tiny", version=1)
    with pytest.raises(ValueError, match="name must start"):
        export_saved_model(exported["model"], base, name="../escape")


def test_failed_export_leaves_no_version_directory(exported, tmp_path, monkeypatch):
    import tensorflow as tf

    from kerasllm.export import export_saved_model

    def half_written_save(obj, path, **kwargs):
        (pathlib.Path(path) / "saved_model.pb").write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", half_written_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(exported["model"], tmp_path, name="tiny", version=3)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_op_check_rejects_xla_only_ops(tmp_path):
    import tensorflow as tf

    from kerasllm.export import DisallowedOpsError, check_saved_model_ops

    class Module(tf.Module):
        # keras.ops.slice_update lowers to XlaDynamicUpdateSlice on TensorFlow.
        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
        def update(self, x):
            return keras.ops.slice_update(x, [1], tf.ones([2]))

        @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)], jit_compile=True)
        def compiled(self, x):
            return x * 2.0

    module = Module()
    tf.saved_model.save(module, str(tmp_path), signatures={"update": module.update, "compiled": module.compiled})
    with pytest.raises(DisallowedOpsError, match="XlaDynamicUpdateSlice") as error:
        check_saved_model_ops(tmp_path)
    assert "jit_compile=True" in str(error.value)


def test_export_needs_the_tensorflow_backend(monkeypatch):
    from kerasllm.export.backend_check import require_tensorflow_backend

    monkeypatch.setattr(keras.config, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        require_tensorflow_backend()


# ---------------------------------------------------------------- TFLite


def _agreement(generator, tokenizer, reference):
    """Share of Keras greedy tokens the TFLite model also picks, step by step.

    Each step feeds the Keras greedy prefix (teacher forcing), so one early
    disagreement does not turn every later comparison into a comparison of
    different contexts.
    """
    from kerasllm.tokenizers import StreamingDecoder

    agree = total = 0
    for prompt, completion in zip(PROMPTS, reference):
        ids = tokenizer.encode(prompt)
        text = StreamingDecoder(tokenizer)
        for step, expected in enumerate(completion.token_ids):
            # `prefill` masks as at the start of a text, so compare only where
            # the forced prefix ends between characters.
            if not text.pending:
                context = ids + completion.token_ids[:step]
                padded = np.zeros((1, generator.cache_length), np.int32)
                padded[0, : len(context)] = context
                out = generator._prefill(token_ids=padded, length=np.array(len(context), np.int32))
                agree += int(np.argmax(out["logits"][0])) == expected
                total += 1
            text.push(expected)
    return agree / total


@pytest.mark.slow
def test_tflite_float32_greedy_equals_keras(exported):
    from kerasllm.export import TFLiteGenerator, tflite_generate

    path = exported["root"] / "fp32"
    assert (path / "model.tflite").is_file() and (path / "tokenizer").is_dir()
    assert (path / "tokenizer").stat().st_mode & 0o777 == 0o755
    generator = TFLiteGenerator(path)
    assert set(generator.interpreter.get_signature_list()) == {"prefill", "decode"}
    for prompt, completion in zip(PROMPTS, exported["reference"]):
        ids, reason = generator.generate_ids(exported["tokenizer"].encode(prompt), NEW_TOKENS)
        assert ids == completion.token_ids
        assert reason == completion.stop_reason
    assert tflite_generate(path, PROMPTS[0], max_new_tokens=NEW_TOKENS) == exported["reference"][0].text


@pytest.mark.slow
def test_tflite_int8_is_smaller_and_agrees(exported):
    from kerasllm.export import TFLiteGenerator

    fp32_size = (exported["root"] / "fp32" / "model.tflite").stat().st_size
    assert exported["int8"]["size_bytes"] < 0.5 * fp32_size
    assert not any(op.startswith("Flex") for op in exported["int8"]["ops"])
    generator = TFLiteGenerator(exported["root"] / "int8")
    assert _agreement(generator, exported["tokenizer"], exported["reference"]) >= 0.9


def test_tflite_runner_rejects_bad_prompts(exported):
    from kerasllm.export import TFLiteGenerator

    generator = TFLiteGenerator(exported["root"] / "fp32")
    with pytest.raises(ValueError, match="The prompt is empty"):
        generator.generate_ids([], 4)
    with pytest.raises(ValueError, match="leaves no room to generate"):
        generator.generate_ids([1] * CONTEXT, 4)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int"):
        generator.generate_ids([1], 0)


def test_prompt_only_and_chat_signatures_from_python(exported):
    """`generate` needs only the prompt; `load_signature` applies the
    SignatureDef defaults; `chat` renders the chat template in the graph."""
    import tensorflow as tf

    from kerasllm.export import load_signature
    from kerasllm.tokenizers.chat_template import render_chat

    path = exported["saved"]["path"]
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["generate"](prompt=tf.constant(PROMPTS[:2]))
    texts = [t.decode("utf-8") for t in out["text"].numpy()]
    reference = [c.text for c in exported["reference"][:2]]
    assert [t[: len(r)] for t, r in zip(texts, reference)] == reference
    serving_default = load_signature(path)
    out = serving_default(prompt=PROMPTS[:1], max_new_tokens=[NEW_TOKENS])
    assert out["text"].numpy()[0].decode("utf-8") == reference[0]
    model = exported["model"]
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+3="}]
    out = load_signature(path, "chat")(
        role=[[m["role"] for m in messages]], content=[[m["content"] for m in messages]],
        max_new_tokens=[8],
    )
    expected = model.generate_ids(
        [model.tokenizer.encode(render_chat(messages, add_generation_prompt=True))],
        max_new_tokens=8,
        stop_token_ids=[model.tokenizer.token_to_id("<|im_end|>")],
    )[0]
    got = [i for i in out["token_ids"].numpy()[0].tolist() if i >= 0]
    assert got == expected


def test_tflite_export_prints_no_noneType_noise(exported, capfd):
    from kerasllm.export import convert_to_tflite

    convert_to_tflite(exported["model"], cache_length=16)
    assert "'NoneType' object has no attribute" not in capfd.readouterr().err
