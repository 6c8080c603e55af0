"""Fixtures of the fine-tuning tests: a small trained tokenizer and a tiny base model."""

import pytest


def _documents():
    from kerasllm.tasks import make_split

    records = make_split(train=40, test=0, seed=1, format="prompt-completion")["train"]
    text = [r["prompt"] + r["completion"] for r in records]
    return text + ["def add(a, b):\n    return a + b\n"] * 5


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory):
    """A 400-id byte-level BPE with kerasllm's default special tokens."""
    from kerasllm.tokenizers import train_tokenizer

    directory = tmp_path_factory.mktemp("finetune-tokenizer") / "bpe"
    return train_tokenizer(_documents(), kind="bpe", vocab_size=400, output_dir=directory,
                           show_progress=False)


@pytest.fixture(scope="session")
def plain_tokenizer(tmp_path_factory):
    """A BPE tokenizer with no chat special tokens (only <|endoftext|>)."""
    from kerasllm.tokenizers import train_tokenizer

    directory = tmp_path_factory.mktemp("plain-tokenizer") / "bpe"
    return train_tokenizer(_documents(), kind="bpe", vocab_size=300, output_dir=directory,
                           special_tokens=["<|endoftext|>"], show_progress=False)


@pytest.fixture(scope="session")
def base_model_dir(chat_tokenizer, tmp_path_factory):
    """A random 2-layer GPT with `chat_tokenizer`, saved as a model directory."""
    import kerasllm
    from kerasllm.models import GPT, GPTConfig

    config = GPTConfig.from_preset(
        "tiny", vocab_size=chat_tokenizer.vocabulary_size, num_layers=2, num_heads=2,
        hidden_dim=32, intermediate_dim=64, context_length=64,
    )
    model = GPT(config)
    model.build((None, 64))
    path = tmp_path_factory.mktemp("finetune-base") / "model"
    kerasllm.save(model, path, tokenizer=chat_tokenizer)
    return str(path)
