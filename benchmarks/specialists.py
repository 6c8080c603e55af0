"""Specialists: two small models, each good at its own tasks, behind one router.

From the tiny model that `make demo` pretrains (`runs/demo/model`; pretrained
here first if absent), this fine-tunes two specialists with `kerasllm
finetune` (full SFT, the chat format, the shipped `sft.yaml` otherwise):

    english    on the English tasks of the task suite (add, reverse)
    japanese   on the Japanese tasks (katakana, kansuji)

and a router: a `SequenceClassifier` (`format: classification`) trained on
the train split's prompts, labelled with the specialist of their task. Then
it answers the union of the test splits (greedy, exact match by the task's
verifier) with each specialist alone and with the two constellations that
ship as recipes:

    recipes/configs/constellation/specialists.yaml          rules (keywords, language)
    recipes/configs/constellation/specialists-learned.yaml  the learned router

The oracle row is the best any router could do with these two members (a
prompt counts as right when either specialist answers it right).

Usage:
    python benchmarks/specialists.py                   # ~20 min on 2 cores
    python benchmarks/specialists.py --reuse           # keep the trained runs in --work-dir
    python benchmarks/specialists.py --steps 200 --test 20 --no-write   # a quick look

Results: a table on stdout and `benchmarks/results/specialists.json`; the
table in docs/constellation.md is copied from it.
"""

import argparse
import json
import os
import pathlib
import sys
import time

# Import from the repository root, not from benchmarks/ (benchmarks/tokenizers.py
# would shadow the `tokenizers` package).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import RESULTS_DIR, device_info, print_table, software_versions, write_results  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SFT_CONFIG = ROOT / "recipes" / "configs" / "finetune" / "sft.yaml"
CONSTELLATIONS = {
    "rules": ROOT / "recipes" / "configs" / "constellation" / "specialists.yaml",
    "learned": ROOT / "recipes" / "configs" / "constellation" / "specialists-learned.yaml",
}
# The specialist of each task; the router's class index is its place here.
SPECIALISTS = {"english": ["add", "reverse"], "japanese": ["katakana", "kansuji"]}
# Where the shipped configs expect the runs (`--work-dir` replaces it).
DEFAULT_WORK_DIR = "runs/specialists"


def finetune_specialist(name, args):
    """Full SFT of the base model on the specialist's tasks; the model directory."""
    from kerasllm.finetune import finetune

    output = pathlib.Path(args.work_dir) / name
    if args.reuse and _complete(output):
        print(f"  reusing {output}", flush=True)
        return json.loads((output / "run.json").read_text())["result"]
    overrides = {"base": args.base, "tasks": SPECIALISTS[name], "task_test": args.test}
    if args.steps:
        overrides["steps"] = args.steps
    return finetune(str(SFT_CONFIG), str(output), overrides=overrides, overwrite=True, verbose=0)


def router_records(train_per_task, seed):
    """`{"text": prompt, "label": specialist index}` for the train split's prompts."""
    from kerasllm.tasks import make_split

    labels = {task: index for index, tasks in enumerate(SPECIALISTS.values()) for task in tasks}
    tasks = [task for tasks in SPECIALISTS.values() for task in tasks]
    records = make_split(tasks, train=train_per_task, test=0, seed=seed)["train"]
    return [{"text": r["messages"][0]["content"], "label": labels[r["task"]]} for r in records]


def train_router(args):
    """A two-class `SequenceClassifier` on the base model; the run's result."""
    from kerasllm.finetune import finetune
    from kerasllm.tasks import write_jsonl

    output = pathlib.Path(args.work_dir) / "router"
    if args.reuse and _complete(output):
        print(f"  reusing {output}", flush=True)
        return json.loads((output / "run.json").read_text())["result"]
    data = pathlib.Path(args.work_dir) / "router-train.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(data, router_records(args.router_train, seed=args.seed))
    config = {
        "base": args.base,
        "data": str(data),
        "format": "classification",
        "num_classes": len(SPECIALISTS),
        "batch_size": 32,
        "steps": args.router_steps,
        "learning_rate": 1e-3,
        "warmup_steps": 10,
        "log_every": 10,
        "checkpoint_every": args.router_steps,
    }
    return finetune(config, str(output), overwrite=True, verbose=0)


def _complete(output):
    record = pathlib.Path(output) / "run.json"
    return record.is_file() and json.loads(record.read_text()).get("status") == "complete"


