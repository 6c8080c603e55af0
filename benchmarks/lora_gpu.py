"""LoRA vs full and partial fine-tuning: step time and memory at the gpt2-124m shape (GPU, JAX).

One training step (`model.fit`, mixed bf16, XLA) on random tokens, batch 16 x
1024, for each method:

- `full`: every weight trainable (kerasllm's AdamW, as pretraining);
- `partial`: `freeze_for_partial(model, 2)`, the top 2 of 12 blocks and the
  final norm (the head is the tied embedding, so it stays frozen);
- `lora`: `apply_lora(model, rank=8)` on every block projection (qkv,
  output, up, down);
- `lora-qkv`: `apply_lora(model, rank=8, targets=["qkv"])`, PEFT's GPT-2
  default.
- `lora-factored` (an experiment, not the package's code path): `lora`, with
  `Dense.call` patched to compute `x @ W + (alpha/r) * (x @ A) @ B` instead of
  Keras's `x @ (W + (alpha/r) * A @ B)`. Keras's form differentiates through
  the merged kernel, so the backward pass still forms the full-size kernel
  gradient; the factored form never does.

Each method runs in its own process, so the device's peak memory
(`peak_bytes_in_use` of JAX's allocator) is its own. Timing: a warm-up `fit`
(compilation + 3 steps) is not counted, then 3 epochs of `--steps` steps; the
median epoch over `--steps` gives the step time (the epoch end copies the
loss to the host, which waits for the device).

Usage (on the GPU machine, from the repository root):
    . benchmarks/gpu_env.sh && python3 benchmarks/lora_gpu.py
    python3 benchmarks/lora_gpu.py --preset tiny --batch-size 2 --seq-len 64 --steps 2 --no-write  # smoke test

Results: a table on stdout and `benchmarks/results/lora_<device>.json`.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import RESULTS_DIR, device_info, print_table, software_versions, write_results  # noqa: E402

METHODS = ("full", "lora", "lora-qkv", "partial", "lora-factored")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="gpt2-124m")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20, help="Timed steps per epoch.")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(METHODS[:4]), choices=METHODS)
    parser.add_argument("--dtype", default="mixed_bfloat16")
    parser.add_argument("--output", default=None, help="JSON path (default: results/lora_<device>.json).")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)  # child process
    return parser.parse_args(argv)


def peak_device_bytes():
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def patch_factored_lora():
    """`Dense.call` computing the LoRA term from the factors (see the docstring)."""
    import keras
    from keras import ops

    keras_call = keras.layers.Dense.call

    def call(self, inputs, training=None):
        if not self.lora_enabled:
            return keras_call(self, inputs, training=training)
        dtype = self.compute_dtype
        x = ops.matmul(inputs, ops.cast(self._kernel, dtype))
        low = ops.matmul(ops.matmul(inputs, ops.cast(self.lora_kernel_a, dtype)),
                         ops.cast(self.lora_kernel_b, dtype))
        x = x + (self.lora_alpha / self.lora_rank) * low
        if self.bias is not None:
            x = x + self.bias
        return self.activation(x) if self.activation is not None else x

    keras.layers.Dense.call = call


def measure(args):
    """One method in this process; prints one JSON line."""
    import keras
    import numpy as np

    from kerasllm.finetune import apply_lora, freeze_for_partial, trainable_summary
    from kerasllm.models import GPT
    from kerasllm.training import AdamW, LanguageModelLoss

    keras.utils.set_random_seed(0)
    model = GPT.from_preset(args.preset, dtype=args.dtype)
    if args.one == "partial":
        freeze_for_partial(model, trainable_blocks=2)
    elif args.one in ("lora", "lora-factored"):
        if args.one == "lora-factored":
            patch_factored_lora()
        apply_lora(model, rank=args.rank)
    elif args.one == "lora-qkv":
        apply_lora(model, rank=args.rank, targets=["qkv"])
    summary = trainable_summary(model)
    model.compile(
        optimizer=AdamW(learning_rate=1e-4, weight_decay=0.0, global_clipnorm=1.0),
        loss=LanguageModelLoss(),
    )
    vocab = model.config.vocab_size
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    tokens = rng.integers(0, vocab, (n, args.seq_len + 1)).astype("int32")
    x, y = tokens[:, :-1], tokens[:, 1:]
    model.fit(x[: 3 * args.batch_size], y[: 3 * args.batch_size], batch_size=args.batch_size,
              epochs=1, verbose=0)  # compile + warm-up

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times = []
    model.fit(x, y, batch_size=args.batch_size, epochs=3, verbose=0, callbacks=[EpochTimer()])
    step = float(np.median(times)) / args.steps
    print(json.dumps({
        "method": args.one,
        "trainable": summary["trainable"],
        "total": summary["total"],
        "fraction": summary["fraction"],
        "step_seconds": step,
        "tokens_per_second": args.batch_size * args.seq_len / step,
        "peak_device_bytes": peak_device_bytes(),
    }))


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        return measure(args)
    rows = []
    for method in args.methods:
        child = [sys.executable, __file__, "--one", method, "--preset", args.preset,
                 "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
                 "--steps", str(args.steps), "--rank", str(args.rank), "--dtype", args.dtype]
        done = subprocess.run(child, capture_output=True, text=True, env=os.environ)
        if done.returncode:
            print(done.stdout, done.stderr, file=sys.stderr)
            raise SystemExit(f"{method} failed")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    full = next((r for r in rows if r["method"] == "full"), None)
    for row in rows:
        row["percent"] = 100 * row["fraction"]
        row["step_ms"] = 1000 * row["step_seconds"]
        row["peak_gib"] = (row["peak_device_bytes"] or 0) / 2**30
        if full:
            row["speedup"] = full["step_seconds"] / row["step_seconds"]
    print_table(rows, [
        ("method", "method", "{}"), ("trainable", "trainable", "{:,}"), ("percent", "%", "{:.2f}"),
        ("step_ms", "ms/step", "{:.1f}"), ("tokens_per_second", "tok/s", "{:,.0f}"),
        ("speedup", "vs full", "{:.2f}x"), ("peak_gib", "peak GiB", "{:.2f}"),
    ])
    if not args.no_write:
        import keras  # noqa: F401  (software_versions reads the loaded modules)
        import jax  # noqa: F401

        device = device_info()
        path = args.output or RESULTS_DIR / f"lora_{device['slug']}.json"
        write_results(path, {
            "device": device, "versions": software_versions(),
            "shape": {"preset": args.preset, "batch_size": args.batch_size,
                      "seq_len": args.seq_len, "dtype": args.dtype, "rank": args.rank},
            "rows": rows,
        })
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
