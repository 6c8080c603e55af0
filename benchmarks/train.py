"""Training throughput: kerasllm's GPT beside what a Keras user writes today.

For each preset, in one run and at the same shapes, this trains three models
with `model.fit` on random tokens and reports step time, tokens/s, achieved
TFLOP/s and MFU (model FLOPs utilization):

- `kerasllm`: `kerasllm.models.GPT.from_preset(preset)` with
  `LanguageModelLoss` and kerasllm's `AdamW`;
- `keras`: a plain Keras stack of `Embedding`, `LayerNormalization`,
  `MultiHeadAttention(use_causal_mask=True)` and `Dense` layers;
- `keras_hub`: a stack of `keras_hub.layers.TransformerDecoder` (only where
  keras-hub is installed, i.e. on the CPU here).

All three have the same width, depth, heads, feed-forward width and
vocabulary, train with AdamW (weight decay 0.1, global clipnorm 1.0) and are
compiled with Keras's default `jit_compile="auto"`, which is what a user's
`model.compile()` and kerasllm's own recipes get: XLA on JAX and on GPUs, no
XLA on a CPU-only TensorFlow machine (`--jit-compile on|off` overrides it for
every model alike). FLOPs per token are
`GPTConfig.flops_per_token(seq_len)` (6N + 12·L·T·d, PaLM's formula) for every
model, so tokens/s and MFU compare directly. MFU is against the datasheet
dense bf16 peak on GPUs (989 TFLOP/s on an H100) and against a measured
float32 matmul rate on CPUs (no datasheet figure applies there).

Timing: a warm-up `fit` (compilation plus `--warmup-steps` steps) is not
counted; then `--repeats` epochs of `--steps` steps each are timed from
`on_epoch_begin` to `on_epoch_end` (the epoch-end metrics are copied to the
host, which waits for the device), and the median epoch gives the step time.
No callback runs per batch, so on JAX steps dispatch asynchronously and the
host never waits for the device inside an epoch.

Usage:
    # This CPU, TensorFlow backend, float32, small batches (2 shared cores):
    KERAS_BACKEND=tensorflow python benchmarks/train.py --preset baby \
        --batch-size 8 --steps 3 --repeats 2
    KERAS_BACKEND=tensorflow python benchmarks/train.py --preset gpt2-124m \
        --batch-size 1 --steps 2 --repeats 2 --models kerasllm keras

    # One H100, JAX backend, mixed bf16, the issue's shapes (batch 64 at
    # context 256; batch 16 at context 1024):
    KERAS_BACKEND=jax python benchmarks/train.py --preset baby gpt2-124m

    # ... with a profile of where the device time goes, per model:
    KERAS_BACKEND=jax python benchmarks/train.py --preset gpt2-124m --profile

    # Smoke test of the JAX path on a CPU:
    KERAS_BACKEND=jax python benchmarks/train.py --preset tiny --batch-size 2 \
        --steps 2 --repeats 1 --no-write --profile

Results go to `benchmarks/results/train_<device>.json` (`--output` to change;
`<device>` is "cpu", "h100", ...), with the command, date, versions and rows.
"""

import argparse
import gc
import os
import sys
import time

