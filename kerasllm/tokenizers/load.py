"""`load`: open a tokenizer directory of either kind."""

from kerasllm.tokenizers import files


def load(directory):
    """Load a tokenizer written by `train_tokenizer` or `tokenizer.save`.

    Args:
        directory: the tokenizer directory (its `kerasllm_tokenizer.json`
            names the kind).

    Returns:
        A `BytePairTokenizer` or a `SentencePieceTokenizer`.

    Raises:
        FileNotFoundError: `directory` is missing or not a tokenizer directory.
        ValueError: its metadata names an unknown kind or version.
        ImportError: a SentencePiece tokenizer where TensorFlow is not
            installed (a BPE tokenizer loads without it: see `Tokenizer`).

    Example:

    >>> tokenizer = kerasllm.tokenizers.load("bpe-8k/")
    >>> tokenizer.encode("hello")
    """
    kind = files.read_metadata(directory)["kind"]
    if kind == "bpe":
        from kerasllm.tokenizers.byte_pair_tokenizer import BytePairTokenizer

        return BytePairTokenizer(directory)
    from kerasllm.tokenizers.tokenizer import require_tensorflow

    require_tensorflow(f"The SentencePiece tokenizer in {directory}")
    from kerasllm.tokenizers.sentencepiece_tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(directory)
