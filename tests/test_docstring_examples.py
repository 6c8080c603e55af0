"""Every docstring `Example:` in kerasllm/ runs, so the examples cannot rot.

An example is the ```python block (or the `>>>` doctest lines, whose shown
outputs are checked) after `Example:` in a module, class or function
docstring. It runs in its module's namespace plus `keras`, `np`,
`tf` (TensorFlow backend only), `kerasllm` and `model` (a 1-layer GPT), in a
temporary working directory that links to the repository's `recipes/`. The examples that need something a test run does not have (a
trained model directory, a corpus download, a server) are listed in `NEEDS`
with the reason; every other one must run.
"""

import ast
import doctest
import importlib
import pathlib
import re
import textwrap

import keras
import numpy as np
import pytest

import kerasllm
from helpers import REPO_ROOT

PACKAGE = pathlib.Path(REPO_ROOT) / "kerasllm"
FENCED = re.compile(r"Example:\s*\n\s*```python\n(.*?)\n\s*```", re.S)
DOCTEST = re.compile(r"Example:\s*\n((?:[ \t]*(?:>>>|\.\.\.).*(?:\n|$)(?:[ \t]*[^\s>.].*(?:\n|$))*)+)")

TRAINED_MODEL = "a trained model directory (runs/...)"
TOKENIZER_FILES = "tokenizer files on disk"
# id -> what the example needs that a test run does not have.
NEEDS = {
    "kerasllm.alignment.data:load_preferences": "a preference JSONL file",
    "kerasllm.alignment.dpo:dpo": TRAINED_MODEL,
    "kerasllm.alignment.heads:RewardModel": TRAINED_MODEL,
    "kerasllm.alignment.reward:reward": "a training run of minutes",
    "kerasllm.data.lm_dataset:lm_dataset": "a token cache on disk",
    "kerasllm.data.readers:read_documents": "a corpus directory",
    "kerasllm.data.token_cache:TokenCache": TOKENIZER_FILES,
    "kerasllm.export.saved_model:export_saved_model": TRAINED_MODEL,
    "kerasllm.export.saved_model:load_signature": "an exported SavedModel",
    "kerasllm.export.serving_module:ServingModule": "a model with its tokenizer (kerasllm.load)",
    "kerasllm.export.tflite:export_tflite": TRAINED_MODEL,
    "kerasllm.export.tflite:TFLiteGenerator": "an exported .tflite file",
    "kerasllm.finetune.run:finetune": TRAINED_MODEL,
    "kerasllm.generation.generator:Generator": "a model with its tokenizer (kerasllm.load)",
    "kerasllm.models.gpt:GPT.generate": TRAINED_MODEL,
    "kerasllm.models.gpt:GPT.stream": "a model with its tokenizer (kerasllm.load)",
    "kerasllm.tasks.evaluate:evaluate_tasks": TRAINED_MODEL,
    "kerasllm.tokenizers.byte_pair_tokenizer:BytePairTokenizer": TOKENIZER_FILES,
    "kerasllm.tokenizers.chat_template:encode_chat": TOKENIZER_FILES,
    "kerasllm.tokenizers.load:load": TOKENIZER_FILES,
    "kerasllm.tokenizers.sentencepiece_tokenizer:SentencePieceTokenizer": TOKENIZER_FILES,
    "kerasllm.tokenizers.streaming_decoder:StreamingDecoder": TOKENIZER_FILES,
    "kerasllm.tokenizers.tokenizer:Tokenizer.tokenize": TOKENIZER_FILES,
    "kerasllm.tokenizers.tokenizer:Tokenizer.detokenize": TOKENIZER_FILES,
    "kerasllm.training.config:PretrainConfig": "a training run of minutes",
    "kerasllm.training.evaluation:evaluate": TRAINED_MODEL,
    "kerasllm.training.pretrain:pretrain": "a training run of minutes",
}
# Examples that do not run yet for another reason (names they never define,
# `...` placeholders, doctest lines whose shown output is not what Python
# prints). Each is an expected failure: when one is fixed the test says so,
# and its entry goes.
NOT_RUNNABLE_YET = {
    "kerasllm.data.atomic:<module>",
    "kerasllm.data.atomic:atomic_path",
    "kerasllm.data.builtin:corpus_documents",
    "kerasllm.data.cleaning:CleaningConfig",
    "kerasllm.data.cleaning:clean_documents",
    "kerasllm.data.statistics:corpus_statistics",
    "kerasllm.generation.decode_loop:generate_tokens",
    "kerasllm.training.callbacks:StepCheckpoint",
    "kerasllm.training.distribution:distribution_scope",
}
SLOW = set()  # ids of examples that take more than a few seconds


def small_model():
    """The `model` an example may use without making it: a 1-layer GPT."""
    return kerasllm.models.GPT.from_preset(
        "tiny", num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64
    )


def collect():
    """`(id, module name, code)` for every docstring example, in file order."""
    examples = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node, qualname):
            docstring = ast.get_docstring(node, clean=True)
            blocks = [m.group(1) for m in FENCED.finditer(docstring or "")]
            blocks += [m.group(1) for m in DOCTEST.finditer(docstring or "")]
            for index, code in enumerate(blocks):
                name = qualname or "<module>"
                suffix = f"[{index}]" if index else ""
                examples.append((f"{module}:{name}{suffix}", module, code))
            for child in getattr(node, "body", []):
                if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, f"{qualname}.{child.name}" if qualname else child.name)

        visit(tree, "")
    return examples


EXAMPLES = collect()


def test_the_examples_are_found():
    ids = {example_id for example_id, _, _ in EXAMPLES}
    assert "kerasllm.layers.causal_self_attention:CausalSelfAttention" in ids
    listed = set(NEEDS) | NOT_RUNNABLE_YET | SLOW
    assert listed <= ids, listed - ids  # no stale entries


def params():
    for example_id, module, code in EXAMPLES:
        marks = []
        if example_id in NOT_RUNNABLE_YET:
            marks.append(pytest.mark.xfail(strict=True, reason="not runnable yet"))
        if example_id in SLOW:
            marks.append(pytest.mark.slow)
        yield pytest.param(example_id, module, code, id=example_id, marks=marks)


@pytest.mark.parametrize("example_id, module, code", params())
def test_example_runs(example_id, module, code, tmp_path, monkeypatch):
    if example_id in NEEDS:
        pytest.skip(f"needs {NEEDS[example_id]}")
    namespace = dict(vars(importlib.import_module(module)))
    namespace.update(keras=keras, np=np, kerasllm=kerasllm, model=small_model())
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        namespace["tf"] = tf
    if "keras_hub" in code:
        namespace["keras_hub"] = pytest.importorskip("keras_hub")
    (tmp_path / "recipes").symlink_to(pathlib.Path(REPO_ROOT) / "recipes")
    monkeypatch.chdir(tmp_path)
    if code.lstrip().startswith(">>>"):
        # A doctest: also checks the outputs it shows.
        test = doctest.DocTestParser().get_doctest(
            textwrap.dedent(code), namespace, example_id, module, 0
        )
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test, clear_globs=False)
        assert runner.failures == 0, f"{example_id}: {runner.failures} doctest failure(s)"
    else:
        exec(compile(code, f"<{example_id} example>", "exec"), namespace)
