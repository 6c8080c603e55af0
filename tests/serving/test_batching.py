"""Dynamic batching: concurrent requests share batches and beat one-at-a-time."""

import concurrent.futures
import time

import pytest

pytestmark = pytest.mark.tf_only

PROMPTS = [f"def f{i}(x):" for i in range(8)]


def _run(http, prompt):
    body = {"model": "tinydir", "prompt": prompt, "max_tokens": 24, "temperature": 0}
    answer = http.post("/v1/completions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["usage"]["completion_tokens"]


def test_eight_concurrent_clients_get_3x_the_tokens_per_second(server, http):
    batcher = server.state.manager.get("tinydir")[1].batcher
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: _run(http, p), PROMPTS))  # compile the batch-8 programs
    _run(http, PROMPTS[0])  # and the batch-1 programs

    start = time.perf_counter()
    sequential_tokens = sum(_run(http, p) for p in PROMPTS)
    sequential = sequential_tokens / (time.perf_counter() - start)

    rows_before, batches_before = batcher.rows, batcher.batches
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        concurrent_tokens = sum(pool.map(lambda p: _run(http, p), PROMPTS))
    concurrent_rate = concurrent_tokens / (time.perf_counter() - start)
    rows, batches = batcher.rows - rows_before, batcher.batches - batches_before

    assert concurrent_tokens == sequential_tokens
    assert rows / batches > 2, f"{rows} rows in {batches} batches"
    print(f"sequential {sequential:.0f} tok/s, 8 concurrent {concurrent_rate:.0f} tok/s "
          f"({concurrent_rate / sequential:.1f}x), {rows} rows in {batches} batches")
    assert concurrent_rate >= 3 * sequential


def test_batch_results_equal_single_results(server, http):
    singles = [http.post("/v1/completions", json={"model": "tiny", "prompt": p, "max_tokens": 5,
                                                  "temperature": 0}).json()["choices"][0]["text"]
               for p in PROMPTS[:4]]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        batched = list(pool.map(
            lambda p: http.post("/v1/completions", json={"model": "tiny", "prompt": p, "max_tokens": 5,
                                                         "temperature": 0}).json()["choices"][0]["text"],
            PROMPTS[:4]))
    assert batched == singles
