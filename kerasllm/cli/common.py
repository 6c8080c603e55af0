"""Shared parts of the `kerasllm` command groups: errors, JSON output, `--set`, corpus flags."""

import json
import sys


class CommandError(Exception):
    """A user-facing error: printed as `kerasllm: error: ...`, exit status 2."""


def emit_json(obj):
    """Print one JSON object on stdout (the `--json` contract)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
    sys.stdout.flush()


def parse_set_overrides(pairs):
    """Parse `--set key=value` pairs into a dict, values read as YAML scalars.

    `--set num_layers=4` gives the int 4, `--set dropout=0.1` a float,
    `--set tie_embeddings=false` a bool, `--set norm=rmsnorm` a string,
    `--set learning_rate=3e-4` a float.
    """
    import yaml

    from kerasllm.training.config import load_yaml

    overrides = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise CommandError(
                f"--set expects key=value. Received: {pair!r}"
            )
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise CommandError(f"--set has an empty key. Received: {pair!r}")
        try:
            value = load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        overrides[key] = value
    return overrides





def check_utf8(text, flag):
    """Raise `CommandError` unless `text` (from argv) is valid UTF-8.

    Python keeps undecodable argv bytes as lone surrogates; no tokenizer can
    encode them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raw = text.encode("utf-8", "surrogateescape")
        raise CommandError(
            f"{flag} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset "
            f"{error.start}). Expected UTF-8 text. Received: {raw!r:.80}"
        ) from None
    return text


def corpus_arguments(parser, split_default="all"):
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help=(
            "A built-in corpus (python-stdlib) or files, directories, glob "
            "patterns; .jsonl and .gz are read as such."
        ),
    )
    from kerasllm.data.splits import MIN_DOCUMENTS

    parser.add_argument(
        "--split",
        default=split_default,
        choices=["train", "val", "test", "all"],
        help="Which split: 90/5/5 by file for built-ins; for your own files by "
        f"document, or by byte range when there are fewer than {MIN_DOCUMENTS} documents "
        f"(docs/data.md#splits). Defaults to {split_default}.",
    )
    parser.add_argument(
        "--text-unit",
        default="file",
        choices=["file", "paragraph", "line"],
        help="One document of a plain text file: the whole file (default), "
        "a paragraph (blocks between blank lines) or a line.",
    )
    parser.add_argument(
        "--html",
        default="auto",
        choices=["auto", "always", "never"],
        help="Extract the text of HTML: auto (.html/.htm/.xhtml files, default), "
        "always (also JSONL fields and files without a suffix) or never.",
    )
    parser.add_argument("--pattern", help="File-name pattern inside directories, e.g. '*.txt'.")
    parser.add_argument(
        "--jsonl-field", default="text", help="JSONL field holding the text (default: text)."
    )
    parser.add_argument(
        "--errors",
        default="strict",
        choices=["strict", "replace", "ignore"],
        help="Undecodable bytes: fail with the offset (default), or replace/ignore them.",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")


def corpus_spec(args):
    """The corpus spec and reader options of --input/--pattern/... ."""
    from kerasllm.data import is_builtin

    spec = args.input[0] if len(args.input) == 1 else args.input
    if is_builtin(spec):
        return spec, {}
    reader_kwargs = {
        "pattern": args.pattern,
        "jsonl_field": args.jsonl_field,
        "errors": args.errors,
        "text_unit": args.text_unit,
        "html": args.html,
    }
    return spec, reader_kwargs


def corpus_from_args(args):
    """The documents named by --input/--split/... (see _corpus_arguments)."""
    from kerasllm.data import corpus_documents

    spec, reader_kwargs = corpus_spec(args)
    return corpus_documents(spec, args.split, **reader_kwargs)


def data_errors():
    from kerasllm.data import CorpusError
    from kerasllm.data.atomic import OutputExistsError

    # A refused output is the user's to fix (exit 2, like a bad flag); a write
    # that fails (disk full, read-only) reaches `main`, which exits 1.
    return (CorpusError, OutputExistsError, FileNotFoundError, ValueError)


def run_training(args, function, errors=()):
    """Run a training entry point as every training command does.

    `function(config, output, overrides=, resume=, overwrite=)` is
    `pretrain`, `finetune`, `dpo`, ...; `args` has `config`, `output`, `set`,
    `resume`, `overwrite` and `json`. With `--json` stdout carries only the
    result (Keras's progress goes to stderr); progress is plain lines when
    stderr is not a terminal. Bad configs, data and output directories
    (plus `errors`) become a `CommandError`.

    Returns:
        The function's result, or `None` after printing why training
        diverged (the command then exits 1).
    """
    import contextlib

    from kerasllm.cli.quiet import plain_progress
    from kerasllm.training import CheckpointError, ConfigError, OutputDirectoryError, TrainingDiverged

    if args.config is None and not args.resume:
        raise CommandError("--config is required (unless --resume continues a run).")
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with quiet, plain_progress():
            return function(
                args.config,
                args.output,
                overrides=parse_set_overrides(args.set),
                resume=args.resume,
                overwrite=args.overwrite,
            )
    except (ConfigError, OutputDirectoryError, CheckpointError, FileNotFoundError, *errors) as error:
        raise CommandError(str(error)) from error
    except TrainingDiverged as error:
        print(f"kerasllm: {error}", file=sys.stderr)
        return None
