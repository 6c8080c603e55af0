"""`kerasllm export`: SavedModel for TF Serving, TFLite."""

import os
import sys

from kerasllm.cli.common import CommandError, emit_json
from kerasllm.cli.generate import add_generation_flags


def _use_tensorflow_backend():
    """Export traces TF graphs: pick the TF backend before Keras is imported."""
    requested = os.environ.get("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules:
        import keras

        if keras.config.backend() != "tensorflow":
            raise CommandError(
                "export needs the TensorFlow backend, but Keras is already "
                f"running on {keras.config.backend()!r}. Run: "
                "KERAS_BACKEND=tensorflow kerasllm export ..."
            )
        return
    if requested != "tensorflow":
        print(
            f"kerasllm export: using the TensorFlow backend (KERAS_BACKEND={requested} "
            "ignored: SavedModel and TFLite are TensorFlow graphs; the .keras "
            "model loads on either backend).",
            file=sys.stderr,
        )
    os.environ["KERAS_BACKEND"] = "tensorflow"


def _export(args):
    _use_tensorflow_backend()
    import kerasllm
    from kerasllm import export
    from kerasllm.export.saved_model import DEFAULT_BASE_DIR

    if args.format == "saved_model" and args.quantize != "none":
        raise CommandError(
            "--quantize applies to --format tflite only (TF Serving runs the "
            f"float model). Received: --quantize {args.quantize}"
        )
    if args.format == "tflite" and not args.output:
        raise CommandError(
            "--format tflite needs --output DIR (the directory for model.tflite "
            "and the tokenizer files)."
        )
    try:
        model = kerasllm.load(args.model)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    try:
        if args.format == "saved_model":
            name = args.name or os.path.basename(os.path.normpath(args.model))
            result = export.export_saved_model(
                model,
                args.output or DEFAULT_BASE_DIR,
                name=name,
                version=args.version,
                max_new_tokens=args.max_new_tokens,
                overwrite=args.overwrite,
            )
        else:
            result = export.export_tflite(
                model,
                args.output,
                quantize=args.quantize,
                cache_length=args.cache_length,
                overwrite=args.overwrite,
            )
    except (FileExistsError, ValueError) as error:
        raise CommandError(str(error)) from error
    result = {"format": args.format, **result}
    if args.json:
        emit_json(result)
        return
    print(f"exported {args.format} to {result['path']}")
    if "size_bytes" in result:
        print(f"  size      {result['size_bytes']:,} bytes ({result['quantize']})")
    if "signatures" in result:
        print(f"  signatures {', '.join(result['signatures'])}")
    print(f"  ops       {len(result['ops'])} kinds, all allowed")


def add_commands(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="Export a model as a TF Serving SavedModel or a TFLite file.",
        description=(
            "Export a kerasllm model directory. saved_model: "
            "OUTPUT/NAME/VERSION/ in TensorFlow Serving's layout, strings in "
            "and out (signatures serving_default, generate, chat, score, "
            "logits). tflite: "
            "OUTPUT/ with model.tflite (prefill/decode signatures, builtin "
            "ops only), the tokenizer files and kerasllm_tflite.json. Always "
            "runs on the TensorFlow backend. See docs/export.md."
        ),
    )
    parser.add_argument("--model", required=True, help="A kerasllm model directory.")
    parser.add_argument(
        "--format", required=True, choices=["saved_model", "tflite"], help="What to write."
    )
    parser.add_argument(
        "--output",
        help="saved_model: the base directory (default saved_models); "
        "tflite: the directory to write (required).",
    )
    parser.add_argument(
        "--name", help="saved_model: the model name. Defaults to the model directory's name."
    )
    parser.add_argument(
        "--version",
        type=int,
        help="saved_model: the version number. Defaults to the next free one.",
    )
    parser.add_argument(
        "--quantize",
        choices=["none", "float16", "int8"],
        default="none",
        help="tflite: weight quantization (int8 is dynamic-range). Default none.",
    )
    add_generation_flags(
        parser, ["max_new_tokens"], help_prefix="saved_model: default of the input. "
    )
    parser.add_argument(
        "--cache-length",
        type=int,
        help="tflite: KV cache slots (prompt + new tokens). Defaults to the context length.",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing version / directory."
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    parser.set_defaults(func=_export)
