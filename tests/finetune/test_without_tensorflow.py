"""Fine-tuning, generation and task evaluation on JAX where TensorFlow is not installed.

A JAX-only GPU machine has no TensorFlow. The BPE tokenizer's Python side
(Hugging Face `tokenizers`) is all these stages use, so they must run there.
The child process below makes `import tensorflow` fail as it fails on such a
machine, then fine-tunes, evaluates and generates.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent('''
    import importlib.abc, json, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_text", "tf_keras"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    import importlib.util
    importlib.util.find_spec = (lambda find: lambda name, *a: None
                                if name.split(".")[0] == "tensorflow" else find(name, *a))(
        importlib.util.find_spec)

    import kerasllm
    from kerasllm.finetune import FinetuneConfig, finetune, load_adapter
    from kerasllm.generation import get_generator
    from kerasllm.tasks import evaluate_tasks

    args = json.loads(sys.argv[1])
    tokenizer = kerasllm.tokenizers.load(args["tokenizer"])
    result = {"ids": tokenizer.encode_batch(args["texts"]),
              "decoded": [tokenizer.decode(tokenizer.encode(t)) for t in args["texts"]]}
    try:
        tokenizer.tokenize("a")
    except ImportError as error:
        result["tokenize_error"] = str(error)
    config = FinetuneConfig.from_yaml("recipes/configs/finetune/lora.yaml")
    run = finetune(config, args["output"], verbose=0, overrides=dict(
        base=args["base"], tasks=["add"], task_train={"add": 16}, task_test=2, steps=3,
        batch_size=4, log_every=1, eval_every=3, checkpoint_every=3, warmup_steps=0,
        eval_batches=1))
    result["scores"] = run["tasks"]  # evaluate_tasks at the end of the run
    model = kerasllm.load(args["base"])
    load_adapter(model, run["adapter_dir"])
    result["scores_reloaded"] = evaluate_tasks(model, tasks=["add"], test=2)
    completion = get_generator(model).complete(["add 1 and 2"], max_new_tokens=3)
    result["completion"] = completion.texts if hasattr(completion, "texts") else str(completion)
    result["tensorflow_loaded"] = any(m.split(".")[0] == "tensorflow" for m in sys.modules)
    print(json.dumps(result))
''')


def test_finetune_and_evaluate_without_tensorflow(tmp_path, base_model_dir, chat_tokenizer):
    import tokenizers

    tokenizer_dir = os.path.join(base_model_dir, "tokenizer")
    texts = ["add 12 and 30", "<|im_start|>user\nひらがな<|im_end|>\n", "  x\t=  1\n\n"]
    # The reference: Hugging Face `tokenizers` over the saved tokenizer.json.
    reference = tokenizers.Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    expected = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    args = dict(tokenizer=tokenizer_dir, base=base_model_dir, output=str(tmp_path / "lora"), texts=texts)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True, timeout=600,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["ids"] == expected
    assert result["decoded"] == texts
    assert "needs TensorFlow" in result["tokenize_error"]
    assert not result["tensorflow_loaded"]
    assert set(result["scores"]["tasks"]) == {"add"} and result["scores"]["tasks"]["add"]["n"] == 2
    assert result["scores_reloaded"] == result["scores"]
    assert result["completion"]
    output = tmp_path / "lora"
    assert (output / "adapter").is_dir()
    assert (output / "log.csv").is_file() and not (output / "tensorboard").exists()
