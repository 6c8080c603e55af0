"""`kerasllm lora merge`: fold a LoRA adapter into its base, a plain model directory."""

import os

from kerasllm.cli.common import CommandError, emit_json


def _merge(args):
    import kerasllm
    from kerasllm.finetune import load_with_adapter, merge_lora

    for flag, path in (("--base", args.base), ("--adapter", args.adapter)):
        if not os.path.isdir(path):
            raise CommandError(f"{flag} must be a directory. Received: {path!r}")
    try:
        model = load_with_adapter(args.base, args.adapter)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    merged = merge_lora(model)
    metadata = dict(model.metadata)
    metadata["merged_lora"] = {
        "adapter": os.path.abspath(args.adapter),
        **{key: merged[key] for key in ("rank", "alpha", "targets", "layers")},
    }
    try:
        path = kerasllm.save(model, args.output, metadata=metadata, overwrite=args.overwrite)
    except OSError as error:  # an existing output (without --overwrite), a write error
        raise CommandError(str(error)) from error
    report = {"output": str(path), "rank": merged["rank"], "alpha": merged["alpha"],
              "layers": len(merged["layers"])}
    if args.json:
        emit_json(report)
    else:
        print(
            f"Merged rank-{merged['rank']} adapter ({len(merged['layers'])} layers) "
            f"into {path}"
        )


def add_commands(subparsers):
    lora = subparsers.add_parser(
        "lora",
        help="LoRA adapters: merge one into its base model.",
        description="Work with LoRA adapters saved by fine-tuning (see docs/finetuning.md).",
    )
    commands = lora.add_subparsers(dest="lora_command", metavar="COMMAND", required=True)
    merge = commands.add_parser(
        "merge",
        help="Fold an adapter into its base: a plain model directory.",
        description=(
            "Load the base model directory, put the adapter on it (refused if it "
            "was trained on another base), fold W + (alpha/r) A B into each "
            "kernel and write a plain model directory that loads, generates and "
            "exports like any other."
        ),
    )
    merge.add_argument("--base", required=True, help="Base model directory.")
    merge.add_argument("--adapter", required=True, help="Adapter directory.")
    merge.add_argument("--output", required=True, help="Model directory to write.")
    merge.add_argument("--overwrite", action="store_true", help="Replace an existing output.")
    merge.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    merge.set_defaults(func=_merge)
