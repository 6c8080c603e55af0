"""The members of a constellation: models that answer prompts.

Every member has a `name` and answers a batch of prompts with `complete`,
returning one `Answer` each (text, why it stopped, and, where the member can
tell, its confidence: the mean log-probability of its own answer's tokens).
Members that can score text also give `prompt_log_likelihood` (the mean
log-probability of each prompt), which the perplexity policy compares.

Kinds:
    LocalMember      a kerasllm model directory (optionally with a LoRA adapter),
                     run in this process through the compiled generator
    OpenAIMember     any OpenAI-compatible endpoint (`kerasllm serve`, vLLM, ...)
    TFServingMember  a model behind TensorFlow Serving's REST API (a
                     `kerasllm export` SavedModel)
    RayMember        a Ray Serve deployment: a model directory this member
                     deploys into Ray worker processes, or a running
                     application it connects to (`pip install kerasllm[ray]`)

Remote members speak plain HTTP+JSON with the standard library's client, so a
constellation needs no extra dependency to reach them; only Ray members need
Ray.
"""

import dataclasses
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Optional

from kerasllm.tokenizers.chat_template import IM_END, render_chat

# Generation settings a constellation passes to its members, and their
# names in the OpenAI API.
OPENAI_NAMES = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop"}


@dataclasses.dataclass
class Answer:
    """One member's answer to one prompt.

    Attributes:
        text: the generated text.
        member: the name of the member that wrote it.
        finish_reason: `"stop"` (end token or stop string), `"length"` or
            `"content_filter"`, as the OpenAI API names them.
        confidence: mean log-probability of the answer's tokens under the
            member (higher is surer), or `None` where the member cannot tell.
        num_tokens: tokens generated (`None` if unknown).
        seconds: wall time of the member's call for the batch.
        worker: the process that generated it (`host:pid` of a Ray Serve
            replica), where the member runs elsewhere and says so.
    """

    text: str
    member: str
    finish_reason: str = "stop"
    confidence: Optional[float] = None
    num_tokens: Optional[int] = None
    seconds: float = 0.0
    worker: Optional[str] = None

    def to_dict(self):
        return dataclasses.asdict(self)


class MemberError(RuntimeError):
    """A member failed to answer (unreachable, bad reply, timed out)."""


class Member:
    """Base class: a named model that completes prompts."""

    kind = None

    def __init__(self, name, *, chat=False, timeout=None):
        self.name = name
        self.chat = chat
        self.timeout = timeout  # seconds; None: the constellation's

    def render(self, prompt):
        """The text sent to the model: chat members get the chat template."""
        if self.chat:
            return render_chat([{"role": "user", "content": prompt}], add_generation_prompt=True)
        return prompt

    def complete(self, prompts, **options):
        raise NotImplementedError

    def prompt_log_likelihood(self, prompts):
        raise MemberError(f"member {self.name!r} ({self.kind}) cannot score prompts")

    def describe(self):
        return {"name": self.name, "kind": self.kind, "chat": self.chat}


