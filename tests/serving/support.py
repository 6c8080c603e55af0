"""Helpers of the serving tests: a tiny model directory and its export.

Imported as `serving.support` (pytest puts tests/ on the path).
"""

import glob
import os
import pathlib

CONTEXT = 64

# Japanese and ASCII text, so the tokenizer has multi-byte merges and
# streamed pieces meet characters that span several tokens.
JAPANESE = [
    "こんにちは、世界。今日はいい天気ですね。",
    "日本語の文章を生成するモデルです。ありがとうございました。",
]


def training_documents():
    stdlib_json = os.path.join(os.path.dirname(os.__file__), "json")
    documents = [pathlib.Path(p).read_text() for p in sorted(glob.glob(stdlib_json + "/*.py"))]
    return documents + JAPANESE * 20


def make_model_dir(root, name="tiny", seed=3):
    """Train a 500-id BPE and save a random 2-layer GPT beside it under `root/name`."""
    import keras

    import kerasllm
    from kerasllm.models import GPT
    from kerasllm.tokenizers import train_tokenizer

    root = pathlib.Path(root)
    tokenizer = train_tokenizer(
        training_documents(), vocab_size=500, output_dir=root / f"{name}-tokenizer",
        show_progress=False,
    )
    keras.utils.set_random_seed(seed)
    model = GPT.from_preset(
        "tiny",
        vocab_size=tokenizer.vocabulary_size,
        context_length=CONTEXT,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    model.tokenizer = tokenizer
    path = root / name
    kerasllm.save(model, path)
    return path, model
