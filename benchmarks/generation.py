"""Generation speed: kerasllm's compiled decode loop beside KerasHub's GPT-2.

Batch-1 greedy decoding with random weights (nothing is downloaded), at the
`baby` shape and the `gpt2-124m` shape with an 8k vocabulary. For each:
decode tokens/s, time to first token (prompt prefill + first token), and
compile time (first call minus a warm call); KerasHub's
`GPT2CausalLM.generate` (greedy sampler, token-id inputs, no preprocessor) at
the same sizes. The memory-bandwidth bound is weight bytes / measured read
bandwidth (NumPy sums of a 512 MiB array on one thread and on every core,
the better of the two): batch-1 decoding reads
every weight once per token, so tokens/s cannot exceed bandwidth / weight
bytes. On a GPU the weights sit in device memory, so the bound uses the
chip's datasheet memory bandwidth instead (`benchmarks/common.py`;
`bound_bandwidth_source` in the JSON says which was used).

A second, tighter ceiling (`products_only`): the decode step's weight
products alone (every block's QKV, output and feed-forward projections and
the tied head, the same `Dense` layers and code path the decode step runs),
chained for the same number of steps in one compiled loop, with nothing
else (no attention, norms, cache or sampling). It is what XLA's own
vector-matrix products allow on this machine; the decode step cannot be
faster than it.

With `--decode-forms`, kerasllm runs three ways, interleaved in one process:
as shipped (valid-UTF-8 mask and one-row projections on), without the
valid-UTF-8 mask (`kerasllm_no_utf8_mask`: the mask's cost per step), and
with plain `keras.layers.Dense` projections under XLA
(`kerasllm_plain_dense`: what the one-row form buys). The kerasllm rows
decode through a stand-in byte-level tokenizer of the model's vocabulary
size, so the mask runs over the whole vocabulary every step.

Usage:
    python benchmarks/generation.py                     # TF backend, CPU
    python benchmarks/generation.py --shapes baby --decode-forms --skip-keras-hub
    python benchmarks/generation.py --shapes baby --repeats 5
    python benchmarks/generation.py --backend jax       # e.g. on a GPU box
    python benchmarks/generation.py --no-xla            # TF: plain graph

The backend is set before Keras loads (`--backend`, else $KERAS_BACKEND,
else tensorflow); the device is whatever that backend picks (a GPU when one
is visible), and is recorded in the JSON.
"""

import argparse
import datetime
import json
import os
import pathlib
import sys
import time

# benchmarks/tokenizers.py would shadow the `tokenizers` package (which
# keras_hub imports) if this folder stayed first on the path.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
# The repository root instead, for `benchmarks.common`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHAPES = {
    "baby": {},
    "gpt2-124m": {"vocab_size": 8192},  # 8k vocab, as in the issue
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default=None)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs; the best is kept.")
    parser.add_argument("--no-xla", action="store_true", help="TF: plain graph, no XLA.")
    parser.add_argument("--skip-keras-hub", action="store_true")
    parser.add_argument(
        "--skip-products-only", action="store_true", help="Skip the products-only ceiling."
    )
    parser.add_argument(
        "--decode-forms",
        action="store_true",
        help="Also time kerasllm without the valid-UTF-8 mask and with plain Dense projections.",
    )
    parser.add_argument(
        "--output", default=str(pathlib.Path(__file__).parent / "results" / "generation.json")
    )
    return parser.parse_args()