class LocalMember(Member):
    """A kerasllm model directory, loaded on first use.

    Args:
        name: the member's name.
        model_dir: a model directory (`kerasllm.load` reads it), or `None`
            with `model=`.
        adapter: a LoRA adapter directory to apply on top. Defaults to `None`.
        model: an already loaded `GPT` (with `.tokenizer`). Defaults to `None`.
        chat: prompts are rendered with the chat template and answers stop
            at `<|im_end|>`. Defaults to `False`.
    """

    kind = "local"

    def __init__(self, name, model_dir=None, *, adapter=None, model=None, chat=False, timeout=None):
        super().__init__(name, chat=chat, timeout=timeout)
        if model_dir is None and model is None:
            raise ValueError(f"member {name!r}: give a model directory. Received: model_dir=None")
        self.model_dir = model_dir
        self.adapter = adapter
        self._model = model

    @property
    def model(self):
        if self._model is None:
            if self.adapter:
                from kerasllm.finetune import load_with_adapter

                self._model = load_with_adapter(self.model_dir, self.adapter)
            else:
                import kerasllm

                self._model = kerasllm.load(self.model_dir)
            if self._model.tokenizer is None:
                raise MemberError(f"member {self.name!r}: {self.model_dir} has no tokenizer")
        return self._model

    def complete(self, prompts, **options):
        from kerasllm.constellation.scoring import mean_log_prob, token_log_probs
        from kerasllm.generation import complete

        model = self.model
        tokenizer = model.tokenizer
        texts = [self.render(p) for p in prompts]
        end = tokenizer.token_to_id(IM_END) if self.chat else "auto"
        started = time.perf_counter()
        completions = complete(model, texts, end_token_id=end, **options)
        prompt_ids = [tokenizer.encode(t) for t in texts]
        scores = token_log_probs(model, prompt_ids, [c.token_ids for c in completions])
        seconds = time.perf_counter() - started
        return [
            Answer(
                text=c.text,
                member=self.name,
                finish_reason="length" if c.stop_reason == "length" else "stop",
                confidence=mean_log_prob(s) if len(c.token_ids) else None,
                num_tokens=len(c.token_ids),
                seconds=seconds,
            )
            for c, s in zip(completions, scores)
        ]

    def prompt_log_likelihood(self, prompts):
        from kerasllm.constellation.scoring import mean_log_prob, token_log_probs

        tokenizer = self.model.tokenizer
        # Condition on the end-of-text token, which precedes every document
        # the model was trained on, so the prompt's first token is scored too.
        start = [[tokenizer.end_token_id]] * len(prompts)
        scores = token_log_probs(self.model, start, [tokenizer.encode(self.render(p)) for p in prompts])
        return [mean_log_prob(s) for s in scores]

    def describe(self):
        return {**super().describe(), "model_dir": str(self.model_dir), "adapter": self.adapter}


def _post_json(url, body, *, headers=None, timeout=60.0):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")[:300]
        raise MemberError(f"{url} answered HTTP {error.code}: {detail}") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise MemberError(f"{url} is unreachable: {error}") from error
    except json.JSONDecodeError as error:
        raise MemberError(f"{url} answered with something that is not JSON") from error


