"""Fine-tuning on the built-in task suite: accuracy, trainable parameters, step time, memory.

Starting from the tiny model that `make demo` pretrains (`runs/demo/model`;
pretrained here first if absent), this measures in one run:

1. Task accuracy (exact match, greedy, the test split of `kerasllm.tasks`)
   before fine-tuning and after each method of `kerasllm finetune`: full
   SFT, partial (top blocks), LoRA; and full SFT with length-bucketed
   batches instead of the recipes' random ones, to show what the batching
   choice costs in accuracy.
2. Per method on the baby shape (6 layers, 6 heads, width 384; random
   weights, the demo tokenizer, chat-formatted task batches of 32, each
   recipe's `trainable_blocks` / `lora` settings): trainable parameters, median training step time, and the process's peak resident
   memory. Each method runs in its own process, so peak memory is its own.

Usage:
    python benchmarks/finetune.py                       # the shipped configs (~25 min on 2 cores)
    python benchmarks/finetune.py --steps 300 --no-write  # a quick look
    python benchmarks/finetune.py --methods full lora --baby-steps 10
    python benchmarks/finetune.py --reuse                # after an interruption: keep the completed runs
    python benchmarks/finetune.py --parallel             # the fine-tuning runs at once (GPU)

Results: a table on stdout and `benchmarks/results/finetune_<device>.json`;
the table in docs/finetuning.md is copied from it.
"""

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

# Import from the repository root, not from benchmarks/ (benchmarks/tokenizers.py
# would shadow the `tokenizers` package).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    device_info,
    print_table,
    software_versions,
    write_results,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "configs" / "finetune"
RUNS = {
    "full": ("sft.yaml", {}),
    "partial": ("partial.yaml", {}),
    "lora": ("lora.yaml", {}),
    "full-bucket-batches": ("sft.yaml", {"batching": "bucket"}),
}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_finetune(args):
    """One fine-tuning run (a separate process): prints its result as JSON."""
    from kerasllm.finetune import finetune

    config, extra = RUNS[args.child]
    overrides = {"base": args.base, **extra, **json.loads(args.overrides)}
    result = finetune(str(CONFIGS / config), args.output, overrides=overrides, overwrite=True, verbose=0)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def child_baby(args):
    """Step time and peak memory of one method at the baby shape (a separate process)."""
    import keras
    import numpy as np

    import kerasllm
    from kerasllm.finetune import FinetuneConfig, apply_lora, freeze_for_partial, trainable_summary
    from kerasllm.finetune.data import BatchSchedule, encode_records
    from kerasllm.models import GPT, GPTConfig
    from kerasllm.tasks import make_split
    from kerasllm.training import LanguageModelLoss, create_optimizer

    tokenizer = kerasllm.tokenizers.load(pathlib.Path(args.base) / "tokenizer")
    config = GPTConfig.from_preset("baby", vocab_size=tokenizer.vocabulary_size, context_length=128)
    model = GPT(config)
    model.build((None, config.context_length))
    method = args.child_baby
    recipe = FinetuneConfig.from_yaml(CONFIGS / RUNS[method][0], {"base": args.base})
    if method == "partial":
        freeze_for_partial(model, recipe.trainable_blocks)
    elif method == "lora":
        apply_lora(model, **recipe.lora)
    model.compile(optimizer=create_optimizer(learning_rate=1e-3, total_steps=1000), loss=LanguageModelLoss())
    records = make_split(train=100, test=0)["train"]
    examples = encode_records(tokenizer, records, "messages", max_length=129)
    generator = BatchSchedule(examples, 32, tokenizer.pad_token_id, 128, seed=0).generator()
    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(generator, steps_per_epoch=args.baby_steps + 3, epochs=1, verbose=0, callbacks=[Timer()])
    summary = trainable_summary(model)
    print(json.dumps({**summary, "step_seconds": float(np.median(times[3:])),
                      "peak_rss_mib": peak_rss_mib()}))