DEFAULT_BATCH = {"tiny": 16, "baby": 64, "gpt2-124m": 16}
MODELS = ("kerasllm", "keras", "keras_hub")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset", nargs="+", default=["baby", "gpt2-124m"],
        help="GPT presets to benchmark (tiny, baby, gpt2-124m).",
    )
    parser.add_argument(
        "--batch-size", nargs="+", type=int, default=None,
        help="Batch size, one for all presets or one per preset. Defaults to "
        "64 for baby and 16 for gpt2-124m (the issue's GPU shapes).",
    )
    parser.add_argument(
        "--seq-len", type=int, default=None,
        help="Sequence length. Defaults to each preset's context length.",
    )
    parser.add_argument("--steps", type=int, default=20, help="Steps per timed epoch.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed epochs; median reported.")
    parser.add_argument("--warmup-steps", type=int, default=3, help="Untimed steps after compiling.")
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), choices=MODELS,
        help="Which implementations to run. keras_hub is skipped where not installed.",
    )
    parser.add_argument(
        "--backend", choices=("jax", "tensorflow", "torch"), default=None,
        help="Keras backend. Defaults to $KERAS_BACKEND.",
    )
    parser.add_argument(
        "--dtype", default="auto",
        help='Dtype policy. "auto": mixed_bfloat16 on a GPU, float32 on a CPU.',
    )
    parser.add_argument(
        "--steps-per-execution", type=int, default=1,
        help="Keras `steps_per_execution` (train steps per call into the compiled "
        "function; on TensorFlow the loop runs inside the graph).",
    )
    parser.add_argument(
        "--jit-compile", choices=("auto", "on", "off"), default="auto",
        help='Keras `jit_compile` for every model. "auto" (Keras\'s default): '
        "XLA except on CPU-only TensorFlow.",
    )
    parser.add_argument(
        "--no-jit", action="store_true", help='Same as "--jit-compile off".'
    )
    parser.add_argument(
        "--distribution", default="none",
        choices=("none", "data_parallel", "mirrored"),
        help="Data parallelism over every device of this host "
        "(kerasllm.training.distribution_scope): data_parallel on JAX "
        "(keras.distribution.DataParallel), mirrored on TensorFlow. The batch "
        "size is the global batch.",
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="Seed set before building each model, so runs on different device "
        "counts start from the same weights and see the same batches.",
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None,
        help="Peak rate for MFU. Defaults to the datasheet bf16 peak on a known "
        "GPU, else the measured matmul rate.",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="JAX only: run one more epoch under the profiler and print the "
        "device ops that take the most time.",
    )
    parser.add_argument(
        "--profile-top", type=int, default=15,
        help="With --profile: how many of the costliest device ops to keep in "
        "the JSON (0 keeps every op).",
    )
    parser.add_argument(
        "--output", default=None,
        help="Result JSON path. Defaults to <output-dir>/train_<device>.json.",
    )
    parser.add_argument(
        "--output-dir", default=None, help="Result folder. Defaults to benchmarks/results."
    )
    parser.add_argument("--no-write", action="store_true", help="Do not write JSON.")
    args = parser.parse_args(argv)
    if args.no_jit:
        args.jit_compile = "off"
    if args.batch_size is not None and len(args.batch_size) not in (1, len(args.preset)):
        parser.error(
            "--batch-size takes one value or one per preset. Received: "
            f"{len(args.batch_size)} values for {len(args.preset)} presets"
        )
    return args


# --------------------------------------------------------------------- models
# The two baselines below are written the way the Keras and KerasHub guides
# write a GPT: stock layers, nothing tuned.


def plain_keras_gpt(config, seq_len):
    """A GPT of `config`'s shape from stock Keras layers, as users write it."""
    import keras
    from keras import layers, ops

    class PlainKerasGPT(keras.Model):
        def __init__(self):
            super().__init__(name="plain_keras_gpt")
            d = config.hidden_dim
            self.token_embedding = layers.Embedding(config.vocab_size, d)
            self.position_embedding = layers.Embedding(seq_len, d)
            self.blocks = []
            for _ in range(config.num_layers):
                self.blocks.append(
                    (
                        layers.LayerNormalization(epsilon=config.norm_epsilon),
                        layers.MultiHeadAttention(
                            num_heads=config.num_heads, key_dim=config.head_dim
                        ),
                        layers.LayerNormalization(epsilon=config.norm_epsilon),
                        layers.Dense(config.ffn_dim, activation="gelu"),
                        layers.Dense(d),
                    )
                )
            self.final_norm = layers.LayerNormalization(epsilon=config.norm_epsilon)
            self.head = layers.Dense(config.vocab_size, use_bias=False)

        def call(self, token_ids):
            positions = ops.arange(ops.shape(token_ids)[1])
            x = self.token_embedding(token_ids) + self.position_embedding(positions)
            for norm_1, attention, norm_2, up, down in self.blocks:
                h = norm_1(x)
                x = x + attention(h, h, use_causal_mask=True)
                x = x + down(up(norm_2(x)))
            return self.head(self.final_norm(x))

    return PlainKerasGPT()


def keras_hub_gpt(config, seq_len):
    """A GPT of `config`'s shape from `keras_hub.layers.TransformerDecoder`."""
    import keras
    import keras_hub

    token_ids = keras.Input((seq_len,), dtype="int32")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        config.vocab_size, seq_len, config.hidden_dim
    )(token_ids)
    for _ in range(config.num_layers):
        # Decoder-only: no cross-attention input, so only self-attention
        # (causal by default) and the feed-forward network are built.
        x = keras_hub.layers.TransformerDecoder(
            intermediate_dim=config.ffn_dim,
            num_heads=config.num_heads,
            activation="gelu",
            layer_norm_epsilon=config.norm_epsilon,
            normalize_first=True,
        )(x)
    x = keras.layers.LayerNormalization(epsilon=config.norm_epsilon)(x)
    logits = keras.layers.Dense(config.vocab_size, use_bias=False)(x)
    return keras.Model(token_ids, logits, name="keras_hub_gpt")


