"""Ray Serve members: config checks (fast), and two members deployed into
separate Ray worker processes on a local Ray instance (slow)."""

import os
import sys

import pytest

from kerasllm.constellation import Constellation, ConstellationConfigError, RulesPolicy, member_from_config
from kerasllm.constellation.members import RayMember

try:
    import ray  # noqa: F401
    from ray import serve  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray Serve is not installed (pip install kerasllm[ray])")


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install kerasllm\[ray\]"):
        member_from_config("a", {"ray": "a", "model": "runs/a/model"})


@needs_ray
def test_ray_member_config():
    member = member_from_config("english", {"ray": True, "model": "m", "adapter": "ad", "num_cpus": 0.5, "chat": True})
    assert isinstance(member, RayMember) and member.app == "english" and member.chat
    assert member.model_dir == "m" and member.adapter == "ad" and member.num_cpus == 0.5
    connected = member_from_config("remote", {"ray": "apps", "deployment": "MemberReplica", "timeout": 5})
    assert connected.model_dir is None and connected.deployment == "MemberReplica" and connected.timeout == 5
    assert connected.describe()["kind"] == "ray"


@needs_ray
@pytest.mark.parametrize(
    "spec, message",
    [
        ({"ray": "", "model": "m"}, "application name"),
        ({"ray": "a", "adapter": "ad"}, "adapter needs the model_dir"),
        ({"ray": "a", "model": "m", "deployment": "D"}, "not both"),
        ({"ray": "a", "model": "m", "num_replicas": 0}, "num_replicas"),
        ({"ray": "a", "model": "m", "port": 1}, "unknown keys"),
    ],
)
def test_bad_ray_member_configs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        member_from_config("a", spec)


@needs_ray
def test_a_constellation_config_with_ray_members_loads_without_starting_ray():
    config = {
        "members": {"a": {"ray": True, "model": "a/model"}, "b": {"ray": "b-app"}},
        "policy": {"type": "rules", "rules": [{"language": "ja", "member": "b"}], "default": "a"},
    }
    constellation = Constellation.from_config(config, base_dir="/models")
    assert constellation.members["a"].model_dir == "/models/a/model"
    assert not ray.is_initialized()
    with pytest.raises(ConstellationConfigError, match="application name"):
        Constellation.from_config({**config, "members": {**config["members"], "b": {"ray": 3}}})


# ---------------------------------------------------------------- on a local Ray


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Two random tiny GPTs (different seeds) with one small BPE, as model directories."""
    import keras

    import kerasllm
    from kerasllm.models import GPT, GPTConfig
    from kerasllm.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("ray-members")
    documents = ["What is 1 2 + 3 4? 4 6", "カタカナ: さくら サクラ", "Reverse: c a t t a c"] * 20
    tokenizer = train_tokenizer(documents, kind="bpe", vocab_size=300, output_dir=root / "bpe", show_progress=False)
    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        config = GPTConfig.from_preset(
            "tiny", vocab_size=tokenizer.vocabulary_size, num_layers=1, num_heads=2,
            hidden_dim=16, intermediate_dim=32, context_length=32,
        )
        model = GPT(config)
        model.build((None, 32))
        path = root / f"model-{seed}"
        kerasllm.save(model, path, tokenizer=tokenizer)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}})
    yield ray
    ray.shutdown()  # stops the local instance, Serve and its replicas with it


@needs_ray
@pytest.mark.slow
def test_two_ray_members_answer_from_their_own_worker_processes(model_dirs, local_ray):
    from kerasllm.constellation import LocalMember

    english = RayMember("english", model_dir=model_dirs[0], num_cpus=1)
    japanese = RayMember("japanese", model_dir=model_dirs[1], num_cpus=1)
    policy = RulesPolicy([{"language": "ja", "member": "japanese"}], default="english")
    constellation = Constellation(
        {"english": english, "japanese": japanese}, policy, timeout=300,
        generation={"max_new_tokens": 4, "strategy": "greedy"},
    )
    english.handle, japanese.handle  # deploy both now: each replica starts and loads its model
    prompts = ["What is 1 2 + 3 4?", "カタカナ: さくら", "Reverse: c a t"]
    routed = constellation.answer(prompts)
    assert [r.member for r in routed] == ["english", "japanese", "english"], [r.failures for r in routed]

    # The answers are what the same model directories give in this process.
    for name, model_dir in (("english", model_dirs[0]), ("japanese", model_dirs[1])):
        mine = [p for p, r in zip(prompts, routed) if r.member == name]
        expected = LocalMember(name, model_dir).complete(mine, max_new_tokens=4, strategy="greedy")
        assert [r.text for r in routed if r.member == name] == [a.text for a in expected]

    # Each member's answers come from its own Ray worker, not from this process.
    workers = {name: {a.worker for a in member.complete(prompts[:2], max_new_tokens=2)}
               for name, member in (("english", english), ("japanese", japanese))}
    pids = {name: {int(w.rsplit(":", 1)[1]) for w in found} for name, found in workers.items()}
    assert len(pids["english"]) == 1 and len(pids["japanese"]) == 1
    assert pids["english"] != pids["japanese"] and os.getpid() not in pids["english"] | pids["japanese"]

    # A third member connects to the running application by name.
    connected = RayMember("again", app="english", timeout=60)
    [answer] = connected.complete(prompts[:1], max_new_tokens=4, strategy="greedy")
    assert answer.text == routed[0].text and answer.member == "again"
    assert int(answer.worker.rsplit(":", 1)[1]) in pids["english"]
    assert english.prompt_log_likelihood(["abc"])[0] == pytest.approx(
        LocalMember("local", model_dirs[0]).prompt_log_likelihood(["abc"])[0], abs=1e-4)

    english.shutdown()
    with pytest.raises(Exception, match="no running Ray Serve application"):
        RayMember("gone", app="english").complete(["x"])