def load_constellation(path, work_dir):
    """A shipped specialists config with its `runs/specialists` paths moved to `work_dir`."""
    import yaml

    from kerasllm.constellation import Constellation

    text = pathlib.Path(path).read_text(encoding="utf-8").replace(DEFAULT_WORK_DIR, str(work_dir))
    return Constellation.from_config(yaml.safe_load(text))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="runs/demo/model", help="The pretrained model directory.")
    parser.add_argument("--pretrain-steps", type=int, help="Pretraining steps if the base is absent "
                        "(default: the tiny config's 1500).")
    parser.add_argument("--steps", type=int, default=600, help="Fine-tuning steps per specialist. Default 600.")
    parser.add_argument("--router-steps", type=int, default=150, help="Router training steps. Default 150.")
    parser.add_argument("--router-train", type=int, default=300, help="Router training prompts per task. Default 300.")
    parser.add_argument("--test", type=int, default=50, help="Test prompts per task. Default 50.")
    parser.add_argument("--seed", type=int, default=0, help="The task split's seed (sft.yaml's task_seed).")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR, help=f"Where the runs go. Default {DEFAULT_WORK_DIR}.")
    parser.add_argument("--reuse", action="store_true", help="Keep the completed runs in --work-dir.")
    parser.add_argument("--output", default=str(RESULTS_DIR / "specialists.json"), help="Results JSON.")
    parser.add_argument("--no-write", action="store_true", help="Print the table only.")
    args = parser.parse_args(argv)

    from benchmarks.finetune import ensure_demo_model

    started = time.perf_counter()
    ensure_demo_model(args)
    runs = {}
    for name in SPECIALISTS:
        print(f"Fine-tuning the {name} specialist on {', '.join(SPECIALISTS[name])}...", flush=True)
        runs[name] = finetune_specialist(name, args)
    print("Training the router...", flush=True)
    runs["router"] = train_router(args)

    from kerasllm.tasks import make_split, verify

    tasks = [task for tasks in SPECIALISTS.values() for task in tasks]
    records = make_split(tasks, train=0, test=args.test, seed=args.seed)["test"]
    prompts = [r["messages"][0]["content"] for r in records]
    correct, routed_to, seconds = {}, {}, {}
    constellations = {policy: load_constellation(path, args.work_dir) for policy, path in CONSTELLATIONS.items()}
    members = constellations["rules"].members
    for name, member in members.items():
        print(f"Answering with {name} alone...", flush=True)
        t0 = time.perf_counter()
        answers = constellations["rules"].call_member(name, prompts)
        seconds[name] = time.perf_counter() - t0
        correct[name] = [verify(r, a.text) for r, a in zip(records, answers)]
        routed_to[name] = [name] * len(prompts)
    for policy, constellation in constellations.items():
        print(f"Answering with the constellation ({policy})...", flush=True)
        t0 = time.perf_counter()
        routed = constellation.answer(prompts)
        key = f"constellation ({policy})"
        seconds[key] = time.perf_counter() - t0
        correct[key] = [verify(r, a.text or "") for r, a in zip(records, routed)]
        routed_to[key] = [a.member for a in routed]
    correct["oracle"] = [any(correct[name][i] for name in members) for i in range(len(records))]

    def accuracy(values, task=None):
        picked = [v for v, r in zip(values, records) if task is None or r["task"] == task]
        return sum(map(bool, picked)) / len(picked)

    def routed_right(key):
        specialist = {task: name for name, names in SPECIALISTS.items() for task in names}
        if key not in routed_to:
            return None
        return sum(m == specialist[r["task"]] for m, r in zip(routed_to[key], records)) / len(records)

    rows = [
        {"system": key, **{task: accuracy(values, task) for task in tasks}, "all": accuracy(values),
         "routed": routed_right(key)}
        for key, values in correct.items()
    ]
    print(f"\nExact-match accuracy on the union of the test splits ({args.test} prompts per task, greedy):")
    print_table(rows, [("system", "system", "{}")] + [(t, t, "{:.2f}") for t in tasks]
                + [("all", "all", "{:.3f}"), ("routed", "to its specialist", "{:.2f}")])
    best_single = max(accuracy(correct[name]) for name in members)
    for policy in CONSTELLATIONS:
        gain = accuracy(correct[f"constellation ({policy})"]) - best_single
        print(f"constellation ({policy}) beats the best single member by {gain:+.3f}")
    print(f"Total {time.perf_counter() - started:.0f} s.")
    if not args.no_write:
        write_results(args.output, {
            "device": device_info(), "software": software_versions(), "base": args.base,
            "specialists": SPECIALISTS, "test_per_task": args.test, "seed": args.seed,
            "steps": args.steps, "router_steps": args.router_steps, "router_train_per_task": args.router_train,
            "table": rows,
            "answer_seconds": {k: round(v, 1) for k, v in seconds.items()},
            "runs": {name: {k: v for k, v in r.items() if k in ("step", "step_seconds", "seconds", "tasks", "data")}
                     for name, r in runs.items()},
            "seconds": round(time.perf_counter() - started, 1),
        })
        print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
