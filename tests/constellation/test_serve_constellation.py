"""`kerasllm serve --constellation`: several models behind one served name.

Two tiny models are members; a rules policy sends prompts that start with
`def` to `code` and the rest to `chat`. The client is the real `openai`
package against a server on 127.0.0.1. Each answer is checked against the
member's own greedy generation, made here without the server.
"""

import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tf_only

MAX_TOKENS = 6


def _member_model(root, name, seed):
    from serving.support import make_model_dir

    from kerasllm.generation import get_generator

    _, model = make_model_dir(root, name=name, seed=seed)
    get_generator(model).jit_compile = False  # plain graphs: quick to build in tests
    return model


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    from kerasllm.constellation import Constellation, LocalMember, RulesPolicy

    root = tmp_path_factory.mktemp("members")
    models = {"code": _member_model(root, "code", 1), "chat": _member_model(root, "chat", 2)}
    members = {name: LocalMember(name, model=model) for name, model in models.items()}
    members["broken"] = LocalMember("broken", root / "no-such-model")  # fails when first asked
    policy = RulesPolicy([{"regex": r"^def\b", "member": "code"}, {"keywords": ["broken"], "member": "broken"}],
                         default="chat")
    constellation = Constellation(members, policy, fallback=["chat"], generation={"max_new_tokens": 32})
    return constellation, models


@pytest.fixture(scope="module")
def served(team, tmp_path_factory):
    from kerasllm.constellation.servable import ConstellationServable
    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.server import BackgroundServer

    constellation, _ = team
    work = tmp_path_factory.mktemp("server")
    config = ServerConfig(jit_compile=False, max_batch_size=4, batch_timeout_ms=5, shutdown_timeout=5)
    state = build_state(servables={"team": ConstellationServable(constellation, "team")}, config=config,
                        feedback_db=work / "feedback.sqlite")
    with BackgroundServer(state, grpc=False) as running:
        running.db = work / "feedback.sqlite"
        yield running


@pytest.fixture(scope="module")
def client(served):
    import openai

    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _greedy(model, prompt):
    from kerasllm.generation import complete

    [completion] = complete(model, [prompt], strategy="greedy", max_new_tokens=MAX_TOKENS)
    return completion.text


def test_models_lists_the_constellation(client):
    assert [m.id for m in client.models.list().data] == ["team"]


@pytest.mark.parametrize("prompt, member", [("def add(a, b):", "code"), ("Hello there", "chat")])
def test_each_prompt_is_answered_by_the_member_its_rule_names(client, team, prompt, member):
    _, models = team
    raw = client.completions.with_raw_response.create(
        model="team", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    response = raw.parse()
    assert raw.headers["x-kerasllm-member"] == member
    route = response.model_extra["route"]
    assert route["member"] == member and route["failures"] == []
    assert response.choices[0].model_extra["route"]["member"] == member
    assert response.choices[0].text == _greedy(models[member], prompt)
    assert response.model == "team"


def test_chat_routes_on_the_last_user_message(client, team):
    _, models = team
    response = client.chat.completions.create(
        model="team", max_tokens=MAX_TOKENS, temperature=0,
        messages=[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
                  {"role": "user", "content": "def square(x):"}])
    assert response.model_extra["route"]["member"] == "code"
    assert response.choices[0].message.content == _greedy(models["code"], "def square(x):")


def test_a_failing_member_falls_back_and_is_reported(client, team):
    _, models = team
    prompt = "a broken member"
    response = client.completions.create(model="team", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    route = response.model_extra["route"]
    assert route["member"] == "chat"
    assert [f["member"] for f in route["failures"]] == ["broken"]
    assert "fell back to chat" in route["reason"]
    assert response.choices[0].text == _greedy(models["chat"], prompt)


def test_stream_names_the_member_on_its_last_chunk(client, team):
    _, models = team
    chunks = list(client.completions.create(
        model="team", prompt="def f():", max_tokens=MAX_TOKENS, temperature=0, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == _greedy(models["code"], "def f():")
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals[-1].model_extra["route"]["member"] == "code"


def test_feedback_is_recorded_under_the_answering_member(client, served):
    import httpx

    response = client.completions.create(model="team", prompt="def g():", max_tokens=2, temperature=0)
    reply = httpx.post(served.url + "/v1/feedback", json={"id": response.id, "rating": 1})
    assert reply.status_code == 200, reply.text
    with sqlite3.connect(served.db) as db:
        [(model, version)] = db.execute(
            "SELECT model, version FROM completions WHERE id = ?", (response.id,)).fetchall()
    assert (model, version) == ("team", "code")


def test_tensor_predict_is_refused_with_the_reason(served):
    import httpx

    reply = httpx.post(served.url + "/v1/models/team:predict", json={"instances": [{"prompt": "x"}]})
    assert reply.status_code == 400
    assert "constellation" in reply.json()["error"] and "/v1/completions" in reply.json()["error"]


def test_every_member_failing_is_a_503_listing_the_failures(tmp_path):
    import openai

    from kerasllm.constellation import Constellation, LocalMember, RulesPolicy
    from kerasllm.constellation.servable import ConstellationServable
    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.server import BackgroundServer

    members = {n: LocalMember(n, tmp_path / f"missing-{n}") for n in ("a", "b")}
    constellation = Constellation(members, RulesPolicy([], default="a"), fallback=["b"])
    state = build_state(servables={"down": ConstellationServable(constellation, "down")},
                        config=ServerConfig(jit_compile=False, shutdown_timeout=2))
    with BackgroundServer(state, grpc=False) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.completions.create(model="down", prompt="hi", max_tokens=2)
    assert caught.value.status_code == 503
    message = str(caught.value)
    assert "missing-a" in message and "missing-b" in message


def test_cli_refuses_a_config_naming_a_missing_member(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("members:\n  a: {model: runs/x}\npolicy: {type: rules, rules: [], default: nobody}\n")
    run = subprocess.run(
        [sys.executable, "-m", "kerasllm.cli", "serve", "--constellation", str(config), "--rest-port", "0"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert f"--constellation {config}" in run.stderr and "nobody" in run.stderr
