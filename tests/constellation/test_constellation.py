"""Constellation: config validation, each policy's routing, fallback and timeouts.

Routing logic is tested with scripted members (plain Python, no model), so
each policy's decision can be checked exactly; `test_local_member.py` runs
real models.
"""

import time

import pytest

from kerasllm.constellation import (
    Answer,
    CascadePolicy,
    Constellation,
    ConstellationConfigError,
    Member,
    MemberError,
    RulesPolicy,
    detect_language,
)


class Scripted(Member):
    """A member whose answers and confidences are given by a function."""

    kind = "scripted"

    def __init__(self, name, answer=None, confidence=None, fail=False, delay=0.0, likelihood=None):
        super().__init__(name)
        self.answer = answer or (lambda p: f"{name}:{p}")
        self.confidence = confidence or (lambda p: -1.0)
        self.fail = fail
        self.delay = delay
        self.likelihood = likelihood
        self.calls = []

    def complete(self, prompts, **options):
        self.calls.append(list(prompts))
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("connection refused")
        return [Answer(self.answer(p), self.name, confidence=self.confidence(p)) for p in prompts]

    def prompt_log_likelihood(self, prompts):
        return [self.likelihood(p) for p in prompts]


def test_rules_route_by_regex_keyword_and_language():
    members = {"code": Scripted("code"), "ja": Scripted("ja"), "general": Scripted("general")}
    policy = RulesPolicy(
        [
            {"regex": r"^def |import ", "member": "code"},
            {"keywords": ["Python", "pip"], "member": "code"},
            {"language": "ja", "member": "ja"},
        ],
        default="general",
    )
    constellation = Constellation(members, policy)
    routed = constellation.answer(["def f():", "how do I use PIP?", "東京はどこですか", "hello there"])
    assert [r.member for r in routed] == ["code", "code", "ja", "general"]
    assert routed[0].text == "code:def f():"
    assert "regex" in routed[0].reason and "keyword 'pip'" in routed[1].reason
    assert "language is ja" in routed[2].reason and "default" in routed[3].reason
    # Members are called once per batch with all their prompts.
    assert members["code"].calls == [["def f():", "how do I use PIP?"]]


def test_detect_language_by_script():
    assert detect_language("ひらがなとカタカナ") == "ja"
    assert detect_language("漢字だけでもかなが一つあれば日本語") == "ja"
    assert detect_language("中文句子") == "zh"
    assert detect_language("한국어") == "ko"
    assert detect_language("plain English") == "en"
    assert detect_language("1234 !?") == "und"


def test_failed_member_falls_back_in_order_and_is_reported():
    members = {"a": Scripted("a", fail=True), "b": Scripted("b", fail=True), "c": Scripted("c")}
    constellation = Constellation(members, RulesPolicy([], default="a"), fallback=["b", "c"])
    [routed] = constellation.answer(["x"])
    assert routed.member == "c" and routed.text == "c:x"
    assert [f["member"] for f in routed.failures] == ["a", "b"]
    assert "connection refused" in routed.failures[0]["error"]
    assert "fell back to c" in routed.reason


def test_every_member_failing_gives_no_answer_not_an_exception():
    constellation = Constellation({"a": Scripted("a", fail=True)}, RulesPolicy([], default="a"))
    [routed] = constellation.answer(["x"])
    assert routed.text is None and routed.member is None
    assert routed.failures[0]["member"] == "a"


def test_a_member_that_times_out_is_skipped():
    members = {"slow": Scripted("slow", delay=2.0), "fast": Scripted("fast")}
    constellation = Constellation(members, RulesPolicy([], default="slow"), fallback=["fast"], timeout=0.2)
    started = time.perf_counter()
    [routed] = constellation.answer(["x"])
    assert time.perf_counter() - started < 1.5
    assert routed.member == "fast"
    assert "timed out after 0.2 s" in routed.failures[0]["error"]


