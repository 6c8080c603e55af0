"""`kerasllm model`: inspect presets."""

from kerasllm.cli.common import CommandError, emit_json, parse_set_overrides


def _model_summary(args):
    from kerasllm.models import GPT, GPTConfig

    overrides = parse_set_overrides(args.set)
    try:
        config = GPTConfig.from_preset(args.preset, **overrides)
    except (KeyError, ValueError, TypeError) as error:
        raise CommandError(str(error).strip("'\"")) from error
    model = GPT(config)
    summary = {
        "preset": args.preset,
        "config": config.to_dict(),
        "parameters": model.count_params(),
        "parameters_analytic": config.num_parameters(),
        "non_embedding_parameters": config.num_parameters(
            include_embeddings=False
        ),
        "flops_per_token": config.flops_per_token(),
    }
    if args.json:
        emit_json(summary)
        return
    print(f"GPT preset {args.preset!r}")
    for key, value in summary["config"].items():
        print(f"  {key:<20} {value}")
    print(f"  {'parameters':<20} {summary['parameters']:,}")
    print(
        f"  {'non-embedding':<20} {summary['non_embedding_parameters']:,}"
    )
    print(f"  {'train FLOPs/token':<20} {summary['flops_per_token']:,}")
    if args.layers:
        model.summary()


def add_commands(subparsers):
    model = subparsers.add_parser("model", help="Inspect model presets.")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    summary = model_sub.add_parser(
        "summary",
        help="Print a preset's configuration and parameter count.",
        description=(
            "Build the GPT for a preset (with --set overrides) and report its "
            "configuration, parameter count and training FLOPs per token."
        ),
    )
    summary.add_argument(
        "--preset", required=True, help="Preset name: tiny, baby, gpt2-124m."
    )
    summary.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="Override a GPTConfig field, e.g. --set num_layers=4 (repeatable).",
    )
    summary.add_argument(
        "--layers", action="store_true", help="Also print the Keras layer table."
    )
    summary.add_argument(
        "--json", action="store_true", help="Print one JSON object on stdout."
    )
    summary.set_defaults(func=_model_summary)
