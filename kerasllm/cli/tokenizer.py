"""`kerasllm tokenizer`: train, encode, decode."""

from kerasllm.cli.common import (
    CommandError,
    check_utf8,
    corpus_arguments,
    corpus_from_args,
    data_errors,
    emit_json,
)


def _load_tokenizer(directory):
    from kerasllm.tokenizers import load

    try:
        return load(directory)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(f"--tokenizer: {error}") from error


def _tokenizer_train(args):
    from kerasllm.tokenizers import train_tokenizer

    try:
        tokenizer = train_tokenizer(
            corpus_from_args(args),
            kind=args.kind,
            vocab_size=args.vocab_size,
            output_dir=args.output,
            overwrite=args.overwrite,
            sentencepiece_model_type=args.model_type,
            show_progress=not args.json,
        )
    except (TypeError,) + data_errors() as error:
        raise CommandError(str(error)) from error
    summary = {
        "output": args.output,
        "kind": tokenizer.kind,
        "vocabulary_size": tokenizer.vocabulary_size,
        "special_tokens": tokenizer.special_tokens,
    }
    if args.json:
        emit_json(summary)
        return
    print(
        f"wrote a {tokenizer.kind} tokenizer with {tokenizer.vocabulary_size:,} "
        f"tokens to {args.output}"
    )


def _tokenizer_encode(args):
    for text in args.text:
        check_utf8(text, "--text")
    tokenizer = _load_tokenizer(args.tokenizer)
    ids = tokenizer.encode_batch(args.text)
    if args.json:
        emit_json({"ids": ids})
        return
    for row in ids:
        print(" ".join(map(str, row)))


def _tokenizer_decode(args):
    tokenizer = _load_tokenizer(args.tokenizer)
    rows = []
    for text in args.ids:
        try:
            rows.append([int(token) for token in text.replace(",", " ").split()])
        except ValueError as error:
            raise CommandError(
                "--ids expects integers separated by spaces or commas. "
                f"Received: --ids {text!r}"
            ) from error
    for row in rows:
        for token in row:
            if not 0 <= token < tokenizer.vocabulary_size:
                raise CommandError(
                    f"Token id out of range [0, {tokenizer.vocabulary_size}). "
                    f"Received: {token}"
                )
    texts = [tokenizer.decode(row) for row in rows]
    if args.json:
        emit_json({"texts": texts})
        return
    for text in texts:
        print(text)


def add_commands(subparsers):
    tokenizer = subparsers.add_parser(
        "tokenizer", help="Train tokenizers; encode and decode text."
    )
    tokenizer_sub = tokenizer.add_subparsers(dest="tokenizer_command", required=True)

    train = tokenizer_sub.add_parser(
        "train",
        help="Train a byte-level BPE or SentencePiece tokenizer.",
        description=(
            "Train a tokenizer on a corpus (streamed) and write its directory. "
            "Reads the train split (90%) unless --split says otherwise."
        ),
    )
    corpus_arguments(train, split_default="train")
    train.add_argument(
        "--vocab-size", type=int, required=True, help="Number of ids, specials included."
    )
    train.add_argument(
        "--kind",
        default="bpe",
        help="bpe (byte-level, Hugging Face) or sentencepiece. Defaults to bpe.",
    )
    train.add_argument(
        "--model-type",
        default="unigram",
        help="SentencePiece model: unigram or bpe. Defaults to unigram.",
    )
    train.add_argument("--output", required=True, help="The tokenizer directory to write.")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing tokenizer directory (never a directory of other files).",
    )
    train.set_defaults(func=_tokenizer_train)

    encode = tokenizer_sub.add_parser(
        "encode", help="Print the token ids of texts.", description="Encode texts."
    )
    encode.add_argument("--tokenizer", required=True, help="A tokenizer directory.")
    encode.add_argument(
        "--text", action="append", required=True, help="A text to encode (repeatable)."
    )
    encode.add_argument(
        "--json", action="store_true", help='Print {"ids": [[...], ...]} on stdout.'
    )
    encode.set_defaults(func=_tokenizer_encode)

    decode = tokenizer_sub.add_parser(
        "decode", help="Print the text of token ids.", description="Decode ids."
    )
    decode.add_argument("--tokenizer", required=True, help="A tokenizer directory.")
    decode.add_argument(
        "--ids",
        action="append",
        required=True,
        help='Ids of one text, e.g. "1 2 3" (repeatable).',
    )
    decode.add_argument(
        "--json", action="store_true", help='Print {"texts": [...]} on stdout.'
    )
    decode.set_defaults(func=_tokenizer_decode)
