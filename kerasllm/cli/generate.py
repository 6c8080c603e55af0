"""`kerasllm generate`: continue prompts with a trained model.

The sampling flags are made from `GenerationOptions`' fields: their names,
types, choices, defaults and help text live there only.
"""

import argparse
import dataclasses
import os
import sys
import typing

from kerasllm.cli.common import CommandError, check_utf8, emit_json

# `GenerationOptions` fields offered as flags (stop_token_ids is set by --chat).
GENERATION_FLAGS = (
    "max_new_tokens",
    "strategy",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "num_beams",
    "length_penalty",
    "early_stopping",
    "seed",
    "stop",
    "truncate",
    "valid_utf8",
)


def add_generation_flags(parser, names=GENERATION_FLAGS, help_prefix=""):
    """Add `--kebab-name` flags for `GenerationOptions` fields to `parser`.

    Each flag defaults to `None` (so the options object applies its own
    default, shown in the help); `options_from_args` reads them back.
    """
    from kerasllm.generation.generation_options import GenerationOptions

    fields = {field.name: field for field in dataclasses.fields(GenerationOptions)}
    for name in names:
        field = fields[name]
        flag = "--" + name.replace("_", "-")
        kind = field.type
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        help_text = help_prefix + field.metadata["help"]
        if field.default not in (None, ()):
            help_text += f" Default: {field.default}."
        kwargs = dict(default=None, help=help_text, dest=name)
        choices = field.metadata.get("choices")
        if choices:
            kwargs["choices"] = [c for c in choices if c is not None]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind is tuple:
            parser.add_argument(flag, nargs="+", metavar="STR", **kwargs)
        else:
            parser.add_argument(flag, type=kind, **kwargs)


def options_from_args(args, names=GENERATION_FLAGS):
    """The flags given on the command line, as `GenerationOptions` keywords."""
    values = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def _chat_prompts(model, args):
    """Each --prompt as a user turn (after --system), rendered by the chat template."""
    from kerasllm.tokenizers.chat_template import IM_END, render_chat

    try:
        end_of_turn = model.tokenizer.token_to_id(IM_END)
    except KeyError as error:
        raise CommandError(
            f"--chat needs a tokenizer with the chat tokens; this one has no {IM_END}. "
            f"Received: --model {args.model!r}"
        ) from error
    system = [{"role": "system", "content": args.system}] if args.system else []
    prompts = [
        render_chat(system + [{"role": "user", "content": p}], add_generation_prompt=True)
        for p in args.prompt
    ]
    return prompts, end_of_turn


def _generate(args):
    import kerasllm
    from kerasllm.generation import complete, stream
    from kerasllm.tokenizers.chat_template import ChatFormatError

    if args.stream and args.json:
        raise CommandError("--stream and --json cannot be combined: --json prints one object at the end.")
    if args.system and not args.chat:
        raise CommandError("--system applies to --chat only. Received: --system without --chat")
    for flag, texts in (("--prompt", args.prompt), ("--system", [args.system or ""])):
        for text in texts:
            check_utf8(text, flag)
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
    options = options_from_args(args)
    prompts = args.prompt
    if args.chat:
        try:
            prompts, end_of_turn = _chat_prompts(model, args)
        except ChatFormatError as error:
            raise CommandError(str(error)) from error
        options["stop_token_ids"] = (end_of_turn,)
    try:
        if args.stream:
            for prompt in prompts:
                for piece in stream(model, prompt, **options):
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            return
        completions = complete(model, prompts, **options)
    except ValueError as error:
        raise CommandError(str(error)) from error
    if args.json:
        emit_json({"completions": [c.to_dict() for c in completions]})
        return
    for completion in completions:
        # A chat prints the answer alone; a completion continues its prompt.
        print(completion.text if args.chat else completion.prompt + completion.text)


def add_commands(subparsers):
    generate = subparsers.add_parser(
        "generate",
        help="Continue prompts with a trained model.",
        description=(
            "Generate text from a model directory (kerasllm.load): greedy, beam "
            "search or sampling, with stop strings and streaming. Prints each "
            "prompt followed by its continuation (with --chat, the answer), or "
            "one JSON object with --json. The text is always valid UTF-8."
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
        "--chat",
        action="store_true",
        help="Each --prompt is a user message: render it with the chat template "
        "and stop at the end of the assistant's turn (<|im_end|>).",
    )
    generate.add_argument("--system", help="--chat: a system message before each user message.")
    add_generation_flags(generate)
    generate.add_argument("--stream", action="store_true", help="Print text as it is generated.")
    generate.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    generate.set_defaults(func=_generate)
