"""The `kerasllm` command: one entry point, one subcommand per job.

Each subcommand is a thin layer over a public Python function (the same one
the recipes call). Commands that report figures accept `--json` and then print
exactly one JSON object on stdout; progress and logs go to stderr.

Usage:
    kerasllm --help
    kerasllm --version
    kerasllm model summary --preset gpt2-124m --json
    kerasllm model summary --preset tiny --set num_layers=4 --set position=rope

Layout: one module per command group (`kerasllm/cli/<group>.py`), each with
`add_commands(subparsers)` that adds the group's parsers (each with
`set_defaults(func=...)`); list the module in `COMMAND_GROUPS` below. Shared
helpers (errors, `--json`, `--set`, corpus flags) live in `common.py`. Import
heavy modules inside the handler, not at the top, so `kerasllm --help` stays
fast.
"""

import argparse
import importlib

from kerasllm.cli.common import CommandError, emit_json, parse_set_overrides
from kerasllm.cli.quiet import quiet_tensorflow_startup
from kerasllm.data.atomic import OutputError, OutputExistsError
from kerasllm.version import __version__

__all__ = ["CommandError", "build_parser", "emit_json", "main", "parse_set_overrides"]

# In the order `kerasllm --help` lists them.
COMMAND_GROUPS = [
    "model",
    "data",
    "tokenizer",
    "train",
    "finetune",
    "tasks",
    "alignment",
    "export",
    "generate",
    "serve",
    "feedback",
    "lora",
    "route",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kerasllm",
        description=(
            "kerasllm: data, tokenizers, GPT models, pretraining, fine-tuning, "
            "alignment, generation, export and serving with Keras 3."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"kerasllm {__version__}"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        importlib.import_module(f"kerasllm.cli.{group}").add_commands(subparsers)
    return parser


def main(argv=None):
    # TensorFlow's C++ start-up chatter (CUDA probes on a CPU machine) is
    # not for the user of a CLI.
    quiet_tensorflow_startup()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except CommandError as error:
        parser.exit(2, f"kerasllm: error: {error}\n")
    except OutputExistsError as error:
        # A refused output: the user passes --overwrite or picks another path.
        parser.exit(2, f"kerasllm: error: {error}\n")
    except OutputError as error:
        # A failed write (disk full, read-only, no permission): one line.
        parser.exit(1, f"kerasllm: error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "kerasllm: interrupted\n")
    return result or 0
