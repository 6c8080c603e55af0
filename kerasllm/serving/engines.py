"""Generation engines: the text-in, text-out side of a served model.

The OpenAI endpoints and the dynamic batcher talk to an engine, whatever runs
the model underneath:

- `GeneratorEngine`: a kerasllm model directory, through the compiled
  `kerasllm.generation.Generator` (streams token by token).
- `SignatureEngine`: a `kerasllm export` SavedModel, through its
  `serving_default` signature (per-row sampling inputs, so any requests batch
  together; a stream gets the text in one piece when it is done).
- `kerasllm.serving.remote.RemoteEngine`: the same signature on a TensorFlow
  Serving replica.
"""

import dataclasses
import threading
from typing import Optional, Tuple

import numpy as np

from kerasllm.serving.errors import invalid

FINISH_REASONS = {"end_token": "stop", "stop_string": "stop", "length": "length"}


@dataclasses.dataclass
class GenerationRequest:
    """One completion to make (an OpenAI request with `n` makes `n` of them)."""

    prompt: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: Optional[int] = None
    stop: Tuple[str, ...] = ()
    # The conversation of a chat request (`prompt` is it rendered with the
    # chat template), for engines that route by the user's own words.
    messages: Optional[tuple] = None

    def batch_key(self):
        """Requests with equal keys can run as rows of one `Generator` call."""
        greedy = self.temperature == 0
        return (
            self.max_tokens,
            greedy,
            None if greedy else float(self.temperature),
            None if greedy else float(self.top_p),
            None if greedy else self.seed,
            self.stop,
        )


