"""Reliability: client disconnects, a loopback load test, a swap under load, SIGTERM draining."""

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.tf_only


def test_disconnect_mid_stream_frees_the_slot(server, http):
    import httpx

    body = {"model": "tinydir", "prompt": "stream", "max_tokens": 60, "temperature": 1.0, "stream": True}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        with client.stream("POST", "/v1/completions", json=body) as response:
            for _ in response.iter_lines():
                break  # first event, then hang up
    deadline = time.monotonic() + 30
    while server.state.active_streams and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.state.active_streams == 0
    engine = server.state.manager.get("tinydir")[1].engine
    deadline = time.monotonic() + 30
    while engine.lock.locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.lock.locked()
    assert http.post("/v1/completions", json={**body, "stream": False, "max_tokens": 2}).status_code == 200


@pytest.mark.slow
def test_load_2000_requests_at_concurrency_16_no_5xx(server, http):
    import httpx

    bodies = [
        ("POST", "/v1/completions", {"model": "tinydir", "prompt": f"load {i}", "max_tokens": 2,
                                     "temperature": 0.7, "seed": i})
        if i % 4 else ("GET", "/v1/models/tiny", None)
        for i in range(2000)
    ]
    statuses = []
    with httpx.Client(base_url=server.url, timeout=120,
                      limits=httpx.Limits(max_connections=16)) as client:
        def send(item):
            method, path, body = item
            return client.request(method, path, json=body).status_code

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(send, bodies))
        elapsed = time.perf_counter() - start
    print(f"2000 requests at concurrency 16 in {elapsed:.1f} s ({2000 / elapsed:.0f} req/s)")
    assert not [s for s in statuses if s >= 500]
    assert statuses.count(200) == 2000


@pytest.mark.slow
def test_version_swap_under_load_fails_no_request(server, http):
    base = server.base
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
    old = versions[-1]
    new = old + 1
    stop = threading.Event()
    failures, served = [], []

    def client_loop():
        import httpx

        with httpx.Client(base_url=server.url, timeout=120) as client:
            while not stop.is_set():
                r = client.post("/v1/completions", json={"model": "tiny", "prompt": "swap", "max_tokens": 2})
                (served if r.status_code == 200 else failures).append(r.status_code)

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        shutil.copytree(base / str(old), base / f".{new}.tmp")
        (base / f".{new}.tmp").rename(base / str(new))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            states = {s["version"]: s["state"] for s in
                      http.get("/v1/models/tiny").json()["model_version_status"]}
            if states.get(str(new)) == "AVAILABLE" and states.get(str(old)) == "END":
                break
            time.sleep(0.3)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert states.get(str(new)) == "AVAILABLE" and states.get(str(old)) == "END", states
    assert failures == [] and len(served) > 4


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests(artifacts, tmp_path):
    import httpx

    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasllm.cli", "serve", "--model-base-path", str(artifacts["model_dir"]),
         "--rest-port", str(port), "--grpc-port", "0", "--no-jit-compile", "--shutdown-timeout", "60"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        body = {"model": "tiny", "prompt": "drain", "max_tokens": 40, "temperature": 1.0, "stream": True}
        events = []
        with httpx.Client(base_url=url, timeout=120) as client:
            with client.stream("POST", "/v1/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and not events:
                        process.send_signal(signal.SIGTERM)
                    if line:
                        events.append(line)
        assert events[-1] == "data: [DONE]"
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
