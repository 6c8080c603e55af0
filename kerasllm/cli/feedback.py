"""`kerasllm feedback`: preference pairs and summaries from the server's feedback database."""

import json
import os

from kerasllm.cli.common import CommandError, emit_json


def _open(args):
    from kerasllm.serving.feedback_store import FeedbackStore

    if not os.path.isfile(args.db):
        raise CommandError(f"No feedback database at {args.db!r} (kerasllm serve --feedback-db).")
    return FeedbackStore(args.db)


def _export(args):
    from kerasllm.data.atomic import atomic_write_text

    pairs = _open(args).preference_pairs()
    fields = ("prompt", "chosen", "rejected") if not args.with_source else None
    lines = [
        json.dumps({k: p[k] for k in fields} if fields else p, ensure_ascii=False) for p in pairs
    ]
    atomic_write_text(args.output, "".join(line + "\n" for line in lines))
    if args.json:
        emit_json({"output": args.output, "pairs": len(pairs)})
    else:
        print(f"wrote {len(pairs)} preference pairs to {args.output}")


def _stats(args):
    rows = _open(args).stats()
    if args.json:
        emit_json({"models": rows})
        return
    # Columns as wide as their longest value: a constellation's version is a member's name.
    table = [[str(r["model"]), str(r["version"]), str(r["completions"]), str(r["thumbs_up"]),
              str(r["thumbs_down"]), str(r["preferred"]),
              "-" if r["approval"] is None else f"{r['approval']:.0%}"] for r in rows]
    header = ["model", "version", "completions", "up", "down", "better", "approval"]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print(" ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def add_commands(subparsers):
    feedback = subparsers.add_parser(
        "feedback",
        help="Preference pairs and rating summaries from `kerasllm serve --feedback-db`.",
        description="Read the SQLite feedback database that `kerasllm serve --feedback-db` writes.",
    )
    commands = feedback.add_subparsers(dest="feedback_command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export", help="Write preference pairs as JSONL {prompt, chosen, rejected}.",
        description="A better answer written by a user is chosen over the completion; a "
        "thumbs-up completion is chosen over a thumbs-down one of the same prompt.")
    export.add_argument("--db", required=True, help="The feedback database.")
    export.add_argument("--output", required=True, help="The JSONL file to write.")
    export.add_argument("--with-source", action="store_true", help="Add model and version to each record.")
    export.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    export.set_defaults(func=_export)
    stats = commands.add_parser("stats", help="Ratings per model version.")
    stats.add_argument("--db", required=True, help="The feedback database.")
    stats.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
    stats.set_defaults(func=_stats)