class OpenAIMember(Member):
    """An OpenAI-compatible endpoint (`/v1/completions` or `/v1/chat/completions`).

    Args:
        name: the member's name.
        base_url: the API root, e.g. `http://127.0.0.1:8501/v1`.
        model: the model name the endpoint serves.
        api_key: a Bearer token, if the endpoint needs one. Defaults to `None`.
        chat: use `/chat/completions` with one user message. Defaults to
            `False` (`/completions`, which also returns token log-probs).
        timeout: seconds per request. Defaults to 60.
    """

    kind = "openai"

    def __init__(self, name, base_url, model, *, api_key=None, chat=False, timeout=60.0):
        super().__init__(name, chat=chat, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key

    def _body(self, options):
        body = {"model": self.model}
        for ours, theirs in OPENAI_NAMES.items():
            if options.get(ours) not in (None, (), []):
                value = options[ours]
                body[theirs] = list(value) if ours == "stop" else value
        if options.get("strategy") == "greedy":
            body["temperature"] = 0.0
        return body

    def complete(self, prompts, **options):
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        answers = []
        for prompt in prompts:
            body = self._body(options)
            started = time.perf_counter()
            if self.chat:
                body["messages"] = [{"role": "user", "content": prompt}]
                reply = _post_json(f"{self.base_url}/chat/completions", body, headers=headers, timeout=self.timeout)
            else:
                body["prompt"] = prompt
                body["logprobs"] = 1
                reply = _post_json(f"{self.base_url}/completions", body, headers=headers, timeout=self.timeout)
            try:
                choice = reply["choices"][0]
                text = choice["message"]["content"] if self.chat else choice["text"]
            except (KeyError, IndexError, TypeError) as error:
                raise MemberError(f"{self.base_url}: reply without choices[0] text: {str(reply)[:200]}") from error
            confidence = None
            token_logprobs = ((choice.get("logprobs") or {}).get("token_logprobs")) if not self.chat else None
            if token_logprobs:
                values = [v for v in token_logprobs if v is not None]
                confidence = sum(values) / len(values) if values else None
            usage = reply.get("usage") or {}
            answers.append(
                Answer(
                    text=text,
                    member=self.name,
                    finish_reason=choice.get("finish_reason") or "stop",
                    confidence=confidence,
                    num_tokens=usage.get("completion_tokens"),
                    seconds=time.perf_counter() - started,
                )
            )
        return answers

    def describe(self):
        return {**super().describe(), "base_url": self.base_url, "model": self.model}


class TFServingMember(Member):
    """A `kerasllm export` SavedModel behind TensorFlow Serving's REST API.

    Calls `POST {url}/v1/models/{model}:predict` with the export's
    `serving_default` inputs (prompt, max_new_tokens, temperature, top_k,
    top_p, seed) and scores prompts with its `score` signature.

    Args:
        name: the member's name.
        url: the REST root, e.g. `http://127.0.0.1:8501`.
        model: the served model name.
        version: a version number to pin, or `None` for the served default.
        timeout: seconds per request. Defaults to 60.
    """

    kind = "tfserving"

    def __init__(self, name, url, model, *, version=None, chat=False, timeout=60.0):
        super().__init__(name, chat=chat, timeout=timeout)
        self.url = url.rstrip("/")
        self.model = model
        self.version = version

    def _endpoint(self):
        version = f"/versions/{self.version}" if self.version is not None else ""
        return f"{self.url}/v1/models/{self.model}{version}:predict"

    def complete(self, prompts, **options):
        greedy = options.get("strategy", "greedy") == "greedy"
        instances = []
        for prompt in prompts:
            instance = {
                "prompt": self.render(prompt),
                "max_new_tokens": int(options.get("max_new_tokens", 32)),
                "temperature": 0.0 if greedy else float(options.get("temperature", 1.0)),
            }
            if options.get("top_p") is not None:
                instance["top_p"] = float(options["top_p"])
            if options.get("seed") is not None:
                instance["seed"] = int(options["seed"])
            instances.append(instance)
        started = time.perf_counter()
        reply = _post_json(self._endpoint(), {"signature_name": "serving_default", "instances": instances}, timeout=self.timeout)
        seconds = time.perf_counter() - started
        try:
            predictions = reply["predictions"]
        except (KeyError, TypeError) as error:
            raise MemberError(f"{self._endpoint()}: reply without predictions: {str(reply)[:200]}") from error
        answers = []
        for prediction in predictions:
            text = prediction["text"] if isinstance(prediction, dict) else prediction
            if isinstance(text, dict) and "b64" in text:
                import base64

                text = base64.b64decode(text["b64"]).decode("utf-8", "replace")
            reason = prediction.get("stop_reason", "end_token") if isinstance(prediction, dict) else "end_token"
            if self.chat and IM_END in text:
                text = text.split(IM_END, 1)[0]
            answers.append(
                Answer(text=text, member=self.name, finish_reason="length" if reason == "length" else "stop", seconds=seconds)
            )
        return answers

    def prompt_log_likelihood(self, prompts):
        reply = _post_json(
            self._endpoint(),
            {"signature_name": "score", "instances": [{"text": self.render(p)} for p in prompts]},
            timeout=self.timeout,
        )
        try:
            return [p["log_probability"] / max(1, p["num_tokens"]) for p in reply["predictions"]]
        except (KeyError, TypeError) as error:
            raise MemberError(f"{self._endpoint()}: score reply without log_probability") from error

    def describe(self):
        return {**super().describe(), "url": self.url, "model": self.model, "version": self.version}


RAY_INSTALL_HINT = "Ray Serve members need Ray Serve 2.x: pip install kerasllm[ray]"


def _ray_serve():
    """`(ray, ray.serve)`, or an ImportError that says how to install them."""
    try:
        import ray
        from ray import serve
    except ImportError as error:
        raise ImportError(f"{RAY_INSTALL_HINT} ({error})") from error
    return ray, serve


def _worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


class MemberReplica:
    """What one Ray Serve replica runs: a `LocalMember` in its worker process.

    `RayMember` deploys it; it can also be deployed on its own with Ray
    Serve's tools through `ray_app` (`serve run --name APP
    kerasllm.constellation.members:ray_app model_dir=DIR`), and a
    `RayMember` without `model_dir` then connects to it. The model loads
    when the replica starts, so a deployment that is running can answer.
    """

    def __init__(self, name, model_dir, adapter=None, chat=False):
        self.member = LocalMember(name, model_dir, adapter=adapter, chat=chat)
        self.member.model  # noqa: B018 - load now: a bad directory fails the deployment

    def complete(self, prompts, options):
        answers = self.member.complete(list(prompts), **dict(options or {}))
        return {"worker": _worker_id(), "answers": [a.to_dict() for a in answers]}

    def prompt_log_likelihood(self, prompts):
        return self.member.prompt_log_likelihood(list(prompts))

    def describe(self):
        return {**self.member.describe(), "worker": _worker_id()}


def ray_app(args):
    """A Ray Serve application builder for `serve run` and Serve config files.

    `args`: `model_dir` (required), `adapter`, `chat`, `name`,
    `num_replicas`, `num_cpus`, `num_gpus`, as strings or values.

    From the shell:
        serve run --name APP kerasllm.constellation.members:ray_app model_dir=runs/demo/model
    """
    if not args.get("model_dir"):
        raise ValueError(f"ray_app needs model_dir=DIR. Received: {dict(args)!r}")
    chat = str(args.get("chat", False)).lower() in ("1", "true", "yes")
    return _bind_replica(
        str(args.get("name", "member")),
        str(args["model_dir"]),
        adapter=args.get("adapter"),
        chat=chat,
        num_replicas=int(args.get("num_replicas", 1)),
        num_cpus=float(args.get("num_cpus", 1)),
        num_gpus=float(args.get("num_gpus", 0)),
    )


def _bind_replica(name, model_dir, *, adapter, chat, num_replicas, num_cpus, num_gpus=0.0):
    _, serve = _ray_serve()
    resources = {"num_cpus": num_cpus, **({"num_gpus": num_gpus} if num_gpus else {})}
    options = {"name": "MemberReplica", "num_replicas": num_replicas, "ray_actor_options": resources}
    import inspect

    if "max_constructor_retry_count" in inspect.signature(serve.deployment).parameters:
        options["max_constructor_retry_count"] = 1  # a bad model directory fails once, not twenty times
    return serve.deployment(MemberReplica).options(**options).bind(name, model_dir, adapter, chat)


class RayMember(Member):
    """A member served by Ray Serve, in worker processes of a Ray cluster.

    With `model_dir`, the member deploys a Ray Serve application named `app`
    whose replicas each run the model (a `LocalMember`) in their own Ray
    worker process, on whichever node has the CPUs (or GPUs) asked for;
    without it, the member calls the application `app` that is already
    running (deployed by another `RayMember`, by `ray_app`, or any
    deployment with the same `complete(prompts, options)` method). Either
    way it deploys or connects on first use, so loading a config starts
    nothing.

    Args:
        name: the member's name.
        app: the Ray Serve application name. Defaults to `name`.
        model_dir: a model directory to deploy. Defaults to `None` (connect
            to the running application).
        adapter: a LoRA adapter directory to apply on top. Defaults to `None`.
        deployment: the deployment within `app` to call. Defaults to the
            application's ingress.
        address: the Ray cluster to join (`ray.init(address=...)`, e.g.
            `"auto"` or `"ray://head:10001"`). Defaults to the cluster this
            process already joined, else `RAY_ADDRESS`, else a new local one.
        num_replicas: replicas to deploy. Defaults to 1.
        num_cpus: CPUs each replica reserves. Defaults to 1.
        num_gpus: GPUs each replica reserves. Defaults to 0.
        chat: prompts are rendered with the chat template. Defaults to `False`.
        timeout: seconds per call. Defaults to the constellation's.

    Raises:
        ImportError: Ray Serve is not installed (`pip install kerasllm[ray]`).
    """

    kind = "ray"

    def __init__(self, name, app=None, model_dir=None, *, adapter=None, deployment=None, address=None,
                 num_replicas=1, num_cpus=1.0, num_gpus=0.0, chat=False, timeout=None):
        super().__init__(name, chat=chat, timeout=timeout)
        _ray_serve()  # fail at config time, not at the first prompt
        if adapter and not model_dir:
            raise ValueError(f"member {name!r}: an adapter needs the model_dir it applies to. Received: adapter={adapter!r}")
        if model_dir and deployment:
            raise ValueError(
                f"member {name!r}: give model_dir (deploy) or deployment (connect), not both. "
                f"Received: model_dir={model_dir!r}, deployment={deployment!r}"
            )
        if not isinstance(num_replicas, int) or isinstance(num_replicas, bool) or num_replicas < 1:
            raise ValueError(f"member {name!r}: num_replicas must be an int >= 1. Received: {num_replicas!r}")
        self.app = str(app or name)
        self.model_dir = model_dir
        self.adapter = adapter
        self.deployment = deployment
        self.address = address
        self.num_replicas = num_replicas
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self._handle = None
        import threading

        self._lock = threading.Lock()

    @property
    def handle(self):
        """The Ray Serve handle: deploys or connects on first use."""
        with self._lock:
            if self._handle is None:
                self._handle = self._deploy() if self.model_dir else self._connect()
            return self._handle

    def _init_ray(self):
        ray, serve = _ray_serve()
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, include_dashboard=False)
        return serve

    def _deploy(self):
        serve = self._init_ray()
        # Members are called through handles; no HTTP proxy is needed.
        serve.start(proxy_location="Disabled")
        app = _bind_replica(
            self.name, str(self.model_dir), adapter=self.adapter, chat=self.chat,
            num_replicas=self.num_replicas, num_cpus=self.num_cpus, num_gpus=self.num_gpus,
        )
        try:
            return serve.run(app, name=self.app, route_prefix=None)
        except Exception as error:  # noqa: BLE001 - Ray reports a failed replica in many types
            raise MemberError(f"member {self.name!r}: deploying {self.model_dir} as Ray Serve app {self.app!r} failed: {error}") from error

    def _connect(self):
        serve = self._init_ray()
        try:
            if self.deployment:
                return serve.get_deployment_handle(self.deployment, app_name=self.app)
            return serve.get_app_handle(self.app)
        except Exception as error:  # noqa: BLE001
            raise MemberError(
                f"member {self.name!r}: no running Ray Serve application {self.app!r}"
                + (f" with deployment {self.deployment!r}" if self.deployment else "")
                + f" ({error}). Give model_dir to deploy one, or start it with "
                "`serve run --name APP kerasllm.constellation.members:ray_app model_dir=DIR`."
            ) from error

    def _call(self, method, *args):
        try:
            return getattr(self.handle, method).remote(*args).result(timeout_s=self.timeout)
        except MemberError:
            raise
        except Exception as error:  # noqa: BLE001 - a replica's failure is the member's
            raise MemberError(f"member {self.name!r} (Ray Serve app {self.app!r}) failed: {type(error).__name__}: {error}") from error

    def complete(self, prompts, **options):
        reply = self._call("complete", list(prompts), options)
        try:
            answers = [{**a, "member": self.name, "worker": a.get("worker") or reply["worker"]} for a in reply["answers"]]
            return [Answer(**a) for a in answers]
        except (KeyError, TypeError) as error:
            raise MemberError(f"member {self.name!r}: Ray Serve app {self.app!r} answered {str(reply)[:200]}") from error

    def prompt_log_likelihood(self, prompts):
        return list(self._call("prompt_log_likelihood", list(prompts)))

    def shutdown(self):
        """Delete the application this member deployed (a connected one is left running)."""
        if self._handle is not None and self.model_dir:
            _, serve = _ray_serve()
            serve.delete(self.app)
        self._handle = None

    def describe(self):
        return {
            **super().describe(),
            "app": self.app,
            "model_dir": None if self.model_dir is None else str(self.model_dir),
            "adapter": self.adapter,
            "deployment": self.deployment,
            "num_replicas": self.num_replicas,
        }


