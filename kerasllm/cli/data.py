"""`kerasllm data`: corpus statistics, cleaning and token caches."""

import sys

from kerasllm.cli.common import CommandError, emit_json, corpus_arguments, corpus_from_args, corpus_spec, data_errors


def _data_stats(args):
    from kerasllm.data import corpus_statistics

    try:
        stats = corpus_statistics(corpus_from_args(args), languages=args.languages)
    except data_errors() as error:
        raise CommandError(str(error)) from error
    stats = {"input": args.input, "split": args.split, **stats}
    if args.json:
        emit_json(stats)
        return
    for key, value in stats.items():
        shown = f"{value:,}" if isinstance(value, int) else value
        if isinstance(value, dict):  # language shares
            shown = ", ".join(f"{k} {v:.1%}" for k, v in value.items())
        print(f"  {key:<20} {shown}")


def _data_clean(args):
    import json as json_module

    from kerasllm.data import CleaningConfig, atomic_path, clean_documents
    from kerasllm.data.atomic import check_output_file

    report_path = args.report or _report_path(args.output)
    try:
        # Both outputs are checked before the corpus is read.
        check_output_file(args.output, overwrite=args.overwrite)
        check_output_file(report_path, overwrite=args.overwrite)
        config = CleaningConfig(
            normalization=None if args.normalization == "none" else args.normalization,
            min_chars=args.min_chars,
            max_chars=args.max_chars,
            exact_dedup=not args.no_exact_dedup,
            near_dedup=not args.no_near_dedup,
            near_dedup_threshold=args.near_dedup_threshold,
            **_filter_options(args),
        )
        documents, report = clean_documents(corpus_from_args(args), config, stream=True)
        # Streamed to a temporary file and renamed at the end: an error in
        # the middle of the corpus leaves no half-written output.
        with atomic_path(args.output, overwrite=args.overwrite) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                for document in documents:
                    f.write(json_module.dumps({"text": document}, ensure_ascii=False) + "\n")
        report.save(report_path)
    except data_errors() as error:
        raise CommandError(str(error)) from error
    if args.json:
        emit_json({"output": args.output, "report": report_path, **report.to_dict()})
        return
    print(report)
    print(f"wrote {report.documents_out:,} documents to {args.output}, report {report_path}")


def _filter_options(args):
    """CleaningConfig fields of the opt-in filters, from their flags and --set."""
    from kerasllm.cli.common import parse_set_overrides

    options = {
        "pii": args.pii,
        "quality": args.quality,
        "inappropriate": args.inappropriate or args.inappropriate_words is not None,
        "inappropriate_words": args.inappropriate_words,
        "inappropriate_action": args.inappropriate_action,
    }
    if args.languages:
        options["languages"] = args.languages
        options["language_threshold"] = args.language_threshold
    overrides = parse_set_overrides(args.set)
    import dataclasses

    from kerasllm.data import CleaningConfig

    fields = [field.name for field in dataclasses.fields(CleaningConfig)]
    for key in overrides:
        if key not in fields:
            raise CommandError(f"--set: CleaningConfig has no field {key!r}. Fields: {fields}")
    options.update(overrides)
    return options


def _data_cache(args):
    from kerasllm.data import CleaningConfig, TokenCache
    from kerasllm.tokenizers import load

    from kerasllm.data.atomic import check_output_directory

    spec, reader_kwargs = corpus_spec(args)
    try:
        # A cache directory is rebuilt in place; any other directory is not ours.
        check_output_directory(args.output, overwrite=True, marker="token_cache.json", what="cache")
        tokenizer = load(args.tokenizer)
        cache = TokenCache.get_or_build(
            spec,
            tokenizer,
            args.output,
            split=args.split,
            cleaning=CleaningConfig() if args.clean else None,
            # A redirected stderr gets no bar: tqdm redraws with carriage returns.
            show_progress=not args.json and sys.stderr.isatty(),
            **reader_kwargs,
        )
    except data_errors() as error:
        raise CommandError(str(error)) from error
    if args.json:
        emit_json({"directory": args.output, **cache.metadata})
        return
    print(cache)
    print(f"  bytes per token  {cache.bytes_per_token:.3f}")


