"""`train_tokenizer`: learn a byte-level BPE or SentencePiece vocabulary.

Documents are streamed: the trainers read them one at a time, and nothing
here keeps the corpus in memory (SentencePiece keeps a sample of at most
`_SENTENCEPIECE_MAX_CHUNKS` chunks, its trainer's own limit).
"""

import collections
import io

from kerasllm.data import atomic
from kerasllm.tokenizers import files
from kerasllm.tokenizers.split_pattern import default_split_pattern

# The special tokens every kerasllm tokenizer reserves, in id order:
#   <|endoftext|>  ends each document (the pipeline appends it; generation
#                  stops on it);
#   <|pad|>        pads batches (masked out of losses);
#   <|im_start|>, <|im_end|>  open and close a chat turn in fine-tuning
#                  ("<|im_start|>user\n...<|im_end|>\n", ChatML style).
DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")
END_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

SENTENCEPIECE_MODEL_TYPES = ("unigram", "bpe")

# Words seen at least this often while training go in the in-graph word cache.
_CACHE_MIN_COUNT = 2
_CACHE_MAX_WORDS = 50_000
# Count words on the first 64 MB of text only: enough to rank the frequent
# ones, and it bounds the counter's memory on a large corpus.
_CACHE_SAMPLE_CHARS = 64 * 2**20

# SentencePiece trains on "sentences" of at most this many bytes; documents are
# cut into chunks at line ends to fit.
_SENTENCEPIECE_CHUNK_CHARS = 4096
_SENTENCEPIECE_MAX_CHUNKS = 2_000_000

# BPE trains on pre-tokenized pieces of at most this many characters.
_MAX_PIECE_CHARS = 256
# Seconds between progress lines while the trainer reads the corpus.
_PROGRESS_SECONDS = 10.0


def train_tokenizer(
    documents,
    *,
    kind="bpe",
    vocab_size,
    output_dir,
    overwrite=False,
    special_tokens=None,
    sentencepiece_model_type="unigram",
    show_progress=True,
):
    """Train a tokenizer on a stream of documents and save it to a directory.

    `kind="bpe"` trains a byte-level BPE with Hugging Face `tokenizers`
    (Rust); `kind="sentencepiece"` trains with the `sentencepiece` trainer,
    with byte fallback and no normalization, so any string encodes and
    decodes back unchanged.

    Args:
        documents: any iterable of `str` (a generator is fine: it is read
            once, streamed).
        kind: `"bpe"` or `"sentencepiece"`. Defaults to `"bpe"`.
        vocab_size: the number of ids, special tokens and the 256 byte
            tokens included (at least 256 + the number of special tokens,
            + 1 for SentencePiece's `<unk>`).
        output_dir: where to write the tokenizer files (a new directory,
            written beside and renamed into place when complete).
        overwrite: replace an existing tokenizer directory at `output_dir`
            (never a directory of other files). Defaults to `False`.
        special_tokens: the special tokens, in id order, or `None` for
            `DEFAULT_SPECIAL_TOKENS` (`<|endoftext|>`, `<|pad|>`,
            `<|im_start|>`, `<|im_end|>`). `<|endoftext|>` is added first if
            missing.
        sentencepiece_model_type: `"unigram"` or `"bpe"`, for
            `kind="sentencepiece"`. Defaults to `"unigram"`.
        show_progress: show the trainer's progress. Defaults to `True`.

    Returns:
        The trained tokenizer, loaded from `output_dir`
        (`kerasllm.tokenizers.load(output_dir)`).

    Example:

    >>> from kerasllm.tokenizers import train_tokenizer
    >>> tokenizer = train_tokenizer(
    ...     ["こんにちは、世界。", "今日は良い天気です。"] * 100,
    ...     kind="sentencepiece", vocab_size=300, output_dir="ja-tokenizer",
    ... )
    >>> tokenizer.decode(tokenizer.encode("良い天気"))
    '良い天気'
    """
    from kerasllm.tokenizers.load import load

    special_tokens = _check_special_tokens(special_tokens)
    if kind not in files.KINDS:
        raise ValueError(
            f"Unknown tokenizer kind. Expected one of {files.KINDS}. "
            f"Received: kind={kind!r}"
        )
    minimum = 256 + len(special_tokens) + (1 if kind == "sentencepiece" else 0)
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be an int of at least {minimum} for kind={kind!r} "
            f"(256 byte tokens + {len(special_tokens)} special tokens"
            + (" + <unk>" if kind == "sentencepiece" else "")
            + f"). Received: vocab_size={vocab_size!r}"
        )
    if isinstance(documents, str):
        raise TypeError(
            "documents must be an iterable of str, not one str. "
            f"Received: {documents!r:.80}"
        )
    # Refuse an existing output before reading the corpus.
    atomic.check_output_directory(
        output_dir, overwrite=overwrite, marker=files.METADATA_FILE, what="tokenizer"
    )
    with files.atomic_directory(
        output_dir, overwrite=overwrite, marker=files.METADATA_FILE
    ) as staging:
        if kind == "bpe":
            _train_bpe(documents, vocab_size, special_tokens, staging, show_progress)
        else:
            if sentencepiece_model_type not in SENTENCEPIECE_MODEL_TYPES:
                raise ValueError(
                    "Unknown SentencePiece model type. Expected one of "
                    f"{SENTENCEPIECE_MODEL_TYPES}. Received: "
                    f"sentencepiece_model_type={sentencepiece_model_type!r}"
                )
            _train_sentencepiece(
                documents,
                vocab_size,
                special_tokens,
                sentencepiece_model_type,
                staging,
                show_progress,
            )
    return load(output_dir)


