"""Fixtures for the hostile-input tests: a corpus, a tokenizer, a finished run
and an in-process `kerasllm` command line."""

import random
import shutil

import pytest

_NAMES = ["alpha", "beta", "gamma", "delta", "value", "items", "count", "total"]


def _document(rng):
    name = rng.choice(_NAMES)
    lines = [f"def {name}_{rng.randint(0, 9)}({rng.choice(_NAMES)}):"]
    for _ in range(rng.randint(3, 8)):
        lines.append(f"    {rng.choice(_NAMES)} = {rng.choice(_NAMES)} + {rng.randint(0, 9)}")
    lines.append(f"    return {rng.choice(_NAMES)}\n")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A directory of 300 small Python-like files."""
    directory = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for i in range(300):
        (directory / f"doc{i:03d}.py").write_text(_document(rng), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def tokenizer_dir(corpus, tmp_path_factory):
    from kerasllm.data import corpus_documents
    from kerasllm.tokenizers import train_tokenizer

    directory = tmp_path_factory.mktemp("tokenizer") / "bpe"
    train_tokenizer(
        corpus_documents(str(corpus), split="train"),
        vocab_size=320,
        output_dir=directory,
        show_progress=False,
    )
    return directory


@pytest.fixture(scope="session")
def run_config(corpus, tokenizer_dir, tmp_path_factory):
    """A pretraining config dict that trains 6 steps in a few seconds."""
    return {
        "corpus": str(corpus),
        "tokenizer": str(tokenizer_dir),
        "model": {"num_layers": 1, "num_heads": 2, "hidden_dim": 32,
                  "intermediate_dim": 64, "context_length": 32},
        "batch_size": 4,
        "steps": 6,
        "learning_rate": 0.003,
        "warmup_steps": 1,
        "min_lr_ratio": 0.1,
        "log_every": 3,
        "eval_every": 6,
        "eval_batches": 1,
        "checkpoint_every": 3,
        "keep_checkpoints": 3,
        "cache_dir": str(tmp_path_factory.mktemp("cache")),
    }


@pytest.fixture(scope="session")
def finished_run(run_config, tmp_path_factory):
    """A complete run directory (steps 3 and 6 checkpointed); copy before changing it."""
    from kerasllm.training import pretrain

    output = tmp_path_factory.mktemp("finished") / "run"
    pretrain(run_config, output, verbose=0)
    return output


@pytest.fixture
def run_copy(finished_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target


@pytest.fixture
def cli(capsys):
    """Run `kerasllm ARGS...` in this process: returns `(exit code, stdout, stderr)`."""
    from kerasllm.cli import main

    def run(*args):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args]) or 0
        except SystemExit as exit:
            code = exit.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
