"""`kerasllm finetune`: SFT, partial fine-tuning, LoRA and classification heads."""

from kerasllm.cli.common import emit_json, run_training


def _finetune(args):
    from kerasllm.finetune import DataError, finetune

    result = run_training(args, finetune, errors=(DataError, ValueError))
    if result is None:
        return 1
    if args.json:
        emit_json(result)
        return
    trainable = result["trainable"]
    print(f"method      {result['method']} ({trainable['trainable']:,} of {trainable['total']:,} "
          f"parameters trained, {trainable['fraction']:.2%})")
    print(f"steps       {result['step']} ({result['step_seconds']} s/step)")
    data = result["data"]
    print(f"data        {data['examples']:,} examples; {data['truncated']} truncated, "
          f"{data['dropped_too_long']} dropped as too long, {data['skipped_bad_lines']} bad lines skipped")
    if "tasks" in result:
        accuracies = ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in result["tasks"]["tasks"].items())
        print(f"tasks       mean {result['tasks']['mean_accuracy']:.3f} ({accuracies})")
    if "model_dir" in result:
        print(f"model       {result['model_dir']}   (kerasllm.load, generate, evaluate-tasks, export)")
    else:
        print(f"adapter     {result['adapter_dir']}   (kerasllm lora merge --base BASE "
              f"--adapter {result['adapter_dir']} --output DIR)")


def add_commands(subparsers):
    finetune = subparsers.add_parser(
        "finetune",
        help="Fine-tune a model directory (full, partial, LoRA) on JSONL or the built-in tasks.",
        description=(
            "Fine-tune a model directory from a YAML config "
            "(recipes/configs/finetune/{sft,partial,lora}.yaml): JSONL in the "
            "prompt-completion, messages, text or text+label formats, or the "
            "built-in task suite; completion-only loss; checkpoints, resume, "
            "log.csv, loss.png, TensorBoard. Writes OUTPUT/model (full, partial) "
            "or OUTPUT/adapter (lora). Config keys: docs/finetuning.md."
        ),
    )
    finetune.add_argument("--config", help="YAML config, e.g. recipes/configs/finetune/sft.yaml.")
    finetune.add_argument("--output", required=True, help="Run directory, e.g. runs/sft.")
    finetune.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="Override a config key (repeatable), e.g. --set steps=200 --set lora.rank=4.",
    )
    mode = finetune.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="Continue the run in --output.")
    mode.add_argument("--overwrite", action="store_true", help="Delete --output first.")
    finetune.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    finetune.set_defaults(func=_finetune)