MEMBER_KINDS = {"model": LocalMember, "openai": OpenAIMember, "tfserving": TFServingMember, "ray": RayMember}


def member_from_config(name, spec):
    """Build a member from its config mapping (see docs/constellation.md).

    `{"model": DIR, "adapter": DIR?, "chat": bool?}` is a local model;
    `{"openai": URL, "model": NAME, "api_key": KEY?}` an OpenAI-compatible
    endpoint; `{"tfserving": URL, "model": NAME, "version": N?}` a TF Serving
    model; `{"ray": APP, "model": DIR?, "adapter": DIR?, "deployment": NAME?,
    "address": ADDR?, "num_replicas": N?, "num_cpus": N?, "num_gpus": N?}` a
    Ray Serve application (`ray: true` names it after the member), deployed
    from `model` or, without it, already running.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"member {name!r} must be a mapping. Received: {spec!r}")
    chat = bool(spec.get("chat", False))
    timeout = float(spec["timeout"]) if spec.get("timeout") is not None else None
    allowed = {"chat", "timeout"}
    if "ray" in spec:
        allowed |= {"ray", "model", "adapter", "deployment", "address", "num_replicas", "num_cpus", "num_gpus"}
        app = spec["ray"]
        if app is True:
            app = name
        if not isinstance(app, str) or not app:
            raise ValueError(f"member {name!r}: 'ray' must be the Ray Serve application name (or true). Received: {app!r}")
        member = RayMember(
            name, app, spec.get("model"), adapter=spec.get("adapter"), deployment=spec.get("deployment"),
            address=spec.get("address"), num_replicas=spec.get("num_replicas", 1), num_cpus=spec.get("num_cpus", 1),
            num_gpus=spec.get("num_gpus", 0), chat=chat, timeout=timeout,
        )
    elif "openai" in spec:
        allowed |= {"openai", "model", "api_key"}
        member = OpenAIMember(name, spec["openai"], spec.get("model", name), api_key=spec.get("api_key"), chat=chat, timeout=timeout or 60.0)
    elif "tfserving" in spec:
        allowed |= {"tfserving", "model", "version"}
        member = TFServingMember(name, spec["tfserving"], spec.get("model", name), version=spec.get("version"), chat=chat, timeout=timeout or 60.0)
    elif "model" in spec:
        allowed |= {"model", "adapter"}
        member = LocalMember(name, spec["model"], adapter=spec.get("adapter"), chat=chat, timeout=timeout)
    else:
        raise ValueError(
            f"member {name!r} needs one of 'model' (a model directory), 'openai' (a URL), "
            f"'tfserving' (a URL) or 'ray' (a Ray Serve application). Received keys: {sorted(spec)}"
        )
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"member {name!r} has unknown keys {unknown}; allowed: {sorted(allowed)}")
    return member
