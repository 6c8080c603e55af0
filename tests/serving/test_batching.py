"""Dynamic batching: concurrent requests share batches and get what they would alone."""

import concurrent.futures

import pytest

pytestmark = pytest.mark.tf_only

PROMPTS = [f"def f{i}(x):" for i in range(8)]


def _run(http, prompt):
    body = {"model": "tinydir", "prompt": prompt, "max_tokens": 24, "temperature": 0}
    answer = http.post("/v1/completions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["usage"]["completion_tokens"]


def test_eight_concurrent_clients_are_batched_together(server, http):
    # Correctness of continuous batching: concurrent requests share decode
    # batches and get what they would alone. The speed it buys is measured
    # by benchmarks/serving.py (a wall-clock ratio here failed whenever the
    # machine was busy).
    batcher = server.state.manager.get("tinydir")[1].batcher
    sequential_tokens = sum(_run(http, p) for p in PROMPTS)
    rows_before, batches_before = batcher.rows, batcher.batches
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        concurrent_tokens = sum(pool.map(lambda p: _run(http, p), PROMPTS))
    rows, batches = batcher.rows - rows_before, batcher.batches - batches_before

    assert concurrent_tokens == sequential_tokens
    assert rows / batches > 2, f"{rows} rows in {batches} batches"


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