def _check_special_tokens(special_tokens):
    if special_tokens is None:
        return list(DEFAULT_SPECIAL_TOKENS)
    if isinstance(special_tokens, str):
        special_tokens = [special_tokens]
    special_tokens = list(special_tokens)
    for token in special_tokens:
        if not isinstance(token, str) or not token:
            raise ValueError(
                f"Special tokens must be non-empty strings. Received: {token!r}"
            )
        # The in-graph splitter stands U+0001/U+0002 in for NUL (see
        # byte_pair_tokenizer._regex_split); control characters are no use
        # in a marker anyway.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
            raise ValueError(
                "Special tokens may not contain control characters. "
                f"Received: {token!r}"
            )
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(
            f"Special tokens must be unique. Received: {special_tokens!r}"
        )
    if END_TOKEN not in special_tokens:
        special_tokens.insert(0, END_TOKEN)
    return special_tokens


def _checked(documents):
    for document in documents:
        if not isinstance(document, str):
            raise TypeError(
                "documents must yield str. Received an item of type "
                f"{type(document).__name__}: {document!r:.80}"
            )
        yield document


def _metadata(kind, special_tokens, **extra):
    return {
        "format_version": files.FORMAT_VERSION,
        "kind": kind,
        "special_tokens": special_tokens,
        "end_token": END_TOKEN,
        "pad_token": PAD_TOKEN if PAD_TOKEN in special_tokens else END_TOKEN,
        **extra,
    }


# ---------------------------------------------------------------- BPE


def _train_bpe(documents, vocab_size, special_tokens, directory, show_progress):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import trainers

    from kerasllm.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    pattern, classes, unicode_version = default_split_pattern()
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tokenizer = Tokenizer(models.BPE())
    # Split with our RE2-safe pattern, then map bytes to GPT-2's alphabet
    # (use_regex=False: ByteLevel must not split again with its own regex).
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    # While training only, pieces longer than _MAX_PIECE_CHARS are cut: the
    # trainer's time grows with the square of a piece's length (2 MB of "x"
    # took many minutes), and no merge is longer than a cut piece anyway.
    cap = pre_tokenizers.Split(
        Regex(f"[\\s\\S]{{1,{_MAX_PIECE_CHARS}}}"), behavior="isolated"
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, cap, byte_level])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    # Count words on the way through, for the in-graph word cache.
    counts = collections.Counter()

    def counted(documents):
        budget = _CACHE_SAMPLE_CHARS
        for document in _checked(documents):
            if budget > 0:
                counts.update(piece for piece, _ in split.pre_tokenize_str(document))
                budget -= len(document)
            yield document

    tokenizer.train_from_iterator(
        _progress(counted(documents), show_progress), trainer=trainer
    )
    # Saved with the real pre-tokenizer: encoding never cuts words.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    if tokenizer.get_vocab_size() <= 256 + len(special_tokens):
        raise ValueError(
            "The corpus is empty or too small to learn any merge: got a "
            f"vocabulary of {tokenizer.get_vocab_size()} tokens."
        )
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer.model.save(str(directory))  # vocab.json, merges.txt

    # Cache: the most frequent words and their ids, from the model itself
    # (BPE on one word), so a cached word has exactly the ids HF gives it.
    byte_to_char = bytes_to_unicode()
    words = [
        word
        for word, count in counts.most_common(_CACHE_MAX_WORDS)
        if count >= _CACHE_MIN_COUNT
    ]
    cache = [
        [
            word,
            [
                token.id
                for token in tokenizer.model.tokenize(
                    "".join(byte_to_char[b] for b in word.encode("utf-8"))
                )
            ],
        ]
        for word in words
    ]
    files.write_json(directory / "word_cache.json", {"words": cache})
    files.write_json(
        directory / files.METADATA_FILE,
        _metadata(
            "bpe",
            special_tokens,
            split_pattern=pattern,
            split_classes=classes,
            unicode_version=unicode_version,
        ),
    )


