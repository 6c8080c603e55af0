"""`kerasllm tasks make` and `kerasllm evaluate-tasks`: the built-in verifiable task suite."""

import os
import sys

from kerasllm.cli.common import CommandError, emit_json


def _make(args):
    from kerasllm.tasks import make_task_files

    if args.sample_from:  # checked before anything is written
        if not os.path.isdir(args.sample_from):
            raise CommandError(f"--sample-from must be a model directory. Received: {args.sample_from!r}")
        for flag, value, least in (("--samples", args.samples, 2), ("--pairs-per-prompt", args.pairs_per_prompt, 1),
                                   ("--max-new-tokens", args.max_new_tokens, 1)):
            if value < least:
                raise CommandError(f"{flag} must be at least {least}. Received: {flag} {value}")
    try:
        result = make_task_files(
            args.output, args.tasks, train=args.train, test=args.test, seed=args.seed,
            format=args.format, preferences=args.preferences,
        )
    except ValueError as error:
        raise CommandError(str(error)) from error
    if args.sample_from:
        _sample_pairs(args, result)
    if args.json:
        emit_json(result)
        return
    for name, path in result["files"].items():
        print(f"{path}: {result['counts'][name]:,} records")


def _sample_pairs(args, result):
    """`sampled_preferences.jsonl`: pairs of the model's own right and wrong
    answers to the training prompts (`kerasllm.alignment.sample_preferences`)."""
    import json
    import pathlib

    from kerasllm.alignment import sample_preferences
    from kerasllm.data import atomic_write_json
    from kerasllm.tasks import write_jsonl

    output = pathlib.Path(result["output"])
    with open(result["files"]["train"], encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    print(f"Sampling {args.samples} answers to each of {len(records):,} training prompts from "
          f"{args.sample_from} ...", file=sys.stderr, flush=True)
    try:
        pairs = sample_preferences(args.sample_from, records, samples=args.samples,
                                   per_prompt=args.pairs_per_prompt, max_new_tokens=args.max_new_tokens,
                                   seed=args.seed, verbose=0 if args.json else 1)
    except ValueError as error:
        raise CommandError(str(error)) from error
    result["files"]["sampled_preferences"] = str(write_jsonl(output / "sampled_preferences.jsonl", pairs))
    result["counts"]["sampled_preferences"] = len(pairs)
    manifest = json.loads((output / "tasks.json").read_text(encoding="utf-8"))
    manifest["sampled_preferences"] = {"model": args.sample_from, "samples": args.samples,
                                       "pairs_per_prompt": args.pairs_per_prompt,
                                       "max_new_tokens": args.max_new_tokens, "judge": "tasks.verify"}
    atomic_write_json(output / "tasks.json", manifest, sort_keys=False)


def _evaluate(args):
    import kerasllm
    from kerasllm.tasks import DEFAULT_TEST, evaluate_tasks, task_names

    if not os.path.isdir(args.model):
        raise CommandError(f"--model must be a model directory. Received: {args.model!r}")
    try:
        tasks = task_names(args.tasks)
        model = kerasllm.load(args.model)
        if args.adapter:
            from kerasllm.finetune.lora import load_adapter

            load_adapter(model, args.adapter)
        result = evaluate_tasks(model, tasks, test=args.test or DEFAULT_TEST, seed=args.seed,
                                format=args.format)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    if args.json:
        emit_json(result)
        return
    for name, stats in result["tasks"].items():
        print(f"{name:<10} {stats['accuracy']:.3f}  (n={stats['n']})")
    print(f"{'mean':<10} {result['mean_accuracy']:.3f}")


def add_commands(subparsers):
    from kerasllm.tasks.splits import DEFAULT_TEST, DEFAULT_TRAIN, FORMATS

    tasks = subparsers.add_parser(
        "tasks",
        help="The built-in verifiable task suite: write train/test JSONL.",
        description="Generated instruction tasks whose answers a program checks (EN + JA).",
    )
    commands = tasks.add_subparsers(dest="tasks_command", metavar="COMMAND", required=True)
    make = commands.add_parser(
        "make",
        help="Write train.jsonl and test.jsonl (and preferences.jsonl).",
        description=(
            "Write deterministic train/test splits of the task suite (no test prompt in "
            "train); records carry 'task' and 'answer' for kerasllm.tasks.verify. With "
            "--preferences, also {prompt, chosen, rejected} pairs over the training prompts."
        ),
    )
    make.add_argument("--output", required=True, help="Directory for the JSONL files.")
    make.add_argument("--tasks", help="Comma-separated task names (default: all): "
                      "add,larger,reverse,sort,count,katakana,kansuji.")
    make.add_argument("--train", type=int, default=DEFAULT_TRAIN, help=f"Training examples per task (default {DEFAULT_TRAIN}).")
    make.add_argument("--test", type=int, default=DEFAULT_TEST, help=f"Test examples per task (default {DEFAULT_TEST}).")
    make.add_argument("--format", choices=FORMATS, default="messages", help="Record format (default messages).")
    make.add_argument("--seed", type=int, default=0, help="Split seed (default 0).")
    make.add_argument("--preferences", action="store_true", help="Also write preferences.jsonl.")
    make.add_argument("--sample-from", metavar="MODEL_DIR",
                      help="Also write sampled_preferences.jsonl: this model's own answers to the training "
                           "prompts, a right one (by the task's verifier) paired with a wrong one; the pairs "
                           "a reward model or DPO learns most from.")
    make.add_argument("--samples", type=int, default=16, help="With --sample-from: answers per prompt (default 16).")
    make.add_argument("--pairs-per-prompt", type=int, default=4,
                      help="With --sample-from: most pairs per prompt (default 4).")
    make.add_argument("--max-new-tokens", type=int, default=16,
                      help="With --sample-from: most tokens per answer (default 16).")
    make.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    make.set_defaults(func=_make)

    evaluate = subparsers.add_parser(
        "evaluate-tasks",
        help="Exact-match accuracy of a model on the task suite's test split.",
        description=(
            "Answer the test prompts greedily, in batches, through the compiled generator, "
            "and print the accuracy per task and the mean."
        ),
    )
    evaluate.add_argument("--model", required=True, help="Model directory.")
    evaluate.add_argument("--adapter", help="A LoRA adapter directory to load onto the model.")
    evaluate.add_argument("--tasks", help="Comma-separated task names (default: all).")
    evaluate.add_argument("--test", type=int, help=f"Test examples per task (default {DEFAULT_TEST}).")
    evaluate.add_argument("--seed", type=int, default=0, help="The split's seed (default 0).")
    evaluate.add_argument("--format", choices=FORMATS,
                          help="Prompt format (default: the one the model was fine-tuned with).")
    evaluate.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    evaluate.set_defaults(func=_evaluate)
