"""A constellation served as one model: `kerasllm serve --constellation FILE`.

The server's OpenAI endpoints talk to an engine; `ConstellationEngine` is one
whose answers come from the constellation's members. Each request's sampling
settings go to the member the policy picks; the answer carries a `route`
(`{"member", "reason", "failures"}`) that the server returns to the client and
records with the completion, so feedback is counted per member.

A chat request is routed and answered on its last user message: members take
one prompt each (a chat member renders it with the chat template itself), so
earlier turns of the conversation are not passed on.

Streaming (`"stream": true`): the policy has to see an answer before it knows
which member keeps it (a cascade escalates on the small model's confidence, a
fallback replaces a failed member), so a streamed request gets the whole
answer as one piece, then the last chunk with its `route`.

Members that run here (`LocalMember`) are loaded and run once on a short
prompt before the server takes traffic, so the first request does not spend
its member timeout on loading and compiling; one that fails to load is
logged and left to fail (and fall back) on each request.

TF Serving's tensor API (`:predict`, gRPC `Predict`) needs one model's
signatures; a constellation has none and refuses those calls with a message
saying so.
"""

import logging
import pathlib

import grpc

from kerasllm.constellation.constellation import Constellation
from kerasllm.constellation.members import LocalMember

from kerasllm.serving.engines import Engine, GenerationResult, cut_at_stop
from kerasllm.serving.errors import ServingError, unavailable
from kerasllm.serving.servables import Servable

log = logging.getLogger(__name__)


def _prompt(request):
    """What the members are asked: the last user message of a chat, else the prompt."""
    for message in reversed(request.messages or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
    return request.prompt


def _generation(request):
    """The member generation settings of one request (a hashable key, a dict)."""
    greedy = request.temperature == 0
    options = {"max_new_tokens": int(request.max_tokens), "strategy": "greedy" if greedy else "sample"}
    if not greedy:
        options.update(temperature=float(request.temperature), top_p=float(request.top_p))
        if request.seed is not None:
            options["seed"] = int(request.seed)
    if request.stop:
        options["stop"] = list(request.stop)
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())), options


class ConstellationEngine(Engine):
    """Answers requests through `Constellation.answer`.

    Args:
        constellation: a `kerasllm.constellation.Constellation`.
    """

    def __init__(self, constellation):
        super().__init__()
        self.constellation = constellation

    def generate_batch(self, requests):
        results = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            key, options = _generation(request)
            groups.setdefault(key, (options, []))[1].append(index)
        for options, indices in groups.values():
            prompts = [_prompt(requests[i]) for i in indices]
            try:
                routed = self.constellation.answer(prompts, generation=options)
            except ValueError as error:
                for i in indices:
                    results[i] = ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error))
                continue
            for i, answer in zip(indices, routed):
                results[i] = self._result(answer, requests[i])
        return results

    @staticmethod
    def _result(answer, request):
        route = {"member": answer.member, "reason": answer.reason, "failures": answer.failures}
        if answer.text is None:
            failed = "; ".join(f"{f['member']}: {f['error']}" for f in answer.failures) or answer.reason
            return unavailable(f"Every member of the constellation failed: {failed}")
        # Members cut at their own stop strings; an OpenAI member may not.
        text, stopped = cut_at_stop(answer.text, request.stop)
        return GenerationResult(
            text=text,
            finish_reason="stop" if stopped else (answer.finish_reason or "stop"),
            prompt_tokens=0,
            completion_tokens=int(answer.num_tokens or 0),
            route=route,
        )


class ConstellationServable(Servable):
    """A constellation in the server's model table (the text APIs only).

    Args:
        constellation: a `kerasllm.constellation.Constellation`.
        name: the served model name (for messages).
        jit_compile: `False` runs local members' decode programs without XLA
            (`kerasllm serve --no-jit-compile`). Defaults to `None` (each
            member's own setting).
    """

    def __init__(self, constellation, name, *, jit_compile=None):
        self.name = name
        self.jit_compile = jit_compile
        self.constellation = constellation
        self.signature_defs = {}
        self.engine = ConstellationEngine(constellation)

    def check_signature(self, signature_name):
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{self.name!r} is a constellation of models ({', '.join(sorted(self.constellation.members))}): "
            "it answers /v1/completions and /v1/chat/completions only. TF Serving's predict "
            "needs one model's signatures; serve that model by itself.",
        )

    def predict(self, signature_name, inputs, output_filter=()):
        self.check_signature(signature_name)

    def warmup(self):
        """Load and run each local member once; a member that fails is logged, not fatal."""
        warmed = 0
        for member in self.constellation.members.values():
            if not isinstance(member, LocalMember):
                continue
            try:
                if self.jit_compile is not None:
                    from kerasllm.generation import get_generator

                    get_generator(member.model).jit_compile = self.jit_compile
                with self.engine.lock:
                    member.complete(["Hello"], max_new_tokens=4, strategy="greedy")
            except Exception as error:  # noqa: BLE001 - reported, the member falls back per request
                log.warning("constellation %s: member %r did not warm up (%s: %s); requests routed to it "
                            "will fall back", self.name, member.name, type(error).__name__, error)
            else:
                warmed += 1
        return warmed


def constellation_servable(path, name=None, *, calibrate=True, jit_compile=None):
    """`(name, ConstellationServable)` from a constellation YAML file.

    The name is `name`, else the config's `name:`, else the file's stem
    (`rules.yaml` serves as `rules`).
    """
    path = pathlib.Path(path)
    constellation = Constellation.from_yaml(path, calibrate=calibrate)
    name = name or constellation.name or path.stem
    return name, ConstellationServable(constellation, name, jit_compile=jit_compile)