def build(kind, preset, seq_len, dtype):
    """(model, loss, optimizer) for implementation `kind` at `preset`'s shape."""
    import keras

    from kerasllm.models.gpt import GPT
    from kerasllm.models.gpt_config import GPTConfig
    from kerasllm.training.losses import LanguageModelLoss
    from kerasllm.training.optimizers import AdamW

    optimizer_args = dict(learning_rate=3e-4, weight_decay=0.1, global_clipnorm=1.0)
    if kind == "kerasllm":
        model = GPT.from_preset(preset, dtype=dtype)
        return model, LanguageModelLoss(), AdamW(**optimizer_args)
    config = GPTConfig.from_preset(preset)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)  # the baselines take the global policy
    try:
        if kind == "keras":
            model = plain_keras_gpt(config, seq_len)  # built by its first fit
        else:
            model = keras_hub_gpt(config, seq_len)
    finally:
        keras.config.set_dtype_policy(previous)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return model, loss, keras.optimizers.AdamW(**optimizer_args)


# --------------------------------------------------------------------- timing


def epoch_timer():
    """A Keras callback that times each epoch until its loss reaches the host.

    Only epoch hooks: with no per-batch callback, Keras dispatches the steps
    of an epoch asynchronously (on JAX the host runs ahead of the device).
    """
    import keras

    from benchmarks.common import to_numpy

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.losses = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.losses.append(float(to_numpy(logs["loss"])))  # waits for the device
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def benchmark_preset(kinds, preset, batch_size, seq_len, args, dtype):
    """Trains every model in `kinds` at one shape; returns one row per model.

    Each model is built, compiled and warmed up first; then the timed epochs
    go round the models in turn (model A, B, C, A, B, C, ...), so that a
    shared machine's changing load falls on all of them alike and the ratio
    of their medians stays fair.
    """
    import keras
    import numpy as np

    from kerasllm.models.gpt_config import GPTConfig

    config = GPTConfig.from_preset(preset)
    rng = np.random.default_rng(args.seed)

    def batches(steps):
        tokens = rng.integers(0, config.vocab_size, (steps * batch_size, seq_len + 1))
        tokens = tokens.astype("int32")
        return tokens[:, :-1], tokens[:, 1:]

    def fit_epochs(model, data, timer, epochs=1):
        model.fit(*data, batch_size=batch_size, epochs=epochs, shuffle=False,
                  verbose=0, callbacks=[timer])

    runs = {}
    for kind in kinds:
        print(f"{preset} / {kind}: batch {batch_size} x {seq_len}, compiling ...", flush=True)
        keras.utils.set_random_seed(args.seed)
        model, loss, optimizer = build(kind, preset, seq_len, dtype)
        model.compile(
            optimizer=optimizer,
            loss=loss,
            jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
            steps_per_execution=args.steps_per_execution,
        )
        start = time.perf_counter()
        warmup = epoch_timer()
        fit_epochs(model, batches(args.warmup_steps), warmup)
        jit_compile = bool(model.jit_compile)  # "auto" resolved by compile
        runs[kind] = {
            "jit_compile": jit_compile,
            "model": model,
            "warmup": warmup,
            "compile_seconds": time.perf_counter() - start,
            "timer": epoch_timer(),
        }
    data = batches(args.steps)
    for repeat in range(args.repeats):
        for kind in kinds:
            fit_epochs(runs[kind]["model"], data, runs[kind]["timer"])

    rows = []
    flops_per_token = config.flops_per_token(seq_len)
    for kind in kinds:
        run = runs[kind]
        timer, model = run["timer"], run["model"]
        step_seconds = float(np.median(timer.seconds)) / args.steps
        tokens_per_second = batch_size * seq_len / step_seconds
        row = {
            "preset": preset,
            "model": kind,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "dtype": dtype,
            "jit_compile": run["jit_compile"],
            "parameters": int(model.count_params()),
            "step_ms": 1e3 * step_seconds,
            "step_ms_all_epochs": [1e3 * s / args.steps for s in timer.seconds],
            "tokens_per_second": tokens_per_second,
            "tflops": tokens_per_second * flops_per_token / 1e12,
            "flops_per_token": flops_per_token,
            "compile_and_warmup_s": run["compile_seconds"],
            "loss_first": run["warmup"].losses[0],
            "loss_last": timer.losses[-1],
            "losses_all_epochs": run["warmup"].losses + timer.losses,
        }
        if args.profile:
            # One more epoch under the JAX profiler: where the device time goes.
            from benchmarks.common import profile_top_ops

            row["profile"] = profile_top_ops(
                lambda: fit_epochs(model, data, epoch_timer()),
                top=args.profile_top or None,
            )
        rows.append(row)
    del runs, model
    keras.backend.clear_session()
    gc.collect()
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Import from the repository root, not from benchmarks/: a script there
    # named like a package (benchmarks/tokenizers.py) would shadow it.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))

    import keras

    from benchmarks.common import (
        RESULTS_DIR,
        attention_kernel,
        device_info,
        measure_matmul_tflops,
        print_table,
        software_versions,
        write_results,
    )

    device = device_info()
    on_gpu = device["platform"] != "cpu"
    dtype = args.dtype if args.dtype != "auto" else (
        "mixed_bfloat16" if on_gpu else "float32"
    )
    models = list(args.models)
    skipped = {}
    if "keras_hub" in models:
        try:
            import keras_hub  # noqa: F401
        except ImportError as error:
            models.remove("keras_hub")
            skipped["keras_hub"] = f"not importable: {error}"

    matmul_dtype = "bfloat16" if on_gpu else "float32"
    matmul_tflops = measure_matmul_tflops(matmul_dtype, size=8192 if on_gpu else 2048)
    peak = args.peak_tflops or device["peak_bf16_tflops"] or matmul_tflops
    peak_source = (
        "--peak-tflops" if args.peak_tflops
        else "datasheet dense bf16" if device["peak_bf16_tflops"]
        else f"measured {matmul_dtype} matmul"
    )
    print(f"device: {device['name']} ({device['backend']}, {dtype}); "
          f"{matmul_dtype} matmul {matmul_tflops:.3g} TFLOP/s; "
          f"MFU against {peak:.3g} TFLOP/s ({peak_source})", flush=True)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}")

    rows, attention = [], {}
    for i, preset in enumerate(args.preset):
        from kerasllm.models.gpt_config import GPTConfig

        config = GPTConfig.from_preset(preset)
        seq_len = args.seq_len or config.context_length
        if args.batch_size is None:
            batch_size = DEFAULT_BATCH.get(preset, 16)
        else:
            batch_size = args.batch_size[i if len(args.batch_size) > 1 else 0]
        compute_dtype = "bfloat16" if "bfloat16" in dtype else "float32"
        kernel = attention_kernel(seq_len, config.num_heads, config.head_dim, compute_dtype)
        attention[preset] = kernel
        print(f"{preset}: causal attention compiles to {kernel}", flush=True)
        from kerasllm.training.distribution import distribution_scope

        scope, replicas = distribution_scope(args.distribution)
        if batch_size % replicas:
            raise ValueError(
                f"--batch-size must be a multiple of the {replicas} devices of "
                f"--distribution {args.distribution}. Received: {batch_size}"
            )
        with scope:
            preset_rows = benchmark_preset(models, preset, batch_size, seq_len, args, dtype)
        for row in preset_rows:
            row["devices"] = replicas
            row["tokens_per_second_per_device"] = row["tokens_per_second"] / replicas
            row["mfu"] = row["tflops"] / peak / replicas
            rows.append(row)
            print(f"  {row['model']}: {row['step_ms']:.1f} ms/step, "
                  f"{row['tokens_per_second']:,.0f} tokens/s, MFU {100 * row['mfu']:.1f}%, "
                  f"loss {row['loss_first']:.3f} -> {row['loss_last']:.3f}", flush=True)
            if "profile" in row:
                prof = row["profile"]
                print(f"  profile ({prof['line']}): device busy {prof['busy_ms']:.1f} ms "
                      f"of {prof['wall_ms']:.1f} ms wall for {args.steps} steps")
                for op in prof["ops"]:
                    print(f"    {100 * op['share']:5.1f}%  {op['ms']:8.2f} ms  {op['name'][:90]}")
        ours = next(r for r in rows if r["preset"] == preset and r["model"] == "kerasllm") \
            if "kerasllm" in models else None
        for row in rows:
            if ours and row["preset"] == preset:
                row["kerasllm_speedup"] = ours["tokens_per_second"] / row["tokens_per_second"]

    print()
    print_table(rows, [
        ("preset", "preset", "{}"),
        ("model", "model", "{}"),
        ("batch_size", "batch", "{}"),
        ("seq_len", "seq", "{}"),
        ("step_ms", "step ms", "{:.1f}"),
        ("tokens_per_second", "tokens/s", "{:,.0f}"),
        ("tflops", "TFLOP/s", "{:.3g}"),
        ("mfu", "MFU", "{:.1%}"),
        ("kerasllm_speedup", "kerasllm x", "{:.2f}"),
    ])

    if not args.no_write:
        folder = args.output_dir or RESULTS_DIR
        path = args.output or os.path.join(folder, f"train_{device['slug']}.json")
        path = write_results(path, {
            "benchmark": "train",
            "device": device,
            "dtype": dtype,
            "jit_compile": args.jit_compile,
            "distribution": args.distribution,
            "steps_per_execution": args.steps_per_execution,
            "steps": args.steps,
            "repeats": args.repeats,
            "warmup_steps": args.warmup_steps,
            "matmul_tflops": matmul_tflops,
            "matmul_dtype": matmul_dtype,
            "peak_tflops": peak,
            "peak_source": peak_source,
            "attention_kernel": attention,
            "skipped": skipped,
            "versions": software_versions(),
            "tensorflow_imported": "tensorflow" in sys.modules,
            "rows": rows,
        })
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
