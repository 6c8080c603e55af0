"""`kerasllm serve`: TF Serving's REST/gRPC APIs, the OpenAI API and a playground."""

import os
import sys

from kerasllm.cli.common import CommandError


def _serve(args):
    os.environ["KERAS_BACKEND"] = "tensorflow"  # SavedModels and ServingModule are TF graphs
    import logging

    from kerasllm.serving import OutputFilter, ServerConfig, build_state, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    defaults = ServerConfig()
    config = ServerConfig(
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_queue=args.max_queue,
        api_key=args.api_key or os.environ.get("KERASLLM_API_KEY") or None,
        max_body_bytes=args.max_body_bytes,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_n=args.max_n,
        jit_compile=not args.no_jit_compile,
        poll_seconds=args.file_system_poll_wait_seconds,
        shutdown_timeout=args.shutdown_timeout,
        default_max_tokens=defaults.default_max_tokens,
    )
    output_filter = None
    if args.output_filter or args.output_filter_classifier:
        classifier = None
        if args.output_filter_classifier:
            import importlib

            module, _, attribute = args.output_filter_classifier.partition(":")
            if not attribute:
                raise CommandError(
                    "--output-filter-classifier takes MODULE:FUNCTION. Received: "
                    f"{args.output_filter_classifier!r}"
                )
            classifier = getattr(importlib.import_module(module), attribute)
        patterns = ()
        if args.output_filter:
            with open(args.output_filter, encoding="utf-8") as handle:
                patterns = handle.read().splitlines()
        output_filter = OutputFilter(patterns, classifier=classifier)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        print(
            f"kerasllm serve: listening on {args.host} without --api-key: anyone who can "
            "reach this address can use the models.",
            file=sys.stderr,
        )
    try:
        state = build_state(
            servables=_constellations(args),
            model_base_path=args.model_base_path,
            model_name=args.model_name,
            model_config_file=args.model_config_file,
            config=config,
            feedback_db=args.feedback_db,
            output_filter=output_filter,
            backend=args.backend,
            backend_url=args.backend_url,
        )
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    serve(
        state,
        host=args.host,
        rest_port=args.rest_port,
        grpc_port=None if args.grpc_port == 0 or args.backend == "tfserving" else args.grpc_port,
        ready=lambda rest, grpc: print(
            f"kerasllm serve: REST on http://{args.host}:{rest}"
            + (f", gRPC on {args.host}:{grpc}" if grpc else ""),
            file=sys.stderr,
            flush=True,
        ),
    )


def _constellations(args):
    """`{name: servable}` of the `--constellation` files (checked before serving)."""
    files = args.constellation or []
    if args.constellation_name and len(files) != 1:
        raise CommandError(
            f"--name (--constellation-name) names one --constellation. Received: {len(files)} constellation files"
        )
    from kerasllm.constellation.constellation import ConstellationConfigError
    from kerasllm.constellation.servable import constellation_servable
    from kerasllm.serving.errors import ServingError
    from kerasllm.serving.model_config import check_model_name

    servables = {}
    for path in files:
        try:
            name, servable = constellation_servable(
                path, args.constellation_name, jit_compile=False if args.no_jit_compile else None)
        except (ConstellationConfigError, ValueError) as error:
            raise CommandError(f"--constellation {path}: {error}") from error
        try:
            check_model_name(name)
        except ServingError as error:
            raise CommandError(f"--constellation {path}: {error.message}") from error
        if name in servables:
            raise CommandError(f"Two constellations are named {name!r}; give one a `name:` in its config.")
        servables[name] = servable
        members = ", ".join(sorted(servable.constellation.members))
        print(f"kerasllm serve: constellation {name!r} of {members}", file=sys.stderr)
    return servables


