"""A small tokenizer with the chat tokens, shared by the alignment tests."""

import pytest


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from kerasllm.tokenizers import train_tokenizer

    text = ["the quick brown fox jumps over the lazy dog 0123456789 + = ?"] * 20
    return train_tokenizer(
        text, kind="bpe", vocab_size=300, output_dir=tmp_path_factory.mktemp("tok"),
        show_progress=False,
    )