def test_cascade_escalates_below_the_threshold():
    # The cheap member is sure of short prompts only.
    cheap = Scripted("cheap", confidence=lambda p: -0.1 if len(p) < 4 else -2.0)
    strong = Scripted("strong", confidence=lambda p: -0.5)
    constellation = Constellation({"cheap": cheap, "strong": strong}, CascadePolicy(["cheap", "strong"], threshold=-1.0))
    routed = constellation.answer(["ab", "abcdef"])
    assert [r.member for r in routed] == ["cheap", "strong"]
    assert "confidence -0.100 >= -1.000" in routed[0].reason
    assert "cheap: confidence -2.000 < -1.000, escalated" in routed[1].reason
    assert strong.calls == [["abcdef"]]  # only the unsure prompt went up


def test_cascade_keeps_the_cheap_answer_when_the_strong_member_fails():
    cheap = Scripted("cheap", confidence=lambda p: -5.0)
    constellation = Constellation(
        {"cheap": cheap, "strong": Scripted("strong", fail=True)}, CascadePolicy(["cheap", "strong"], threshold=-1.0)
    )
    [routed] = constellation.answer(["q"])
    assert routed.member == "cheap" and routed.text == "cheap:q"
    assert routed.failures[0]["member"] == "strong"


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_cascade_calibration_hits_the_target_share(share):
    prompts = [f"p{i}" for i in range(40)]
    confidences = {p: -i / 10 for i, p in enumerate(prompts)}  # distinct values
    cheap = Scripted("cheap", confidence=confidences.__getitem__)
    constellation = Constellation({"cheap": cheap, "strong": Scripted("strong")}, CascadePolicy(["cheap", "strong"]))
    constellation.calibrate(prompts, share)
    routed = constellation.answer(prompts)
    escalated = sum(r.member == "strong" for r in routed) / len(prompts)
    assert abs(escalated - share) <= 1 / len(prompts)


def test_perplexity_picks_the_member_that_finds_the_prompt_likeliest():
    from kerasllm.constellation import PerplexityPolicy

    members = {
        "code": Scripted("code", likelihood=lambda p: -0.5 if "def" in p else -3.0),
        "prose": Scripted("prose", likelihood=lambda p: -1.0),
    }
    constellation = Constellation(members, PerplexityPolicy(["code", "prose"]))
    routed = constellation.answer(["def f(x):", "once upon a time"])
    assert [r.member for r in routed] == ["code", "prose"]
    assert "lowest prompt perplexity" in routed[0].reason


def test_config_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ConstellationConfigError, match=r"do not exist: \['missing'\]"):
        Constellation.from_config(
            {"members": {"a": {"model": "x"}}, "policy": {"type": "rules", "rules": [], "default": "missing"}}
        )
    with pytest.raises(ConstellationConfigError, match="Unknown policy type 'oracle'"):
        Constellation.from_config({"members": {"a": {"model": "x"}}, "policy": {"type": "oracle"}})
    with pytest.raises(ConstellationConfigError, match="needs one of 'model'"):
        Constellation.from_config({"members": {"a": {"path": "x"}}, "policy": {"type": "rules", "default": "a"}})
    with pytest.raises(ConstellationConfigError, match="Unknown constellation config keys"):
        Constellation.from_config({"members": {}, "policy": {}, "routers": 1})
    with pytest.raises(ConstellationConfigError, match=r"rules\[0\] needs exactly one of"):
        Constellation.from_config(
            {"members": {"a": {"model": "x"}}, "policy": {"type": "rules", "rules": [{"member": "a"}], "default": "a"}}
        )
    with pytest.raises(ConstellationConfigError, match="regex does not compile"):
        Constellation.from_config(
            {"members": {"a": {"model": "x"}}, "policy": {"type": "rules", "rules": [{"regex": "(", "member": "a"}], "default": "a"}}
        )
    with pytest.raises(ConstellationConfigError, match="No constellation config at"):
        Constellation.from_yaml(tmp_path / "absent.yaml")


def test_member_error_is_a_runtime_error():
    assert issubclass(MemberError, RuntimeError)
