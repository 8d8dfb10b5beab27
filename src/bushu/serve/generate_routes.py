"""Generation over HTTP: Triton's generate extension and OpenAI's completions, on the engine.

- `POST /v2/models/{m}[/versions/{v}]/generate` → `{"text_output": ...}`; `/generate_stream`
  answers with server-sent events, one per token (Triton's generate extension).
- `POST /v1/completions` and `/v1/chat/completions`, streamed (`"stream": true`, SSE chunks
  ending with `data: [DONE]`) or not, with `usage`; `GET /v1/models` lists what generates —
  so the `openai` client works unchanged with `base_url` pointed here.

Routes only translate: parse and check the body (every error a 400 naming its field), tokenize,
hand the engine a `SamplingParams`, and write what it yields. A client that goes away cancels
its sequence, which the engine frees at its next step.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bushu.errors import BushuError, InvalidInput
from bushu.generate.config import PARAMETERS, SamplingParams, parse_params
from bushu.generate.engine import GenerationEngine
from bushu.generate.sequence import Event
from bushu.serve.asgi import ClientGone, read_body

T = TypeVar("T")
#: OpenAI fields bushu accepts without acting on them (their defaults are all it does).
_OPENAI_NEUTRAL = {"model": None, "stream": None, "stream_options": None, "n": 1, "user": None, "echo": False,
                   "best_of": 1, "logprobs": None, "presence_penalty": 0, "frequency_penalty": 0,
                   "logit_bias": None, "suffix": None}
_CHAT_NEUTRAL = {**{k: v for k, v in _OPENAI_NEUTRAL.items() if k not in ("echo", "best_of", "suffix")},
                 "top_logprobs": None, "max_completion_tokens": None}


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _utf8(value: Any, where: str) -> None:
    """A lone surrogate (invalid UTF-8 bytes, or an escaped half pair) anywhere → 400 naming it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"'{where}' is not valid UTF-8") from None
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _utf8(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _utf8(item, f"{where}.{key}" if where else key)


def _document(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidInput("the request body is empty; expected a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # invalid UTF-8 still parses this way, so the error can name the field it is in
            doc = json.loads(body.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("expected a JSON object")
    _utf8(doc, "")
    return doc


def _params(doc: dict[str, Any], engine: GenerationEngine, prompt: list[int], neutral: dict[str, Any],
            extra: frozenset[str] = frozenset()) -> SamplingParams:
    for key, default in neutral.items():
        value = doc.get(key)
        if key in ("model", "stream", "stream_options", "user", "max_completion_tokens") or value is None:
            continue
        if value != default:
            raise InvalidInput(f"'{key}' = {value!r} is not supported (only {default!r})")
    unknown = sorted(k for k in doc if k not in PARAMETERS and k not in neutral and k not in extra)
    if unknown:
        raise InvalidInput(f"unknown field(s) {unknown}")
    given = {k: v for k, v in doc.items() if k in PARAMETERS}
    if doc.get("max_completion_tokens") is not None:
        given.setdefault("max_tokens", doc["max_completion_tokens"])
    return parse_params(given, engine.config, room=engine.core.room(prompt))


def engine_of(model: Any) -> GenerationEngine:
    """The generation engine of a loaded model (`serve.repository.LoadedModel`), or 400."""
    if not isinstance(model.batcher, GenerationEngine):
        raise InvalidInput(f"model {model.name!r} ({model.manifest.task}) does not generate text")
    return model.batcher


def _engine(plane: Any, request: Request, name: str | None = None) -> GenerationEngine:
    p = request.path_params
    return engine_of(plane.lookup(name or p["model"], p.get("version")))


def triton_request(doc: dict[str, Any], engine: GenerationEngine) -> tuple[list[int], SamplingParams]:
    """A decoded Triton generate request (`text_input`, sampling fields at the top or in
    `parameters`): the prompt's tokens and the sampling parameters. The gRPC front's
    ModelStreamInfer builds the same document from its tensors and parameters."""
    text = doc.get("text_input")
    if text is None:
        raise InvalidInput("'text_input' is missing")
    prompt = engine.codec.encode(text, "text_input")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    top = {k: v for k, v in doc.items() if k not in ("text_input", "parameters")}
    merged = {**top, **{k: v for k, v in parameters.items() if k != "stream"}}
    return prompt, _params(merged, engine, prompt, {})


async def _unless_gone(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so freeing its sequence) if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientGone()
    return task.result()


async def _first(stream: AsyncIterator[Event]) -> tuple[Event, AsyncIterator[Event]]:
    """Start a stream before answering, so admission errors (400, 503) are still a status code."""
    return await anext(stream), stream


def _stream_response(first: Event, stream: AsyncIterator[Event], render: Callable[[Event], list[dict[str, Any]]],
                     *, done_marker: bool) -> StreamingResponse:
    """Server-sent events: the documents `render` makes of each event, in order, then `data: [DONE]`
    when `done_marker` (OpenAI's convention); an error mid-stream becomes one last `{"error": ...}`
    event, and the stream is closed (its sequence freed) however the response ends."""

    async def events() -> AsyncIterator[bytes]:
        event: Event | None = first
        try:
            while event is not None:
                for doc in render(event):
                    yield b"data: " + orjson.dumps(doc) + b"\n\n"
                event = await anext(stream, None)
            if done_marker:
                yield b"data: [DONE]\n\n"
        except BushuError as exc:
            yield b"data: " + orjson.dumps({"error": str(exc)}) + b"\n\n"
        finally:
            await stream.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


def _finish(event: Event) -> dict[str, Any]:
    """What the last event of a sequence adds: why it ended and the token counts."""
    if event.finish_reason is None:
        return {}
    return {"finish_reason": event.finish_reason, "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens}


def generate_routes(plane: Any, max_body_bytes: int) -> list[Route]:
    """The generation routes over `plane` (a `DataPlane`); `create_app` adds them with one line."""

    async def body_of(request: Request) -> dict[str, Any]:
        return _document(await read_body(request.receive, request.scope["headers"], max_body_bytes))

    # -- Triton's generate extension -------------------------------------------------------------

    async def triton_generate(request: Request) -> Response:
        engine = _engine(plane, request)
        prompt, params = triton_request(await body_of(request), engine)
        text, _, last = await _unless_gone(request, engine.generate(prompt, params))
        p = request.path_params
        return _json({"model_name": p["model"], "model_version": p.get("version", ""), "text_output": text,
                      "finish_reason": last.finish_reason, "prompt_tokens": last.prompt_tokens,
                      "completion_tokens": last.completion_tokens})

    async def triton_generate_stream(request: Request) -> Response:
        engine = _engine(plane, request)
        prompt, params = triton_request(await body_of(request), engine)
        first, stream = await _first(engine.stream(prompt, params))
        p = request.path_params
        head = {"model_name": p["model"], "model_version": p.get("version", "")}

        return _stream_response(first, stream, lambda event: [{**head, "text_output": event.text, **_finish(event)}],
                                done_marker=False)

    # -- OpenAI ----------------------------------------------------------------------------------

    def openai_prompt(doc: dict[str, Any], engine: GenerationEngine) -> list[int]:
        prompt = doc.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str):
            return engine.codec.encode(prompt, "prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return prompt
        if prompt == [] or prompt == "":
            raise InvalidInput("'prompt' is empty")
        raise InvalidInput("'prompt' must be a string or a list of token ids (one prompt per request)")

    def chat_prompt(doc: dict[str, Any], engine: GenerationEngine) -> list[int]:
        messages = doc.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidInput("'messages' must be a non-empty list of {role, content}")
        lines = []
        for i, message in enumerate(messages):
            if (not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant")
                    or not isinstance(message.get("content"), str)):
                raise InvalidInput(f"'messages[{i}]' must be {{role: system|user|assistant, content: string}}")
            lines.append(f"{message['role']}: {message['content']}\n")
        return engine.codec.encode("".join(lines) + "assistant:", "messages")

    def usage(event: Event) -> dict[str, int]:
        return {"prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens,
                "total_tokens": event.prompt_tokens + event.completion_tokens}

    async def openai(request: Request, chat: bool) -> Response:
        doc = await body_of(request)
        if not isinstance(doc.get("model"), str):
            raise InvalidInput("'model' must name a served model")
        engine = _engine(plane, request, doc["model"])
        prompt = chat_prompt(doc, engine) if chat else openai_prompt(doc, engine)
        extra = frozenset({"messages"} if chat else {"prompt"})
        params = _params(doc, engine, prompt, _CHAT_NEUTRAL if chat else _OPENAI_NEUTRAL, extra)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        head = {"id": ident, "created": created, "model": doc["model"]}

        def choice(text: str, finish: str | None, delta: bool) -> dict[str, Any]:
            if not chat:
                return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            message = {"role": "assistant", "content": text}
            return {"index": 0, ("delta" if delta else "message"): message, "finish_reason": finish, "logprobs": None}

        if not doc.get("stream"):
            text, _, last = await _unless_gone(request, engine.generate(prompt, params))
            return _json({**head, "object": "chat.completion" if chat else "text_completion",
                          "choices": [choice(text, last.finish_reason, False)], "usage": usage(last)})
        options = doc.get("stream_options") or {}
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise InvalidInput("'stream_options' may only hold include_usage")
        first, stream = await _first(engine.stream(prompt, params))
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunks(event: Event) -> list[dict[str, Any]]:
            out = [{**head, "object": kind, "choices": [choice(event.text, event.finish_reason, True)]}]
            if event.finish_reason is not None and options.get("include_usage"):
                out.append({**head, "object": kind, "choices": [], "usage": usage(event)})
            return out

        return _stream_response(first, stream, chunks, done_marker=True)

    async def completions(request: Request) -> Response:
        return await openai(request, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await openai(request, chat=True)

    async def models(request: Request) -> Response:
        listed = [{"id": m.name, "object": "model", "created": 0, "owned_by": "bushu"}
                  for m in plane.repository.loaded() if isinstance(m.batcher, GenerationEngine)]
        return _json({"object": "list", "data": listed})

    base, versioned = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    return [
        Route(base + "/generate", triton_generate, methods=["POST"]),
        Route(versioned + "/generate", triton_generate, methods=["POST"]),
        Route(base + "/generate_stream", triton_generate_stream, methods=["POST"]),
        Route(versioned + "/generate_stream", triton_generate_stream, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models),
    ]
