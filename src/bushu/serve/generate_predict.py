"""The natural route for generation packages: `POST /v1/models/{m}/predict` with `{"text": ...}`.

An application that has a sentence wants its completion (a language model) or its translation
(an encoder-decoder), not Triton's or OpenAI's envelope: the answer is
`{"text", "finish_reason", "prompt_tokens", "completion_tokens"}`, or for `{"texts": [...]}` a
list of them under `predictions`. With `"stream": true` the answer is server-sent events, one
`{"text": piece}` per token, the last with the finish reason and counts, then `data: [DONE]`.
Sampling parameters (`max_tokens`, `temperature`, `top_k`, `top_p`, `stop`, `seed`, …) sit
beside the text, named as on the other generation routes, checked by the same code.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bushu.errors import InvalidInput
from bushu.generate.engine import GenerationEngine
from bushu.generate.sequence import Event
from bushu.serve.generate_routes import _document, _finish, _first, _params, _stream_response, _unless_gone

_FIELDS = frozenset({"text", "texts", "stream"})


def generates(model: Any) -> bool:
    """True for a loaded model served by a generation engine (the predict route hands it here)."""
    return isinstance(model.batcher, GenerationEngine)


def _answer(text: str, last: Event) -> dict[str, Any]:
    return {"text": text, "finish_reason": last.finish_reason, "prompt_tokens": last.prompt_tokens,
            "completion_tokens": last.completion_tokens}


async def generation_predict(request: Request, model: Any, body: bytes) -> Response:
    engine: GenerationEngine = model.batcher
    doc = _document(body)
    stream = doc.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput("'stream' must be true or false")
    if "texts" in doc:
        texts = doc["texts"]
        if stream:
            raise InvalidInput("'stream' streams one 'text'; send 'texts' without it")
        if not isinstance(texts, list) or not texts:
            raise InvalidInput("'texts' must be a non-empty list of strings")
        fields = [f"texts[{i}]" for i in range(len(texts))]
    elif "text" in doc:
        texts, fields = [doc["text"]], ["text"]
    else:
        raise InvalidInput("a generation model's predict route expects 'text' (or 'texts')")
    prompts = [engine.codec.encode(t, f) if isinstance(t, str) else _not_text(f) for t, f in zip(texts, fields)]
    given = {k: v for k, v in doc.items() if k not in _FIELDS}
    params = [_params(given, engine, p, {}) for p in prompts]

    if not stream:
        done = await _unless_gone(request, asyncio.gather(*(engine.generate(p, s) for p, s in zip(prompts, params))))
        answers = [_answer(text, last) for text, _, last in done]
        return _json({"predictions": answers} if "texts" in doc else answers[0])

    first, events = await _first(engine.stream(prompts[0], params[0]))
    return _stream_response(first, events, lambda event: [{"text": event.text, **_finish(event)}], done_marker=True)


def _not_text(field: str) -> list[int]:
    raise InvalidInput(f"'{field}' must be a string")


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