# ---------------------------------------------------------------- SentencePiece


def _sentencepiece_chunks(documents):
    """Cut documents into chunks of at most `_SENTENCEPIECE_CHUNK_CHARS`, at line ends.

    Chunks keep their newlines, so "\\n" (and pieces ending in it) are learned.
    """
    for document in _checked(documents):
        chunk = []
        size = 0
        for line in document.splitlines(keepends=True):
            while len(line) > _SENTENCEPIECE_CHUNK_CHARS:
                if chunk:
                    yield "".join(chunk)
                    chunk, size = [], 0
                yield line[:_SENTENCEPIECE_CHUNK_CHARS]
                line = line[_SENTENCEPIECE_CHUNK_CHARS:]
            if size + len(line) > _SENTENCEPIECE_CHUNK_CHARS and chunk:
                yield "".join(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            yield "".join(chunk)


def _train_sentencepiece(
    documents, vocab_size, special_tokens, model_type, directory, show_progress
):
    import sentencepiece

    model = io.BytesIO()
    characters = set()

    def chunks():
        for chunk in _sentencepiece_chunks(documents):
            characters.update(chunk)
            yield chunk

    try:
        _run_sentencepiece_trainer(
            sentencepiece, _progress(chunks(), show_progress), model, model_type,
            vocab_size, special_tokens,
        )
    except RuntimeError as error:
        message = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        if "required_chars" in message or "Vocabulary size is smaller" in message:
            raise ValueError(
                f"vocab_size={vocab_size} is too small for this corpus: SentencePiece "
                f"keeps every one of its {len(characters):,} distinct characters as a "
                f"piece, plus {len(special_tokens) + 1} special tokens and 256 bytes. "
                "Use a larger vocab_size or kind='bpe'."
            ) from None
        if "empty" in message.lower() or not characters:
            raise ValueError("The corpus is empty: SentencePiece found no text to train on.") from None
        raise ValueError(f"SentencePiece training failed: {message}") from None
    (directory / "spm.model").write_bytes(model.getvalue())
    files.write_json(
        directory / files.METADATA_FILE, _metadata("sentencepiece", special_tokens)
    )


def _run_sentencepiece_trainer(
    sentencepiece, sentences, model, model_type, vocab_size, special_tokens
):
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model,
        model_type=model_type,
        vocab_size=vocab_size,
        # Decode must invert encode: no normalization, keep every space, no
        # dummy prefix, and bytes for characters outside the vocabulary.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        byte_fallback=True,
        character_coverage=1.0,
        allow_whitespace_only_pieces=True,
        # Our special tokens are user-defined symbols: matched in text, like
        # the BPE tokenizer's. No BOS/EOS/PAD controls of its own.
        user_defined_symbols=special_tokens,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        max_sentence_length=4 * _SENTENCEPIECE_CHUNK_CHARS,  # bytes
        input_sentence_size=_SENTENCEPIECE_MAX_CHUNKS,
        shuffle_input_sentence=True,
        # The unigram trainer cannot reach every vocab_size on a small
        # corpus; a smaller vocabulary is better than a failure.
        hard_vocab_limit=False,
        # Its INFO log is hundreds of lines; kerasllm shows its own progress.
        minloglevel=2,
    )


def _progress(documents, show):
    """Pass `documents` through, printing a plain line of progress now and then.

    Plain lines on stderr (no control codes), so a redirected log stays
    readable; the trainers' own bars draw only on a terminal.
    """
    if not show:
        yield from documents
        return
    import sys
    import time

    start = last = time.monotonic()
    count = size = 0
    for document in documents:
        count += 1
        size += len(document)
        now = time.monotonic()
        if now - last >= _PROGRESS_SECONDS:
            last = now
            print(
                f"[kerasllm tokenizer] read {count:,} documents, {size / 1e6:,.1f} M "
                f"characters ({now - start:,.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        yield document
    print(
        f"[kerasllm tokenizer] read {count:,} documents, {size / 1e6:,.1f} M characters; "
        "learning the vocabulary...",
        file=sys.stderr,
        flush=True,
    )
