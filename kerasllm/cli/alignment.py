"""`kerasllm reward`, `dpo`, `grpo` and `ppo`: the alignment runs."""

from kerasllm.cli.common import emit_json, run_training

COMMANDS = {
    "reward": (
        "Train a reward model (SFT backbone + scalar head, Bradley-Terry loss) on preference pairs.",
        "recipes/configs/alignment/reward.yaml",
    ),
    "dpo": (
        "Direct preference optimization (sigmoid or IPO) of a model directory on preference pairs.",
        "recipes/configs/alignment/dpo.yaml",
    ),
    "grpo": (
        "Group relative policy optimization against reward functions (the task verifiers).",
        "recipes/configs/alignment/grpo.yaml",
    ),
    "ppo": (
        "PPO with a value head, a frozen reference and a KL penalty, against a reward model or functions.",
        "recipes/configs/alignment/ppo.yaml",
    ),
}


def _function(name):
    if name == "reward":
        from kerasllm.alignment.reward import reward

        return reward
    if name == "dpo":
        from kerasllm.alignment.dpo import dpo

        return dpo
    if name == "grpo":
        from kerasllm.alignment.grpo import grpo

        return grpo
    from kerasllm.alignment.ppo import ppo

    return ppo


def _run(args):
    from kerasllm.alignment.data import PreferenceDataError

    result = run_training(args, _function(args.command), errors=(PreferenceDataError, ValueError))
    if result is None:
        return 1
    if args.json:
        emit_json(result)
    else:
        print(f"Model: {result['model_dir']}")


def add_commands(subparsers):
    for name, (help_text, example) in COMMANDS.items():
        parser = subparsers.add_parser(
            name,
            help=help_text,
            description=f"{help_text} Writes OUTPUT/model (a model directory), log.csv, "
            "curves.png, TensorBoard logs and checkpoints. Config keys: docs/alignment.md.",
        )
        parser.add_argument("--config", help=f"YAML config, e.g. {example}.")
        parser.add_argument("--output", required=True, help="The run directory, e.g. runs/" + name + ".")
        parser.add_argument(
            "--set", action="append", metavar="KEY=VALUE",
            help="Override a config key (repeatable), e.g. --set base=runs/sft/model.",
        )
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--resume", action="store_true", help="Continue the run in --output.")
        group.add_argument("--overwrite", action="store_true", help="Delete --output and start over.")
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
        parser.set_defaults(func=_run)
