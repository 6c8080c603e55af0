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


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, tokenizer):
    """A 2-layer model directory over `tokenizer` (random weights)."""
    import kerasllm
    from kerasllm.models import GPT

    model = GPT.from_preset(
        "tiny", vocab_size=tokenizer.vocabulary_size, num_layers=2, hidden_dim=32,
        num_heads=2, intermediate_dim=64, context_length=64,
    )
    path = tmp_path_factory.mktemp("base") / "model"
    kerasllm.save(model, path, tokenizer=tokenizer)
    return str(path)


@pytest.fixture(scope="session")
def preference_file(tmp_path_factory):
    import json

    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    lines = []
    for a in range(10):
        for b in range(3):
            lines.append({"prompt": f"{a} + {b} =", "chosen": f" {a + b} ok", "rejected": f" {a + b} dog"})
    path.write_text("".join(json.dumps(l) + "\n" for l in lines))
    return str(path)


def ends_with_ok(record, text):
    """A reward function for the tests: 1 when the completion contains 'ok'."""
    return 1.0 if "ok" in text else 0.0


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory):
    import json

    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{a} + {a} ="}) + "\n" for a in range(12)))
    return str(path)


def text_length(record, text):
    """A reward function that always varies: the completion's length in characters."""
    return float(len(text))
