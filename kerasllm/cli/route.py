"""`kerasllm route`: answer prompts through a constellation of models."""

import pathlib

from kerasllm.cli.common import CommandError, emit_json


def _route(args):
    from kerasllm.constellation import Constellation, ConstellationConfigError

    try:
        constellation = Constellation.from_yaml(args.config, base_dir=args.base_dir)
        if args.route_only:
            decisions = constellation.route(args.prompt)
            results = [{"prompt": p, "member": d.member, "reason": d.reason} for p, d in zip(args.prompt, decisions)]
        else:
            results = [r.to_dict() for r in constellation.answer(args.prompt)]
    except (ConstellationConfigError, ValueError, FileNotFoundError) as error:
        raise CommandError(str(error)) from error
    if args.json:
        emit_json({"answers": results})
        return
    for result in results:
        print(f"prompt:  {result['prompt']}")
        if "text" in result:
            print(f"answer:  {result['text']}")
        print(f"member:  {result['member']}")
        print(f"why:     {result['reason']}")
        for failure in result.get("failures") or []:
            print(f"failed:  {failure['member']}: {failure['error']}")
        print()
    if not args.route_only and any(r["member"] is None for r in results):
        return 1


def add_commands(subparsers):
    route = subparsers.add_parser(
        "route",
        help="Answer prompts through several models behind one router.",
        description=(
            "Load a constellation (members + routing policy) from YAML and "
            "answer each prompt, printing the answer, the member that gave "
            "it and why. Members that fail or time out are skipped along the "
            "config's fallback order and reported. See docs/constellation.md."
        ),
    )
    route.add_argument("--config", required=True, help="A constellation YAML, e.g. recipes/configs/constellation/rules.yaml.")
    route.add_argument("--prompt", action="append", required=True, help="A prompt (repeatable: one batch).")
    route.add_argument(
        "--base-dir",
        type=pathlib.Path,
        help="Resolve relative member model paths against this directory (default: the working directory).",
    )
    route.add_argument("--route-only", action="store_true", help="Only say which member each prompt goes to; do not answer.")
    route.add_argument("--json", action="store_true", help='Print {"answers": [...]} on stdout.')
    route.set_defaults(func=_route)