@dataclasses.dataclass
class GenerationResult:
    """One completion, as the server reports it.

    `route` is set by engines that choose among several models (a
    constellation): `{"member", "reason", "failures"}`, returned to the
    client and recorded with the completion.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    route: Optional[dict] = None


def cut_at_stop(text, stop):
    """`(text, True)` cut where the first stop string begins, else `(text, False)`."""
    starts = [text.find(s) for s in stop if s and s in text]
    if not starts:
        return text, False
    return text[: min(starts)], True


class Engine:
    """What the server asks of a model that generates text."""

    #: The model's context length in tokens (prompt + new tokens), if known.
    context_length = None

    def __init__(self):
        # One generation at a time on the model: batches and stream steps
        # take turns at decode-step boundaries.
        self.lock = threading.Lock()

    def count_tokens(self, text):
        """Tokens in `text`, or `None` when the engine cannot tell cheaply."""
        return None

    def generate_batch(self, requests):
        """A `GenerationResult` or a `ServingError` per request, in order."""
        raise NotImplementedError

    def stream(self, request):
        """Yields text pieces, then returns the `GenerationResult`.

        Used as `result = yield from engine.stream(request)`; the caller
        takes `self.lock` around each step.
        """
        [result] = self.generate_batch([request])
        if isinstance(result, Exception):
            raise result
        if result.text:
            yield result.text
        return result


class GeneratorEngine(Engine):
    """A Keras GPT with its tokenizer, through `kerasllm.generation.Generator`.

    Args:
        model: a `kerasllm.models.GPT` with `.tokenizer`.
        jit_compile: compile the decode programs with XLA. Defaults to `True`.
    """

    def __init__(self, model, jit_compile=True):
        super().__init__()
        from kerasllm.generation import Generator

        self.model = model
        self.tokenizer = model.tokenizer
        self.generator = Generator(model, jit_compile=jit_compile)
        self.context_length = int(model.config.context_length)

    def count_tokens(self, text):
        return len(self.tokenizer.encode(text))

    def _options(self, request):
        greedy = request.temperature == 0
        options = {
            "max_new_tokens": request.max_tokens,
            "strategy": "greedy" if greedy else "sample",
            "stop": request.stop,
        }
        if not greedy:
            options.update(temperature=float(request.temperature), top_p=float(request.top_p))
            if request.seed is not None:
                options["seed"] = int(request.seed)
        return options

    def _result(self, completion):
        return GenerationResult(
            text=completion.text,
            finish_reason=FINISH_REASONS.get(completion.stop_reason, "stop"),
            prompt_tokens=completion.num_prompt_tokens,
            completion_tokens=len(completion.token_ids),
        )

    def generate_batch(self, requests):
        results = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.batch_key(), []).append(index)
        for indices in groups.values():
            options = self._options(requests[indices[0]])
            prompts = [requests[i].prompt for i in indices]
            try:
                completions = self.generator.complete(prompts, **options)
            except ValueError as error:
                if len(indices) == 1:
                    results[indices[0]] = invalid(str(error))
                    continue
                # One bad row must not fail its neighbours: run them alone.
                for i in indices:
                    results[i] = self.generate_batch([requests[i]])[0]
                continue
            for i, completion in zip(indices, completions):
                results[i] = self._result(completion)
        return results

    def stream(self, request):
        inner = self.generator.stream_completion(request.prompt, **self._options(request))
        completion = None
        try:
            for piece in inner:
                if isinstance(piece, str):
                    yield piece
                else:
                    completion = piece
        except ValueError as error:
            raise invalid(str(error)) from error
        finally:
            inner.close()
        # The completion's text is the pieces joined; its record says how it ended.
        return self._result(completion)


class SignatureEngine(Engine):
    """A `kerasllm export` SavedModel's text signature (prompt → text).

    Args:
        servable: a `SavedModelServable` (its `predict` runs a signature).
        signature: the signature taking `prompt` and giving `text`.
    """

    def __init__(self, servable, signature="serving_default"):
        super().__init__()
        self.servable = servable
        self.signature = signature
        self.context_length = servable.context_length

    def count_tokens(self, text):
        if "score" not in self.servable.signature_defs:
            return None
        outputs = self.servable.predict("score", {"text": np.array([text.encode("utf-8")], object)})
        return int(outputs["num_tokens"][0])

    def _inputs(self, requests):
        wanted = self.servable.signature_defs[self.signature].inputs
        columns = {
            "prompt": np.array([r.prompt.encode("utf-8") for r in requests], object),
            "max_new_tokens": np.array([r.max_tokens for r in requests], np.int32),
            "temperature": np.array([r.temperature for r in requests], np.float32),
            "top_k": np.zeros([len(requests)], np.int32),
            "top_p": np.array([r.top_p for r in requests], np.float32),
            "seed": np.array(
                [r.seed if r.seed is not None else np.random.randint(2**31 - 1) for r in requests],
                np.int32,
            ),
        }
        return {k: v for k, v in columns.items() if k in wanted}

    def _predict(self, requests):
        return self.servable.predict(self.signature, self._inputs(requests))

    def generate_batch(self, requests):
        try:
            outputs = self._predict(requests)
        except Exception as error:  # noqa: BLE001 (each row gets its own error)
            if len(requests) == 1:
                return [error]
            return [self.generate_batch([r])[0] for r in requests]
        prompt_tokens = self._prompt_tokens(requests)
        results = []
        for i, request in enumerate(requests):
            text = outputs["text"][i].decode("utf-8", "replace")
            ids = outputs["token_ids"][i] if "token_ids" in outputs else []
            count = int(np.sum(np.asarray(ids) >= 0))
            reason = outputs["stop_reason"][i].decode() if "stop_reason" in outputs else "end_token"
            text, stopped = cut_at_stop(text, request.stop)
            results.append(
                GenerationResult(
                    text=text,
                    finish_reason="stop" if stopped else FINISH_REASONS.get(reason, "stop"),
                    prompt_tokens=prompt_tokens[i],
                    completion_tokens=count,
                )
            )
        return results

    def _prompt_tokens(self, requests):
        if "score" not in self.servable.signature_defs:
            return [0] * len(requests)
        texts = np.array([r.prompt.encode("utf-8") for r in requests], object)
        return [int(n) for n in self.servable.predict("score", {"text": texts})["num_tokens"]]
