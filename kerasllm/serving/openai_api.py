"""The OpenAI-compatible endpoints: `/v1/completions`, `/v1/chat/completions`, `/v1/models`.

Requests and responses follow the OpenAI API (and what vLLM, TGI and
llama.cpp serve), so the `openai` client works unchanged:

- `model` names a served model (its latest available version).
- `max_tokens`, `temperature` (0: greedy), `top_p`, `stop` (up to 4
  strings), `seed`, `n`, `stream` (+ `stream_options.include_usage`).
- Responses carry an `id` (the handle for `POST /v1/feedback`), `usage` and
  each choice's `finish_reason`: `"stop"`, `"length"` or `"content_filter"`.
- `"stream": true` sends server-sent events, one `data: {chunk}` per piece,
  ending with `data: [DONE]`; a piece never splits a UTF-8 character.
- A model that routes between several (a constellation) adds `route`
  (`{"member", "reason", "failures"}`) to each choice and to the response,
  the header `x-kerasllm-member`, and `route` on a stream's last chunk.
- Errors are `{"error": {"message", "type", "param", "code"}}` with 400
  (bad request, prompt too long), 401, 404 (unknown model), 413, 429, 503.

A chat prompt is the conversation rendered with `render_chat` (the one chat
template, with the assistant turn opened); generation stops at `<|im_end|>`.
"""

import asyncio
import concurrent.futures
import json
import time
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, StreamingResponse

from kerasllm.serving.engines import GenerationRequest
from kerasllm.serving.errors import ServingError

# Stream pieces left unfinished by a disconnected client are closed here,
# off the event loop (closing takes the engine's lock).
_CLOSER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="stream-close")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}


def openai_error(status, message, param=None, code=None):
    return JSONResponse(
        {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                   "param": param, "code": code}},
        status_code=status,
    )