def _report_path(output):
    base = output[: -len(".jsonl")] if output.endswith(".jsonl") else output
    return base + ".report.json"


def add_commands(subparsers):
    data = subparsers.add_parser("data", help="Inspect and clean corpora.")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    stats = data_sub.add_parser(
        "stats",
        help="Count documents, characters, bytes and lines of a corpus.",
        description="Read a corpus (streamed) and report its size.",
    )
    corpus_arguments(stats)
    stats.add_argument(
        "--languages",
        action="store_true",
        help="Identify each document's language (py3langid) and show the shares.",
    )
    stats.set_defaults(func=_data_stats)

    clean = data_sub.add_parser(
        "clean",
        help="Normalize, filter and deduplicate a corpus into a JSONL file.",
        description=(
            "Clean a corpus (Unicode normalization, control characters, "
            "whitespace, length, repeated lines, exact and near-duplicate "
            "removal), write the kept documents as JSONL ({\"text\": ...} per "
            "line) and a JSON report of documents in/out per step."
        ),
    )
    corpus_arguments(clean)
    clean.add_argument("--output", required=True, help="The cleaned .jsonl file to write.")
    clean.add_argument(
        "--report", help="Where to write the JSON report (default: OUTPUT.report.json)."
    )
    clean.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace existing output and report files (regular files only).",
    )
    clean.add_argument(
        "--normalization",
        default="NFC",
        choices=["NFC", "NFKC", "none"],
        help="Unicode normalization (default: NFC).",
    )
    clean.add_argument("--min-chars", type=int, default=1, help="Drop shorter documents.")
    clean.add_argument("--max-chars", type=int, help="Drop longer documents.")
    clean.add_argument(
        "--near-dedup-threshold",
        type=float,
        default=0.8,
        help="Jaccard similarity of near duplicates (default: 0.8).",
    )
    clean.add_argument("--no-exact-dedup", action="store_true", help="Keep exact duplicates.")
    clean.add_argument("--no-near-dedup", action="store_true", help="Keep near duplicates.")
    clean.add_argument(
        "--pii",
        action="store_true",
        help="Replace e-mail addresses, phone numbers, IPs and card numbers with placeholders.",
    )
    clean.add_argument(
        "--languages",
        help="Keep only these languages (ISO 639-1, comma-separated, e.g. ja,en).",
    )
    clean.add_argument(
        "--language-threshold",
        type=float,
        default=0.5,
        help="Least probability of the identified language (default: 0.5).",
    )
    clean.add_argument(
        "--quality",
        action="store_true",
        help="Drop documents failing the C4/Gopher-style heuristics (thresholds: --set).",
    )
    clean.add_argument(
        "--inappropriate",
        action="store_true",
        help="Drop documents with words of the default English/Japanese list.",
    )
    clean.add_argument(
        "--inappropriate-words",
        metavar="FILE",
        help="A word/regex list (one a line, re:PATTERN) added to the default list.",
    )
    clean.add_argument(
        "--inappropriate-action",
        default="drop",
        choices=["drop", "mask"],
        help="Drop the document (default) or mask the matches with *.",
    )
    clean.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="Any CleaningConfig field, e.g. --set quality_min_chars=200 (repeatable).",
    )
    clean.set_defaults(func=_data_clean)

    cache = data_sub.add_parser(
        "cache",
        help="Tokenize a corpus into a memory-mapped token cache (reused if unchanged).",
        description=(
            "Tokenize a corpus with a trained tokenizer into OUTPUT "
            "(tokens.npy + token_cache.json). A cache made from the same "
            "tokenizer, corpus and options is reused, not rebuilt."
        ),
    )
    corpus_arguments(cache)
    cache.add_argument("--tokenizer", required=True, help="A tokenizer directory.")
    cache.add_argument("--output", required=True, help="The cache directory.")
    cache.add_argument(
        "--clean", action="store_true", help="Clean with the default CleaningConfig first."
    )
    cache.set_defaults(func=_data_cache)