def memory_bandwidth(size_bytes=512 * 2**20, repeats=5):
    """Read bandwidth (GB/s), and copy bandwidth (read + write), from NumPy.

    Reads are timed as sums of one 512 MiB array, on one thread and split
    over every core (NumPy's sum releases the GIL): a decode step's products
    run on both cores here, and one thread alone does not reach the memory's
    limit (31 against 35 GB/s on this 2-core machine). Returns `(best read,
    copy, one-thread read)`.
    """
    import threading

    import numpy as np

    a = np.ones(size_bytes // 8)
    b = np.empty_like(a)
    parts = np.array_split(a, os.cpu_count() or 1)

    def all_cores_sum():
        threads = [threading.Thread(target=part.sum) for part in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    best_sum = best_threads = best_copy = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a.sum()
        best_sum = min(best_sum, time.perf_counter() - t)
        t = time.perf_counter()
        all_cores_sum()
        best_threads = min(best_threads, time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(b, a)
        best_copy = min(best_copy, time.perf_counter() - t)
    one_thread = size_bytes / best_sum / 1e9
    read = max(one_thread, size_bytes / best_threads / 1e9)
    return read, 2 * size_bytes / best_copy / 1e9, one_thread


def seconds(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(impls, args):
    """Times every implementation's `generate(n)`, interleaved.

    The first call of each size is the compile; then the implementations
    take turns, `repeats` rounds, and the best time of each is kept, so a
    burst of load from other processes hits all of them alike.
    """
    new = args.new_tokens
    first = {name: (seconds(lambda: g(1)), seconds(lambda: g(new))) for name, (_, g) in impls.items()}
    best = {name: [float("inf"), float("inf")] for name in impls}
    for _ in range(args.repeats):
        for name, (_, generate) in impls.items():
            best[name][0] = min(best[name][0], seconds(lambda: generate(1)))
            best[name][1] = min(best[name][1], seconds(lambda: generate(new)))
    results = {}
    for name, (info, _) in impls.items():
        ttft, total = best[name]
        results[name] = {
            **info,
            "time_to_first_token_s": ttft,
            "decode_tokens_per_s": (new - 1) / max(total - ttft, 1e-9),
            "end_to_end_tokens_per_s": new / total,
            "compile_s": (first[name][0] - ttft) + (first[name][1] - total),
        }
    return results


class StandInTokenizer:
    """Byte-level token bytes for `vocab_size` ids: the 256 bytes, then pieces
    of Japanese text cut at every byte offset (so some tokens start inside
    a character and some end inside one, as in a real byte-level BPE)."""

    def __init__(self, vocab_size):
        text = "吾輩は猫である。名前はまだ無い。😀🎉 naïve café".encode("utf-8")
        pieces = [text[i : i + n] for n in range(2, 7) for i in range(len(text) - n)]
        self.vocabulary_size = vocab_size
        self._bytes = [bytes([i]) for i in range(256)] + pieces
        self.end_token_id = None

    def token_bytes(self, token_id):
        return self._bytes[token_id % len(self._bytes)]


def setup_kerasllm(model, args, valid_utf8=True, one_row_projections=True):
    import numpy as np

    from kerasllm.generation import Generator

    generator = Generator(
        model,
        tokenizer=StandInTokenizer(model.config.vocab_size),
        jit_compile=not args.no_xla,
        one_row_projections=one_row_projections,
    )
    prompt = [list(np.random.default_rng(0).integers(0, 1000, args.prompt_length))]

    def generate(n):
        return generator.complete(
            prompt, max_new_tokens=n, end_token_id=None, valid_utf8=valid_utf8
        )

    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
    return {"parameters": model.count_params(), "weight_bytes": weights}, generate


def setup_products_only(model, args):
    """The decode step's weight products alone, chained in one compiled loop.

    Each step runs every block's projections (QKV, output, feed-forward up
    and down) and the tied head on one row, in the decode step's order and
    through the same `Dense` layers (inside `xla_decoding`, as the decode
    programs are traced), feeding each product's outputs (squashed with
    tanh, to stay finite; only as many as the next product takes) to the
    next. The per-token time is the floor that XLA's products put under the
    decode step. `model` is the one the kerasllm row decodes with, so both
    read the same weights.
    """
    from keras import ops

    from kerasllm.generation.compile import compile_model_function

    width = model.config.hidden_dim
    steps = [
        layer
        for block in model.blocks
        for layer in (
            block.attention.qkv,
            block.attention.output_dense,
            block.feed_forward.up,
            block.feed_forward.down,
        )
    ]

    def chain(x, num_steps):
        def body(i, x):
            for layer in steps:
                x = ops.tanh(layer(x[..., : layer.kernel.shape[0]]))  # (1, 1, units)
            x = ops.tanh(model.embedding.attend(x[..., :width]))  # the head: (1, 1, V)
            return i + 1, x[..., :width]

        return ops.while_loop(lambda i, x: i < num_steps, body, (ops.convert_to_tensor(0), x))[1]

    program = compile_model_function(model, chain, jit_compile=not args.no_xla)
    x = ops.ones((1, 1, width)) * 0.01

    def generate(n):
        return ops.convert_to_numpy(program(x, ops.convert_to_tensor(n, "int32")))

    return {"parameters": model.count_params()}, generate


def setup_keras_hub(shape, args):
    import keras_hub
    import numpy as np

    from kerasllm.models import GPTConfig

    config = GPTConfig.from_preset(shape, **SHAPES[shape])
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config.vocab_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.ffn_dim,
        max_sequence_length=config.context_length,
    )
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    prompt = np.random.default_rng(0).integers(0, 1000, args.prompt_length)

    def generate(n):
        # Without a preprocessor, generate fills the slots where padding_mask
        # is False: the prompt, then n free slots.
        ids = np.zeros((1, args.prompt_length + n), "int32")
        ids[0, : args.prompt_length] = prompt
        mask = np.zeros_like(ids, dtype=bool)
        mask[0, : args.prompt_length] = True
        return causal_lm.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=None)

    return {"parameters": backbone.count_params()}, generate


def main():
    args = parse_args()
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from benchmarks.common import cpu_model, device_info

    device = device_info()
    # Batch-1 decoding streams the weights from wherever they live: device
    # memory on a GPU (datasheet bandwidth; host NumPy timings say nothing
    # about it), host memory on a CPU (measured).
    device_hbm_tbps = device["hbm_tbps"]
    read_gbs, copy_gbs, one_thread_gbs = memory_bandwidth()
    results = {
        "benchmark": "generation",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "backend": keras.config.backend(),
        "device": device["name"] if device["platform"] != "cpu" else "CPU",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "xla": not args.no_xla,
        "prompt_length": args.prompt_length,
        "new_tokens": args.new_tokens,
        "load_average_1min": os.getloadavg()[0],
        "memory_read_gb_per_s": read_gbs,
        "memory_copy_gb_per_s": copy_gbs,
        "memory_read_one_thread_gb_per_s": one_thread_gbs,
        "bound_bandwidth_source": (
            "datasheet device memory" if device_hbm_tbps else "measured host memory read"
        ),
        "shapes": {},
    }
    print(f"backend {results['backend']} on {results['device']} ({results['cpu']}, "
          f"{results['cpu_count']} cores); memory read {read_gbs:.1f} GB/s "
          f"({one_thread_gbs:.1f} on one thread), copy {copy_gbs:.1f} GB/s")
    for shape in args.shapes:
        from kerasllm.models import GPT

        model = GPT.from_preset(shape, **SHAPES[shape])
        impls = {"kerasllm": setup_kerasllm(model, args)}
        if args.decode_forms:
            impls["kerasllm_no_utf8_mask"] = setup_kerasllm(model, args, valid_utf8=False)
            impls["kerasllm_plain_dense"] = setup_kerasllm(model, args, one_row_projections=False)
        if not args.skip_products_only:
            impls["products_only"] = setup_products_only(model, args)
        if not args.skip_keras_hub:
            impls["keras_hub"] = setup_keras_hub(shape, args)
        entry = measure(impls, args)
        # Bandwidth again after the runs: the best of both readings is the bound.
        read_gbs = max(read_gbs, memory_bandwidth()[0])
        results["memory_read_gb_per_s"] = read_gbs
        bound_gbs = 1e3 * device_hbm_tbps if device_hbm_tbps else read_gbs
        results["bound_bandwidth_gb_per_s"] = bound_gbs
        bound = bound_gbs * 1e9 / entry["kerasllm"]["weight_bytes"]
        entry["bandwidth_bound_tokens_per_s"] = bound
        entry["fraction_of_bound"] = entry["kerasllm"]["decode_tokens_per_s"] / bound
        if "keras_hub" in entry:
            entry["speedup_vs_keras_hub"] = (
                entry["kerasllm"]["decode_tokens_per_s"] / entry["keras_hub"]["decode_tokens_per_s"]
            )
        if "kerasllm_no_utf8_mask" in entry:
            step = {name: 1e3 / entry[name]["decode_tokens_per_s"] for name in entry
                    if isinstance(entry[name], dict) and "decode_tokens_per_s" in entry[name]}
            entry["utf8_mask_ms_per_step"] = step["kerasllm"] - step["kerasllm_no_utf8_mask"]
            entry["one_row_projections_speedup"] = (
                entry["kerasllm"]["decode_tokens_per_s"]
                / entry["kerasllm_plain_dense"]["decode_tokens_per_s"]
            )
        if "products_only" in entry:
            entry["products_only_fraction_of_bound"] = (
                entry["products_only"]["decode_tokens_per_s"] / bound
            )
            entry["fraction_of_products_only"] = (
                entry["kerasllm"]["decode_tokens_per_s"]
                / entry["products_only"]["decode_tokens_per_s"]
            )
        results["shapes"][shape] = entry

    header = f"{'shape':<10} {'impl':<21} {'params':>8} {'decode tok/s':>12} {'e2e tok/s':>10} {'TTFT ms':>8} {'compile s':>9}"
    print(header)
    print("-" * len(header))
    for shape, entry in results["shapes"].items():
        for impl in ("kerasllm", "kerasllm_no_utf8_mask", "kerasllm_plain_dense",
                     "products_only", "keras_hub"):
            if impl not in entry:
                continue
            r = entry[impl]
            print(f"{shape:<10} {impl:<21} {r['parameters'] / 1e6:>7.1f}M "
                  f"{r['decode_tokens_per_s']:>12.1f} {r['end_to_end_tokens_per_s']:>10.1f} "
                  f"{r['time_to_first_token_s'] * 1e3:>8.1f} {r['compile_s']:>9.1f}")
        line = (f"{shape:<10} bandwidth bound {entry['bandwidth_bound_tokens_per_s']:.1f} tok/s "
                f"({entry['kerasllm']['weight_bytes'] / 2**20:.0f} MiB of weights at "
                f"{results['bound_bandwidth_gb_per_s']:.0f} GB/s, {results['bound_bandwidth_source']}); kerasllm at "
                f"{100 * entry['fraction_of_bound']:.0f}% of it")
        if "fraction_of_products_only" in entry:
            line += (f", {100 * entry['fraction_of_products_only']:.0f}% of the products-only "
                     f"ceiling (itself {100 * entry['products_only_fraction_of_bound']:.0f}% of the bound)")
        if "speedup_vs_keras_hub" in entry:
            line += f", {entry['speedup_vs_keras_hub']:.1f}x keras-hub"
            if "products_only" in entry:
                ceiling = (entry["products_only"]["decode_tokens_per_s"]
                           / entry["keras_hub"]["decode_tokens_per_s"])
                line += f" (products-only ceiling: {ceiling:.1f}x)"
        print(line)
        if "utf8_mask_ms_per_step" in entry:
            print(f"{shape:<10} valid-UTF-8 mask: {entry['utf8_mask_ms_per_step']:+.3f} ms per "
                  f"decode step; one-row projections: "
                  f"{entry['one_row_projections_speedup']:.2f}x plain Dense")
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