def add_commands(subparsers):
    from kerasllm.serving.state import ServerConfig

    defaults = ServerConfig()
    parser = subparsers.add_parser(
        "serve",
        help="Serve models: TF Serving REST/gRPC, OpenAI API, playground, feedback.",
        description=(
            "Serve `kerasllm export` version folders (saved_models/NAME/VERSION), a "
            "kerasllm model directory or a constellation of models: TensorFlow Serving's REST and gRPC APIs, the "
            "OpenAI completions/chat API, a playground page at /, and feedback in SQLite. "
            "New versions load and warm up before they take traffic. See docs/serving.md."
        ),
    )
    parser.add_argument("--model-base-path", help="saved_models/NAME, or a kerasllm model directory.")
    parser.add_argument("--model-name", help="The served name. Defaults to the base path's folder name.")
    parser.add_argument(
        "--model-config-file", help="TF Serving's text-proto ModelServerConfig (several models, "
        "version policies, labels); replaces --model-base-path.")
    parser.add_argument(
        "--constellation", action="append", metavar="FILE",
        help="A constellation YAML (recipes/configs/constellation/): several models behind one "
        "router, served as one model named by the config's `name:` or after the file "
        "(repeatable; alone or beside --model-*).")
    parser.add_argument("--name", "--constellation-name", dest="constellation_name",
                        help="The served name of the one --constellation.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind. Default 127.0.0.1 (this machine only).")
    parser.add_argument("--rest-port", type=int, default=8501, help="HTTP port. Default 8501.")
    parser.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (0: no gRPC). Default 8500.")
    parser.add_argument("--api-key", help="Require Authorization: Bearer KEY on /v1/ and gRPC "
                        "(or set KERASLLM_API_KEY).")
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size,
                        help=f"Most generation requests per batch (1: no batching). Default {defaults.max_batch_size}.")
    parser.add_argument("--batch-timeout-ms", type=float, default=defaults.batch_timeout_ms,
                        help=f"How long a batch waits for more requests. Default {defaults.batch_timeout_ms}.")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue,
                        help=f"Waiting requests beyond this get 429. Default {defaults.max_queue}.")
    parser.add_argument("--feedback-db", help="SQLite file for completions and feedback (off without it).")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                        help=f"Larger request bodies get 413. Default {defaults.max_body_bytes}.")
    parser.add_argument("--max-prompt-tokens", type=int, default=defaults.max_prompt_tokens,
                        help=f"Longer prompts get 400. Default {defaults.max_prompt_tokens}.")
    parser.add_argument("--max-tokens-limit", type=int, default=defaults.max_tokens_limit,
                        help=f"Largest max_tokens a request may ask. Default {defaults.max_tokens_limit}.")
    parser.add_argument("--max-n", type=int, default=defaults.max_n,
                        help=f"Largest n (completions per request). Default {defaults.max_n}.")
    parser.add_argument("--output-filter", help="Word / regex list file (one per line, 're:' for a regex); "
                        "a match ends the completion with finish_reason content_filter.")
    parser.add_argument("--output-filter-classifier", metavar="MODULE:FUNCTION",
                        help="A callable text -> bool; True blocks the completion.")
    parser.add_argument("--file-system-poll-wait-seconds", type=float, default=defaults.poll_seconds,
                        help=f"Seconds between scans for new versions. Default {defaults.poll_seconds}.")
    parser.add_argument("--shutdown-timeout", type=float, default=defaults.shutdown_timeout,
                        help=f"Seconds SIGTERM waits for in-flight requests. Default {defaults.shutdown_timeout}.")
    parser.add_argument("--no-jit-compile", action="store_true",
                        help="Run model directories' and constellation members' decode programs "
                        "without XLA (faster start).")
    parser.add_argument("--backend", choices=["local", "tfserving"], default="local",
                        help="local: run the models here; tfserving: send inference to TF Serving.")
    parser.add_argument("--backend-url", help="TF Serving's REST address for --backend tfserving, "
                        "e.g. http://localhost:8501.")
    parser.set_defaults(func=_serve)
