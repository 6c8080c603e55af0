"""`kerasllm serve --constellation`: several models behind one served name.

Two tiny models are members; a rules policy sends prompts that start with
`def` to `code` and the rest to `chat`. The client is the real `openai`
package against a server on 127.0.0.1. Each answer is checked against the
member's own greedy generation, made here without the server.

The tests without models (refusals, every member failing, CLI errors) are
quick; those that build, serve and answer with the tiny members are slow.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.tf_only

MAX_TOKENS = 6


# ---------------------------------------------------------------- quick: no models


@pytest.fixture(scope="module")
def down(tmp_path_factory):
    """A constellation whose members' model directories do not exist."""
    from kerasllm.constellation import Constellation, LocalMember, RulesPolicy
    from kerasllm.constellation.servable import ConstellationServable
    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.server import BackgroundServer

    root = tmp_path_factory.mktemp("down")
    members = {n: LocalMember(n, root / f"missing-{n}") for n in ("a", "b")}
    constellation = Constellation(members, RulesPolicy([], default="a"), fallback=["b"])
    state = build_state(servables={"down": ConstellationServable(constellation, "down")},
                        config=ServerConfig(shutdown_timeout=2))
    with BackgroundServer(state, grpc=True) as running:
        yield running


def test_every_member_failing_is_a_503_listing_the_failures(down):
    import openai

    client = openai.OpenAI(base_url=down.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["down"]
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(model="down", prompt="hi", max_tokens=2)
    assert caught.value.status_code == 503
    message = str(caught.value)
    assert "Every member of the constellation failed" in message
    assert "missing-a" in message and "missing-b" in message


def test_tensor_predict_is_refused_with_the_reason(down):
    import httpx

    reply = httpx.post(down.url + "/v1/models/down:predict", json={"instances": [{"prompt": "x"}]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "constellation" in error and "/v1/completions" in error


def test_grpc_predict_is_refused_with_the_reason(down):
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "down"
    request.inputs["prompt"].CopyFrom(tf.make_tensor_proto(np.array([b"def "], object)))
    with grpc.insecure_channel(f"127.0.0.1:{down.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "constellation" in caught.value.details()


class Echo:
    """Built on first use (the import needs the package): a member that answers `NAME says: PROMPT`."""

    @staticmethod
    def make(name, *, fail=False, delay=0.0):
        from kerasllm.constellation.members import Answer, Member

        class _Echo(Member):
            kind = "echo"

            def __init__(self):
                super().__init__(name)
                self.options = []

            def complete(self, prompts, **options):
                self.options.append(options)
                time.sleep(delay)
                if fail:
                    raise ConnectionError("connection refused")
                return [Answer(f"{name} says: {p}", name, num_tokens=3) for p in prompts]

        return _Echo()


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    """Rules send `def ...` to code, `flaky` to a failing member, `slow` past its timeout, the rest to chat."""
    from kerasllm.constellation import Constellation, RulesPolicy
    from kerasllm.constellation.servable import ConstellationServable
    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.server import BackgroundServer

    members = {"code": Echo.make("code"), "chat": Echo.make("chat"), "flaky": Echo.make("flaky", fail=True),
               "slow": Echo.make("slow", delay=3.0)}
    members["slow"].timeout = 0.3
    policy = RulesPolicy([{"regex": r"^def\b", "member": "code"}, {"keywords": ["flaky"], "member": "flaky"},
                          {"keywords": ["slow"], "member": "slow"}], default="chat")
    constellation = Constellation(members, policy, fallback=["chat"], generation={"max_new_tokens": 32})
    db = tmp_path_factory.mktemp("echo") / "feedback.sqlite"
    state = build_state(servables={"helpers": ConstellationServable(constellation, "helpers")},
                        config=ServerConfig(shutdown_timeout=2), feedback_db=db)
    with BackgroundServer(state, grpc=False) as running:
        running.db, running.members = db, members
        yield running


@pytest.fixture(scope="module")
def echo_client(echo):
    import openai

    return openai.OpenAI(base_url=echo.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.mark.parametrize("prompt, member, reason", [
    ("def add(a, b):", "code", r"regex '^def\\b' matched"),
    ("What is two plus two?", "chat", "no rule matched: default member"),
])
def test_the_answer_names_its_member_and_reason(echo_client, prompt, member, reason):
    raw = echo_client.completions.with_raw_response.create(model="helpers", prompt=prompt, max_tokens=8)
    response = raw.parse()
    assert response.model == "helpers"
    assert response.choices[0].text == f"{member} says: {prompt}"
    assert raw.headers["x-kerasllm-member"] == member
    assert response.model_extra["route"] == {"member": member, "reason": reason, "failures": []}
    assert response.choices[0].model_extra["route"]["member"] == member
    assert response.usage.completion_tokens == 3


def test_request_settings_reach_the_member(echo, echo_client):
    echo_client.completions.create(model="helpers", prompt="def f():", max_tokens=5, temperature=0.5,
                                   top_p=0.9, seed=7, stop=["\n"])
    assert echo.members["code"].options[-1] == {
        "max_new_tokens": 5, "strategy": "sample", "temperature": 0.5, "top_p": 0.9, "seed": 7, "stop": ["\n"]}


@pytest.mark.parametrize("prompt, error", [("a flaky one", "connection refused"), ("a slow one", "timed out")])
def test_a_failing_or_slow_member_falls_back_and_is_reported(echo_client, prompt, error):
    raw = echo_client.chat.completions.with_raw_response.create(
        model="helpers", max_tokens=8, messages=[{"role": "user", "content": prompt}])
    response = raw.parse()
    assert response.choices[0].message.content == f"chat says: {prompt}"
    assert raw.headers["x-kerasllm-member"] == "chat"
    route = response.model_extra["route"]
    assert route["member"] == "chat" and "fell back to chat" in route["reason"]
    [failure] = route["failures"]
    assert failure["member"] in prompt and error in failure["error"]


def test_a_stream_is_one_piece_then_the_route(echo_client):
    chunks = list(echo_client.chat.completions.create(
        model="helpers", max_tokens=8, stream=True, messages=[{"role": "user", "content": "def g():"}]))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["code says: def g():"]
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert last.model_extra["route"]["member"] == "code"


def test_ratings_are_counted_per_member(echo, echo_client):
    import httpx

    from kerasllm.serving.feedback_store import FeedbackStore

    for prompt, rating in [("def a():", 1), ("def b():", 1), ("hello", -1)]:
        answer = echo_client.completions.create(model="helpers", prompt=prompt, max_tokens=4)
        reply = httpx.post(echo.url + "/v1/feedback", json={"id": answer.id, "rating": rating})
        assert reply.status_code == 200, reply.text
    rows = {(r["model"], r["version"]): r for r in FeedbackStore(echo.db).stats()}
    assert rows[("helpers", "code")]["thumbs_up"] == 2 and rows[("helpers", "chat")]["thumbs_down"] == 1


@pytest.mark.skipif(not pathlib.Path("/usr/bin/chromium").exists(), reason="needs the Debian package chromium")
def test_playground_shows_the_answering_member(echo):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install kerasllm[serve])")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(echo.url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length >= 1")
            page.select_option("#model", "helpers")
            page.fill("#prompt", "def play():")
            page.click("#send")
            page.wait_for_selector("#feedback:not(.hidden)", timeout=60_000)
            status = page.inner_text("#status")
        finally:
            browser.close()
    assert "code" in status and "matched" in status


def _cli_error(capsys, *argv):
    """The exit code and stderr of an in-process `kerasllm serve` that must refuse to start."""
    from kerasllm.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["serve", "--rest-port", "0", "--grpc-port", "0", *map(str, argv)])
    return caught.value.code, capsys.readouterr().err


def _config(path, text):
    path.write_text(text)
    return path


GOOD = "members:\n  a: {model: runs/x}\npolicy: {type: rules, rules: [], default: a}\n"


def test_cli_refuses_a_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    code, err = _cli_error(capsys, "--constellation", missing)
    assert code == 2
    assert f"--constellation {missing}" in err and "No constellation config" in err


def test_cli_refuses_a_config_naming_a_missing_member(tmp_path, capsys):
    config = _config(tmp_path / "bad.yaml",
                     "members:\n  a: {model: runs/x}\npolicy: {type: rules, rules: [], default: nobody}\n")
    code, err = _cli_error(capsys, "--constellation", config)
    assert code == 2
    assert f"--constellation {config}" in err and "nobody" in err


def test_cli_refuses_invalid_yaml_and_unknown_keys(tmp_path, capsys):
    broken = _config(tmp_path / "broken.yaml", "members: [unclosed\n")
    code, err = _cli_error(capsys, "--constellation", broken)
    assert code == 2 and "not valid YAML" in err
    typo = _config(tmp_path / "typo.yaml", GOOD + "fallbak: [a]\n")
    code, err = _cli_error(capsys, "--constellation", typo)
    assert code == 2 and "fallbak" in err


def test_cli_refuses_a_name_that_is_not_a_model_name(tmp_path, capsys):
    config = _config(tmp_path / "ok.yaml", GOOD)
    code, err = _cli_error(capsys, "--constellation", config, "--name", "a/b")
    assert code == 2 and "'a/b'" in err and "model name" in err


def test_cli_name_goes_with_one_constellation(tmp_path, capsys):
    one, two = _config(tmp_path / "one.yaml", GOOD), _config(tmp_path / "two.yaml", GOOD)
    code, err = _cli_error(capsys, "--constellation", one, "--constellation", two, "--name", "x")
    assert code == 2 and "--name" in err and "2 constellation files" in err
    (tmp_path / "sub").mkdir()
    clash = _config(tmp_path / "sub" / "one.yaml", GOOD)
    code, err = _cli_error(capsys, "--constellation", one, "--constellation", clash)
    assert code == 2 and "Two constellations are named 'one'" in err


def test_served_name_is_the_flag_then_the_config_name_then_the_file_stem(tmp_path):
    from kerasllm.constellation.servable import constellation_servable

    plain = _config(tmp_path / "rules.yaml", GOOD)
    named = _config(tmp_path / "other.yaml", GOOD + "name: helpers\n")
    assert constellation_servable(plain)[0] == "rules"
    assert constellation_servable(named)[0] == "helpers"
    assert constellation_servable(named, "mine")[0] == "mine"


# ---------------------------------------------------------------- slow: tiny members


def _member_model(root, name, seed):
    from serving.support import make_model_dir

    from kerasllm.generation import get_generator

    path, model = make_model_dir(root, name=name, seed=seed)
    get_generator(model).jit_compile = False  # plain graphs: quick to build in tests
    return path, model


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    from kerasllm.constellation import Constellation, LocalMember, RulesPolicy

    root = tmp_path_factory.mktemp("members")
    built = {"code": _member_model(root, "code", 1), "chat": _member_model(root, "chat", 2)}
    models = {name: model for name, (_, model) in built.items()}
    members = {name: LocalMember(name, model=model) for name, model in models.items()}
    members["broken"] = LocalMember("broken", root / "no-such-model")  # fails when first asked
    policy = RulesPolicy([{"regex": r"^def\b", "member": "code"}, {"keywords": ["broken"], "member": "broken"}],
                         default="chat")
    constellation = Constellation(members, policy, fallback=["chat"], generation={"max_new_tokens": 32})
    dirs = {name: path for name, (path, _) in built.items()}
    return constellation, models, dirs


@pytest.fixture(scope="module")
def served(team, tmp_path_factory):
    from kerasllm.constellation.servable import ConstellationServable
    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.server import BackgroundServer

    constellation, _, _ = team
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


@pytest.mark.slow
@pytest.mark.parametrize("prompt, member, reason", [
    ("def add(a, b):", "code", r"regex '^def\\b' matched"),
    ("Hello there", "chat", "no rule matched: default member"),
])
def test_each_prompt_is_answered_by_the_member_its_rule_names(client, team, prompt, member, reason):
    _, models, _ = team
    raw = client.completions.with_raw_response.create(
        model="team", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    response = raw.parse()
    assert raw.headers["x-kerasllm-member"] == member
    route = response.model_extra["route"]
    assert route["member"] == member and route["failures"] == []
    assert route["reason"] == reason
    assert response.choices[0].model_extra["route"]["member"] == member
    assert response.choices[0].text == _greedy(models[member], prompt)
    assert response.model == "team"


@pytest.mark.slow
def test_chat_routes_on_the_last_user_message(client, team):
    _, models, _ = team
    response = client.chat.completions.create(
        model="team", max_tokens=MAX_TOKENS, temperature=0,
        messages=[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
                  {"role": "user", "content": "def square(x):"}])
    assert response.model_extra["route"]["member"] == "code"
    assert response.choices[0].message.content == _greedy(models["code"], "def square(x):")


@pytest.mark.slow
def test_a_failing_member_falls_back_and_is_reported(client, team):
    _, models, _ = team
    prompt = "a broken member"
    raw = client.completions.with_raw_response.create(
        model="team", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    response = raw.parse()
    route = response.model_extra["route"]
    assert raw.headers["x-kerasllm-member"] == "chat"
    assert route["member"] == "chat"
    assert [f["member"] for f in route["failures"]] == ["broken"]
    assert "no-such-model" in route["failures"][0]["error"]
    assert "fell back to chat" in route["reason"]
    assert response.choices[0].text == _greedy(models["chat"], prompt)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_serves_a_constellation_file_beside_a_model(team, tmp_path):
    """`kerasllm serve --constellation FILE --model-base-path DIR`, as a user runs it."""
    import httpx
    import openai

    from kerasllm.serving.feedback_store import FeedbackStore

    _, _, dirs = team
    config = _config(tmp_path / "pair.yaml", (
        f"name: pair\nmembers:\n  code: {{model: {dirs['code']}}}\n  chat: {{model: {dirs['chat']}}}\n"
        "policy: {type: rules, rules: [{regex: '^def', member: code}], default: chat}\n"
        "fallback: [chat]\ntimeout: 120\n"))
    port, db = _free_port(), tmp_path / "feedback.sqlite"
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasllm.cli", "serve", "--constellation", str(config),
         "--model-base-path", str(dirs["chat"]), "--rest-port", str(port), "--grpc-port", "0",
         "--no-jit-compile", "--feedback-db", str(db)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            time.sleep(0.5)
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        assert sorted(m.id for m in client.models.list().data) == ["chat", "pair"]
        raw = client.completions.with_raw_response.create(
            model="pair", prompt="def h():", max_tokens=3, temperature=0)
        answer = raw.parse()
        assert raw.headers["x-kerasllm-member"] == "code" and answer.model == "pair"
        assert httpx.post(url + "/v1/feedback", json={"id": answer.id, "rating": -1}).status_code == 200
        plain = client.completions.create(model="chat", prompt="def h():", max_tokens=3, temperature=0)
        assert "route" not in (plain.model_extra or {})
    finally:
        process.terminate()
        process.wait(timeout=120)
    assert "constellation 'pair' of chat, code" in log.read_text()
    # What `kerasllm feedback stats --db FILE` prints: one row per member.
    rows = {(r["model"], str(r["version"])): r for r in FeedbackStore(db).stats()}
    assert rows[("pair", "code")]["thumbs_down"] == 1 and rows[("pair", "code")]["completions"] == 1
