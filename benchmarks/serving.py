"""Serving speed: `kerasllm serve` under concurrent clients, with and without batching.

Starts the server in this process on loopback (REST only) over a kerasllm
model directory (`--model`, or a random-weight tiny model with a 500-id BPE
trained on the fly, nothing downloaded), then at each concurrency level
(1, 8, 32 clients) sends:

- non-streamed `/v1/completions` requests (greedy, `--max-tokens` new tokens):
  requests/s, output tokens/s, end-to-end latency p50 / p99. These are what
  dynamic batching serves.
- streamed requests (`"stream": true`): time to first token (TTFT) and time
  per output token after it (TPOT), p50 / p99. Streams do not join batches;
  their decode steps take turns with the batches.

Twice: with dynamic batching (`--max-batch-size`, default 8) and without it
(max batch size 1). Prints a table and writes
benchmarks/results/serving_<device>.json.

Usage:
    python benchmarks/serving.py
    python benchmarks/serving.py --model runs/tiny --max-tokens 64 --levels 1 8 32
    python benchmarks/serving.py --no-xla --requests 16
"""

import argparse
import concurrent.futures
import glob
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# benchmarks/tokenizers.py would shadow the `tokenizers` package if this
# folder stayed first on the path; the repository root gives `benchmarks.common`.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))
from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    device_info,
    print_table,
    software_versions,
    write_results,
)


def tiny_model_dir(root):
    """A random 2-layer GPT with a BPE trained on the standard library's json package."""
    import keras

    import kerasllm
    from kerasllm.models import GPT
    from kerasllm.tokenizers import train_tokenizer

    json_dir = os.path.join(os.path.dirname(os.__file__), "json")
    documents = [pathlib.Path(p).read_text() for p in sorted(glob.glob(json_dir + "/*.py"))]
    tokenizer = train_tokenizer(documents, vocab_size=500, output_dir=root / "tokenizer", show_progress=False)
    keras.utils.set_random_seed(0)
    model = GPT.from_preset("tiny", vocab_size=tokenizer.vocabulary_size, context_length=128,
                            num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128)
    model.tokenizer = tokenizer
    return kerasllm.save(model, root / "tiny")


def percentile(values, q):
    return float(np.percentile(values, q)) if values else None


def run_level(url, model, concurrency, requests, max_tokens):
    import httpx

    prompts = [f"def function_{i}(x):" for i in range(requests)]
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0}

    with httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        def complete(prompt):
            start = time.perf_counter()
            answer = client.post("/v1/completions", json={**body, "prompt": prompt})
            answer.raise_for_status()
            return time.perf_counter() - start, answer.json()["usage"]["completion_tokens"]

        def stream(prompt):
            start = time.perf_counter()
            first, pieces = None, 0
            with client.stream("POST", "/v1/completions", json={**body, "prompt": prompt, "stream": True,
                                                                "stream_options": {"include_usage": True}}) as r:
                tokens = 0
                for line in r.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
                    if chunk["choices"] and chunk["choices"][0]["text"]:
                        pieces += 1
                        if first is None:
                            first = time.perf_counter() - start
            total = time.perf_counter() - start
            tpot = (total - first) / (tokens - 1) if first is not None and tokens > 1 else None
            return first, tpot

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            start = time.perf_counter()
            results = list(pool.map(complete, prompts))
            elapsed = time.perf_counter() - start
            streams = list(pool.map(stream, prompts[: max(concurrency, 4)]))
    latencies = [r[0] for r in results]
    ttft = [s[0] for s in streams if s[0] is not None]
    tpot = [s[1] for s in streams if s[1] is not None]
    return {
        "concurrency": concurrency,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "output_tokens_per_s": sum(r[1] for r in results) / elapsed,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "tpot_p50_s": percentile(tpot, 50),
        "tpot_p99_s": percentile(tpot, 99),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="A kerasllm model directory (default: a random tiny model).")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=None,
                        help="Requests per level (default: max(16, 2 x concurrency)).")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--no-xla", action="store_true", help="Plain-graph decode programs.")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/serving_<device>.json).")
    args = parser.parse_args()

    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.server import BackgroundServer

    scratch = tempfile.TemporaryDirectory()
    model_dir = pathlib.Path(args.model) if args.model else tiny_model_dir(pathlib.Path(scratch.name))
    rows = []
    for label, batch_size in (("batching", args.max_batch_size), ("no batching", 1)):
        config = ServerConfig(max_batch_size=batch_size, batch_timeout_ms=args.batch_timeout_ms,
                              jit_compile=not args.no_xla, poll_seconds=0, max_queue=4096)
        state = build_state(model_base_path=model_dir, model_name="bench", config=config)
        with BackgroundServer(state, grpc=False) as server:
            # Compile every batch bucket the levels will use before timing.
            for level in sorted(set(args.levels)):
                run_level(server.url, "bench", min(level, batch_size), min(level, batch_size), args.max_tokens)
            for level in args.levels:
                requests = args.requests or max(16, 2 * level)
                row = run_level(server.url, "bench", level, requests, args.max_tokens)
                row["mode"] = label
                row["max_batch_size"] = batch_size
                rows.append(row)
                print(f"{label:12s} c={level:<3d} {row['output_tokens_per_s']:8.0f} tok/s", file=sys.stderr)
    print_table(rows, [
        ("mode", "mode", "{}"), ("concurrency", "clients", "{}"), ("requests_per_s", "req/s", "{:.2f}"),
        ("output_tokens_per_s", "tok/s", "{:.0f}"), ("latency_p50_s", "p50 s", "{:.3f}"),
        ("latency_p99_s", "p99 s", "{:.3f}"), ("ttft_p50_s", "TTFT p50", "{:.3f}"),
        ("ttft_p99_s", "TTFT p99", "{:.3f}"), ("tpot_p50_s", "TPOT p50", "{:.4f}"),
    ])
    device = device_info()
    path = args.output or RESULTS_DIR / f"serving_{device['slug']}.json"
    write_results(path, {
        "device": device, "software": software_versions(),
        "model": str(args.model or "random tiny (2 layers, 64 wide, 500-id BPE, context 128)"),
        "max_tokens": args.max_tokens, "xla": not args.no_xla,
        "batch_timeout_ms": args.batch_timeout_ms, "rows": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
