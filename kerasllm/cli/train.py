"""`kerasllm pretrain` and `kerasllm evaluate`."""

from kerasllm.cli.common import CommandError, emit_json, run_training


def _pretrain(args):
    from kerasllm.training import pretrain

    result = run_training(args, pretrain)
    if result is None:
        return 1
    if args.json:
        emit_json(result)


def _evaluate(args):
    from kerasllm.training import evaluate

    try:
        metrics = evaluate(
            args.model,
            args.input or None,
            split=args.split,
            batch_size=args.batch_size,
            cache_dir=args.cache_dir,
        )
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    if args.json:
        emit_json(metrics)
        return
    what = args.input or f"the {args.split} split of {metrics['evaluated']['corpus']}"
    print(f"Evaluated {args.model} on {what}:")
    print(f"  {'tokens':<22} {metrics['num_tokens']:,} ({metrics['num_bytes']:,} bytes)")
    print(f"  {'loss (nats/token)':<22} {metrics['loss']:.4f}")
    print(f"  {'perplexity':<22} {metrics['perplexity']:.2f}")
    print(f"  {'bits per byte':<22} {metrics['bits_per_byte']:.4f}")
    if "unigram_bits_per_byte" in metrics:
        print(f"  {'unigram baseline':<22} {metrics['unigram_bits_per_byte']:.4f} bits per byte")


def add_commands(subparsers):
    pretrain = subparsers.add_parser(
        "pretrain",
        help="Pretrain a GPT on a corpus (resumable, with logs and checkpoints).",
        description=(
            "Train a tokenizer (or reuse one), tokenize the corpus, and train a "
            "GPT with model.fit: progress bar, validation loss/perplexity/"
            "bits-per-byte, CSV log, loss-curve PNG, TensorBoard, checkpoints, "
            "NaN/Inf guard. Writes OUTPUT/model, loadable with kerasllm.load. "
            "Config keys: docs/pretraining.md."
        ),
    )
    pretrain.add_argument(
        "--config", help="YAML config, e.g. recipes/configs/pretrain/tiny.yaml."
    )
    pretrain.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="Override a config key, e.g. --set steps=200 --set model.num_layers=2 "
        "(repeatable).",
    )
    pretrain.add_argument("--output", required=True, help="The run directory.")
    mode = pretrain.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="Continue the run in --output from its last checkpoint.",
    )
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="Start over, replacing the run in --output (never other files). The "
        "old run is deleted only when the new one completes.",
    )
    pretrain.add_argument(
        "--json", action="store_true", help="Print the result as one JSON object on stdout."
    )
    pretrain.set_defaults(func=_pretrain)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="Loss, perplexity and bits-per-byte of a model on held-out text.",
        description=(
            "Score every token of the text: loss (nats/token), perplexity, "
            "bits per UTF-8 byte (comparable across tokenizers) and the "
            "bits-per-byte of a unigram model of the training split, for scale."
        ),
    )
    evaluate.add_argument("--model", required=True, help="A model directory.")
    evaluate.add_argument(
        "--input",
        action="append",
        metavar="PATH",
        help="Text to evaluate on: a file, directory or glob (repeatable). "
        "Default: --split of the training corpus.",
    )
    evaluate.add_argument(
        "--split",
        default="test",
        choices=("val", "test"),
        help="Split of the training corpus to evaluate on. Defaults to test.",
    )
    evaluate.add_argument(
        "--batch-size", type=int, default=8, help="Windows per forward pass. Defaults to 8."
    )
    evaluate.add_argument(
        "--cache-dir", help="Keep the tokenized text here (default: a temporary directory)."
    )
    evaluate.add_argument(
        "--json", action="store_true", help="Print one JSON object on stdout."
    )
    evaluate.set_defaults(func=_evaluate)