class BadRequest(Exception):
    def __init__(self, message, param=None, status=400, code=None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


async def read_json(request):
    """The body as a JSON object, or `BadRequest` saying what is wrong."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"The request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _sampling(body, config, *, default_max_tokens):
    """Validated sampling fields of a completion or chat request."""
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = default_max_tokens
    if not _is_int(max_tokens) or max_tokens < 1:
        raise BadRequest(f"max_tokens must be an integer >= 1. Received: {max_tokens!r}", "max_tokens")
    if max_tokens > config.max_tokens_limit:
        raise BadRequest(
            f"max_tokens is at most {config.max_tokens_limit} on this server "
            f"(--max-tokens-limit). Received: {max_tokens}", "max_tokens")
    temperature = body.get("temperature", 1.0)
    temperature = 1.0 if temperature is None else temperature
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        raise BadRequest(f"temperature must be a number in [0, 2]. Received: {temperature!r}", "temperature")
    top_p = body.get("top_p", 1.0)
    top_p = 1.0 if top_p is None else top_p
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise BadRequest(f"top_p must be a number in (0, 1]. Received: {top_p!r}", "top_p")
    n = body.get("n", 1)
    n = 1 if n is None else n
    if not _is_int(n) or not 1 <= n <= config.max_n:
        raise BadRequest(f"n must be an integer from 1 to {config.max_n} (--max-n). Received: {n!r}", "n")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**31 - config.max_n):
        raise BadRequest(f"seed must be an integer in [0, 2**31 - {config.max_n}). Received: {seed!r}", "seed")
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest(f"stop must be a non-empty string or a list of up to 4. Received: {body.get('stop')!r}", "stop")
    stream = body.get("stream", False)
    stream = False if stream is None else stream
    if not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false. Received: {stream!r}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("stream_options must be an object.", "stream_options")
    for name in ("logprobs", "echo", "best_of", "suffix", "tools", "functions", "logit_bias"):
        value = body.get(name)
        if value not in (None, False, {}, []) and not (name == "best_of" and value == 1):
            raise BadRequest(f"{name} is not supported by this server. Received: {value!r}", name)
    for name in ("presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value not in (None, 0, 0.0):
            raise BadRequest(f"{name} is not supported by this server (only 0). Received: {value!r}", name)
    return {
        "max_tokens": max_tokens, "temperature": float(temperature), "top_p": float(top_p),
        "n": n, "seed": seed, "stop": stop, "stream": stream,
        "include_usage": bool(options.get("include_usage")),
        "max_tokens_given": body.get("max_tokens", body.get("max_completion_tokens")) is not None,
    }


def _model(body, state):
    name = body.get("model")
    names = state.manager.names()
    if name is None and len(names) == 1:
        name = names[0]
    if not isinstance(name, str):
        raise BadRequest(f"model must be a string naming a served model: {names}. Received: {name!r}", "model")
    if name not in names:
        raise BadRequest(
            f"The model {name!r} does not exist on this server; it serves {names}.",
            "model", status=404, code="model_not_found")
    try:
        version, servable = state.manager.get(name)
    except ServingError as error:
        raise BadRequest(error.message, "model", status=503) from None
    if servable.engine is None:
        raise BadRequest(f"The model {name!r} has no text-generation signature.", "model")
    return name, version, servable


async def _check_length(servable, prompt, params, state, *, chat):
    """Token count of the prompt; 400 naming the limit when it does not fit."""
    engine = servable.engine
    count = await run_in_threadpool(engine.count_tokens, prompt)
    if count is None:
        return None, params["max_tokens"]
    limit = state.config.max_prompt_tokens
    if count > limit:
        raise BadRequest(
            f"The prompt has {count} tokens; this server's limit is {limit} tokens "
            "(--max-prompt-tokens).", "messages" if chat else "prompt", code="prompt_too_long")
    context = engine.context_length
    max_tokens = params["max_tokens"]
    if context is not None:
        room = context - count
        if chat and not params["max_tokens_given"]:
            max_tokens = max(1, min(max_tokens, room))
        if count + max_tokens > context:
            raise BadRequest(
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {count + max_tokens} tokens ({count} in the prompt, {max_tokens} "
                "for the completion). Shorten the prompt or lower max_tokens.",
                "messages" if chat else "prompt", code="context_length_exceeded")
    return count, max_tokens


def _requests(prompt, params, max_tokens, stop, messages=None):
    return [
        GenerationRequest(
            prompt=prompt, max_tokens=max_tokens, temperature=params["temperature"],
            top_p=params["top_p"],
            seed=None if params["seed"] is None else params["seed"] + i,
            stop=tuple(stop),
            messages=None if messages is None else tuple(messages),
        )
        for i in range(params["n"])
    ]


def _filter(state, text, finish_reason):
    if state.output_filter is None:
        return text, finish_reason
    text, flagged = state.output_filter.check(text)
    return text, ("content_filter" if flagged else finish_reason)


def _record(state, completion_id, index, *, name, version, endpoint, prompt, text, finish, params,
            messages=None, route=None):
    if state.feedback is None:
        return
    if route and route.get("member"):
        # A routed answer is recorded under the member that wrote it, so
        # `kerasllm feedback stats` rates each member of a constellation.
        version = route["member"]
    sampling = {k: params[k] for k in ("max_tokens", "temperature", "top_p", "seed", "stop", "n")}
    state.feedback.record_completion(
        completion_id, index, model=name, version=version, endpoint=endpoint, prompt=prompt,
        completion=text, finish_reason=finish, params=sampling, messages=messages)


async def _generate_all(servable, requests):
    futures = [servable.batcher.submit(r) for r in requests]
    return await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))


def _usage(prompt_tokens, completion_tokens):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def completions(request, state):
    return await _handle(request, state, chat=False)


async def chat_completions(request, state):
    return await _handle(request, state, chat=True)


async def _handle(request, state, *, chat):
    from kerasllm.tokenizers.chat_template import ChatFormatError, IM_END, render_chat

    try:
        body = await read_json(request)
        name, version, servable = _model(body, state)
        params = _sampling(body, state.config, default_max_tokens=(
            state.config.max_tokens_limit if chat else state.config.default_max_tokens))
        messages = None
        if chat:
            messages = body.get("messages")
            try:
                prompt = render_chat(messages, add_generation_prompt=True)
            except ChatFormatError as error:
                raise BadRequest(str(error), "messages") from None
            stop = params["stop"] + [IM_END]
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise BadRequest(
                    f"prompt must be a string (token-id prompts and batches of prompts are not "
                    f"served; send one request per prompt). Received: {type(prompt).__name__}",
                    "prompt")
            stop = params["stop"]
        prompt_tokens, max_tokens = await _check_length(servable, prompt, params, state, chat=chat)
        params["max_tokens"] = max_tokens
        requests = _requests(prompt, params, max_tokens, stop, messages)
    except BadRequest as error:
        return openai_error(error.status, error.message, error.param, error.code)
    except ServingError as error:
        return openai_error(error.http_status, error.message)
    completion_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    endpoint = "chat.completions" if chat else "completions"
    record = dict(name=name, version=version, endpoint=endpoint, prompt=prompt,
                  params=params, messages=messages)
    if params["stream"]:
        events = _stream_events(state, servable, requests, completion_id, created, name, chat,
                                params["include_usage"], record)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        results = await _generate_all(servable, requests)
    except ServingError as error:
        return openai_error(error.http_status, error.message)
    choices, completion_tokens = [], 0
    for index, result in enumerate(results):
        text, finish = _filter(state, result.text, result.finish_reason)
        completion_tokens += result.completion_tokens
        await run_in_threadpool(_record, state, completion_id, index, text=text, finish=finish,
                                route=result.route, **record)
        if chat:
            choice = {"index": index, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        if result.route is not None:
            choice["route"] = result.route
        choices.append(choice)
    prompt_tokens = prompt_tokens if prompt_tokens is not None else results[0].prompt_tokens
    body = {
        "id": completion_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": name,
        "system_fingerprint": f"{name}-v{version}",
        "choices": choices,
        "usage": _usage(prompt_tokens, completion_tokens),
    }
    headers = None
    if results[0].route is not None:
        # Which model of a constellation answered, and why (the first choice's).
        body["route"] = results[0].route
        headers = {"x-kerasllm-member": str(results[0].route.get("member"))}
    return JSONResponse(body, headers=headers)


def _step(engine, iterator):
    """One piece of a stream, under the engine's lock: `(piece, None)` or `(None, result)`."""
    with engine.lock:
        try:
            return next(iterator), None
        except StopIteration as stop:
            return None, stop.value


def _close(engine, iterator):
    with engine.lock:
        iterator.close()


def _sse(obj):
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _stream_events(state, servable, requests, completion_id, created, name, chat,
                         include_usage, record):
    engine = servable.engine
    kind = "chat.completion.chunk" if chat else "text_completion"
    output_filter = state.output_filter
    holdback = output_filter.holdback if output_filter is not None else 0

    def chunk(index, text=None, finish=None, role=False, route=None):
        if chat:
            delta = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        payload = {"id": completion_id, "object": kind, "created": created, "model": name,
                   "system_fingerprint": f"{name}-v{record['version']}", "choices": [choice]}
        if include_usage:
            payload["usage"] = None
        if route is not None:
            payload["route"] = route
        return _sse(payload)

    state.stream_opened()
    iterator = None
    prompt_tokens = completion_tokens = 0
    try:
        for index, request in enumerate(requests):
            if chat:
                yield chunk(index, "", role=True)
            iterator = engine.stream(request)
            text, sent, result = "", 0, None
            finish = None
            while result is None:
                try:
                    piece, result = await run_in_threadpool(_step, engine, iterator)
                except ServingError as error:
                    yield _sse({"error": {"message": error.message, "type": "invalid_request_error"}})
                    return
                if piece:
                    text += piece
                    if output_filter is not None:
                        kept, flagged = output_filter.check(text)
                        if flagged:
                            text, finish = kept, "content_filter"
                            _CLOSER.submit(_close, engine, iterator)
                            iterator = None
                            break
                    # Hold back a tail that could begin a filtered word.
                    end = max(sent, len(text) - holdback)
                    if end > sent:
                        yield chunk(index, text[sent:end])
                        sent = end
            iterator = None
            if result is not None:
                finish = finish or result.finish_reason
                prompt_tokens = result.prompt_tokens or 0
                completion_tokens += result.completion_tokens
            if len(text) > sent:
                yield chunk(index, text[sent:])
            route = result.route if result is not None else None
            yield chunk(index, finish=finish, route=route)
            await run_in_threadpool(_record, state, completion_id, index, text=text, finish=finish,
                                    route=route, **record)
        if include_usage:
            payload = {"id": completion_id, "object": kind, "created": created, "model": name,
                       "choices": [], "usage": _usage(prompt_tokens, completion_tokens)}
            yield _sse(payload)
        yield "data: [DONE]\n\n"
    finally:
        if iterator is not None:
            # The client went away mid-stream: end its generation so the
            # model's turn goes to the other requests.
            _CLOSER.submit(_close, engine, iterator)
        state.stream_closed()


async def list_models(request, state):
    data = []
    for name in state.manager.names():
        versions = state.manager.available(name)
        data.append({"id": name, "object": "model", "created": int(time.time()),
                     "owned_by": "kerasllm", "versions": [str(v) for v in versions]})
    return JSONResponse({"object": "list", "data": data})


async def feedback(request, state):
    """`POST /v1/feedback`: `{id, rating: 1 | -1}` or `{id, preferred: text}` (+ `index`)."""
    if state.feedback is None:
        return openai_error(503, "Feedback is off on this server: start it with --feedback-db FILE.")
    try:
        body = await read_json(request)
        completion_id = body.get("id")
        if not isinstance(completion_id, str) or not completion_id or len(completion_id) > 200:
            raise BadRequest(f"id must be the id of a completion. Received: {completion_id!r}", "id")
        index = body.get("index", 0)
        if not _is_int(index) or index < 0:
            raise BadRequest(f"index must be an integer >= 0. Received: {index!r}", "index")
        rating, preferred = body.get("rating"), body.get("preferred")
        if (rating is None) == (preferred is None):
            raise BadRequest("Give exactly one of rating (1 or -1) and preferred (a better answer).")
        if rating is not None and (not _is_int(rating) or rating not in (1, -1)):
            raise BadRequest(f"rating must be 1 or -1. Received: {rating!r}", "rating")
        if preferred is not None and (not isinstance(preferred, str) or not preferred.strip()):
            raise BadRequest(f"preferred must be a non-empty string. Received: {preferred!r}", "preferred")
        exists = await run_in_threadpool(state.feedback.has_completion, completion_id, index)
        if not exists:
            raise BadRequest(f"No completion with id {completion_id!r} and index {index} is recorded.",
                             "id", status=404)
        feedback_id = await run_in_threadpool(
            lambda: state.feedback.add_feedback(completion_id, index, rating=rating, preferred=preferred))
    except BadRequest as error:
        return openai_error(error.status, error.message, error.param, error.code)
    return JSONResponse({"id": completion_id, "index": index, "feedback_id": feedback_id,
                         "object": "feedback", "status": "recorded"})
