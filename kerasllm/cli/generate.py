"""`kerasllm generate`: continue prompts with a trained model."""

import os
import sys
import json

from kerasllm.cli.common import CommandError, emit_json


def _generate(args):
    import kerasllm
    from kerasllm.generation import complete, stream

    if args.stream and args.json:
        raise CommandError("--stream and --json cannot be combined: --json prints one object at the end.")
    if not os.path.isdir(args.model):
        raise CommandError(f"--model must be a model directory. Received: {args.model!r}")
    try:
        if args.adapter:
            from kerasllm.finetune import load_with_adapter

            model = load_with_adapter(args.model, args.adapter)
        else:
            model = kerasllm.load(args.model)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    if model.tokenizer is None:
        raise CommandError(f"The model directory has no tokenizer. Received: --model {args.model!r}")
    options = {
        "max_new_tokens": args.max_new_tokens,
        "strategy": args.strategy,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "min_p": args.min_p,
        "repetition_penalty": args.repetition_penalty,
        "num_beams": args.num_beams,
        "seed": args.seed,
        "stop": args.stop or (),
        "truncate": args.truncate,
    }
    options = {key: value for key, value in options.items() if value is not None}
    try:
        if args.stream:
            for prompt in args.prompt:
                for piece in stream(model, prompt, **options):
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            return
        completions = complete(model, args.prompt, **options)
    except ValueError as error:
        raise CommandError(str(error)) from error
    if args.json:
        emit_json({"completions": [c.to_dict() for c in completions]})
        return
    for completion in completions:
        print(completion.prompt + completion.text)


def add_commands(subparsers):
    generate = subparsers.add_parser(
        "generate",
        help="Continue prompts with a trained model.",
        description=(
            "Generate text from a model directory (kerasllm.load): greedy, beam "
            "search or sampling, with stop strings and streaming. Prints each "
            "prompt followed by its continuation, or one JSON object with --json."
        ),
    )
    generate.add_argument("--model", required=True, help="Model directory.")
    generate.add_argument(
        "--adapter", help="LoRA adapter directory to put on the model (trained on that base)."
    )
    generate.add_argument(
        "--prompt", action="append", required=True, help="Prompt text (repeatable: one batch)."
    )
    generate.add_argument(
        "--strategy",
        default="greedy",
        choices=("greedy", "beam", "top_k", "top_p", "sample"),
        help="Decoding strategy. Default: greedy.",
    )
    generate.add_argument("--max-new-tokens", type=int, default=64, help="Default: 64.")
    generate.add_argument("--temperature", type=float, help="Sampling temperature (default 1).")
    generate.add_argument("--top-k", type=int, help="Keep the K most likely tokens (top_k: 50).")
    generate.add_argument("--top-p", type=float, help="Nucleus mass to keep (top_p: 0.9).")
    generate.add_argument("--min-p", type=float, help="Keep tokens at least this fraction as likely as the best.")
    generate.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeats.")
    generate.add_argument("--num-beams", type=int, help="Beams for --strategy beam (default 4).")
    generate.add_argument("--seed", type=int, help="Sampling seed (default: random).")
    generate.add_argument(
        "--stop", nargs="+", metavar="STR", help="Stop strings (not included in the output)."
    )
    generate.add_argument(
        "--truncate", choices=("left",), help="Drop a too-long prompt's oldest tokens."
    )
    generate.add_argument("--stream", action="store_true", help="Print text as it is generated.")
    generate.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    generate.set_defaults(func=_generate)