def start_child(flag, value, args, extra=()):
    command = [sys.executable, __file__, flag, value, "--base", args.base, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def finish_child(process, flag, value):
    out, err = process.communicate()
    if process.returncode:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"{flag} {value} failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def run_child(flag, value, args, extra=()):
    return finish_child(start_child(flag, value, args, extra), flag, value)


def finish(runs, running, name):
    started, process = running.pop(name)
    runs[name] = finish_child(process, "--child", name)
    runs[name]["wall_seconds"] = round(time.perf_counter() - started, 1)


def ensure_demo_model(args):
    model_dir = pathlib.Path(args.base)
    if (model_dir / "kerasllm.json").is_file():
        return
    print(f"{model_dir} is absent: pretraining the demo model first.", flush=True)
    from kerasllm.training import pretrain

    overrides = {"steps": args.pretrain_steps} if args.pretrain_steps else None
    pretrain(str(ROOT / "recipes/configs/pretrain/tiny.yaml"), model_dir.parent, overrides=overrides,
             overwrite=True, verbose=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="runs/demo/model", help="The pretrained model directory.")
    parser.add_argument("--pretrain-steps", type=int, help="Pretraining steps if the base is absent "
                        "(default: the tiny config's 1500).")
    parser.add_argument("--methods", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--steps", type=int, help="Override the configs' steps (a quicker, weaker run).")
    parser.add_argument("--baby-steps", type=int, default=10, help="Timed steps per method at the baby shape.")
    parser.add_argument("--work-dir", default="runs/finetune-benchmark", help="Where the runs go.")
    parser.add_argument("--output", help="Results JSON (default benchmarks/results/finetune_<device>.json).")
    parser.add_argument("--no-write", action="store_true", help="Print the table only.")
    parser.add_argument("--reuse", action="store_true",
                        help="Keep the runs in --work-dir that completed (run.json) instead of training them again.")
    parser.add_argument("--parallel", action="store_true",
                        help="Run the methods' fine-tuning at the same time (a GPU with room to spare); "
                             "their step times then share the device and are not a speed comparison.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-baby", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_finetune(args)
    if args.child_baby:
        return child_baby(args)

    started = time.perf_counter()
    ensure_demo_model(args)
    import kerasllm
    from kerasllm.tasks import evaluate_tasks, task_names

    print("Scoring the base model...", flush=True)
    before = evaluate_tasks(kerasllm.load(args.base), format="messages")
    overrides = json.dumps({"steps": args.steps} if args.steps else {})
    runs, running = {}, {}
    for name in args.methods:
        print(f"Fine-tuning: {name}...", flush=True)
        record = pathlib.Path(args.work_dir) / name / "run.json"
        if args.reuse and record.is_file() and json.loads(record.read_text()).get("status") == "complete":
            runs[name] = json.loads(record.read_text())["result"]
            print(f"  reusing {record}", flush=True)
            continue
        running[name] = (time.perf_counter(), start_child(
            "--child", name, args, ["--overrides", overrides, "--output", f"{args.work_dir}/{name}"]))
        if not args.parallel:
            finish(runs, running, name)
    for name in list(running):
        finish(runs, running, name)
    baby = {}
    for name in [m for m in ("full", "partial", "lora") if m in args.methods]:
        print(f"Baby shape: {name}...", flush=True)
        baby[name] = run_child("--child-baby", name, args, ["--baby-steps", str(args.baby_steps)])

    names = task_names(None)
    rows = [{"task": t, "before": before["tasks"][t]["accuracy"],
             **{m: runs[m]["tasks"]["tasks"][t]["accuracy"] for m in runs}} for t in names]
    rows.append({"task": "mean", "before": before["mean_accuracy"],
                 **{m: runs[m]["tasks"]["mean_accuracy"] for m in runs}})
    print("\nTask accuracy (exact match, greedy, 100 test prompts per task):")
    print_table(rows, [("task", "task", "{}"), ("before", "before", "{:.2f}")]
                + [(m, m, "{:.2f}") for m in runs])
    method_rows = [
        {"method": m, "tiny_trainable": runs[m]["trainable"]["trainable"],
         "tiny_fraction": 100 * runs[m]["trainable"]["fraction"], "tiny_step": 1000 * runs[m]["step_seconds"],
         "tiny_rss": runs[m].get("peak_rss_mib"), "steps": runs[m]["step"], "wall": runs[m].get("wall_seconds"),
         **({"baby_trainable": baby[m]["trainable"], "baby_fraction": 100 * baby[m]["fraction"],
             "baby_step": 1000 * baby[m]["step_seconds"], "baby_rss": baby[m]["peak_rss_mib"]}
            if m in baby else {})}
        for m in runs
    ]
    print("\nPer method (tiny: the fine-tuning runs above; baby: 6/6/384, batch 32 of chat task examples):")
    print_table(method_rows, [
        ("method", "method", "{}"), ("tiny_trainable", "tiny trainable", "{:,}"),
        ("tiny_fraction", "%", "{:.1f}"), ("tiny_step", "tiny ms/step", "{:.0f}"),
        ("tiny_rss", "tiny peak MiB", "{:.0f}"), ("steps", "steps", "{}"), ("wall", "run s", "{:.0f}"),
        ("baby_trainable", "baby trainable", "{:,}"), ("baby_fraction", "%", "{:.2f}"),
        ("baby_step", "baby ms/step", "{:.0f}"), ("baby_rss", "baby peak MiB", "{:.0f}"),
    ])
    full, lora = runs.get("full"), runs.get("lora")
    if full and lora:
        ratio = lora["tasks"]["mean_accuracy"] / max(full["tasks"]["mean_accuracy"], 1e-9)
        print(f"\nLoRA reaches {ratio:.0%} of full SFT's mean accuracy with "
              f"{100 * lora['trainable']['fraction']:.2f}% of the parameters trainable.")
    print(f"Total {time.perf_counter() - started:.0f} s.")
    if not args.no_write:
        device = device_info()
        path = args.output or RESULTS_DIR / f"finetune_{device['slug']}.json"
        write_results(path, {
            "device": device, "software": software_versions(), "base": args.base,
            "before": before, "runs": {m: {k: v for k, v in r.items() if k != "output"} for m, r in runs.items()},
            "baby": baby, "parallel": args.parallel, "seconds": round(time.perf_counter() - started, 1),
        })
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
