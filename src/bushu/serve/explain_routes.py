"""`POST /v1/models/{m}/explain`: the served answer, and why the source module gives it.

It takes exactly what `/predict` takes (an image body, or JSON `image`/`text`/`texts`/`user`/
`users`) plus optional `method`, `steps`, `target`, `query` (in the JSON, or the query string
for a raw image body). The served variant's answer comes through the model's batcher like any
prediction; the explanation (seconds, not milliseconds) then runs on threads of its own behind
its own limit: `concurrency` at a time, `waiting` more queued, anything beyond answered 503 +
Retry-After at once. So explanations never sit in the batcher's way, and a burst of them
cannot pile up unbounded behind each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bushu.errors import InvalidInput, Overloaded
from bushu.explain import Explainer, ExplainOptions, explainer_for
from bushu.serve.asgi import read_body
from bushu.serve.dataplane import DataPlane
from bushu.serve.predict import natural_inputs
from bushu.serve.repository import LoadedModel
from bushu.serve.settings import ServeSettings

#: Items one explain request may carry: each costs `steps` forward and backward passes.
MAX_ITEMS = 8


class ExplainLimiter:
    """At most `concurrency` explanations run, on this limiter's own threads; `waiting` more may
    queue; the next is refused with 503 + Retry-After."""

    def __init__(self, concurrency: int = 1, waiting: int = 4) -> None:
        if concurrency < 1 or waiting < 0:
            raise ValueError("concurrency must be at least 1 and waiting at least 0")
        self.capacity = concurrency + waiting
        self.admitted = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="bushu-explain")

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Admission is decided at once: a full queue is an immediate 503, never a wait."""
        if self.admitted >= self.capacity:
            raise Overloaded(f"{self.admitted} explanations are running or queued; try again later", retry_after=2)
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, fn: Any, *args: Any) -> Any:
        """`fn(*args)` on an explain thread, once a slot is free (call inside `admit`)."""
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


class Explainers:
    """One explainer per loaded model version, built on first use and rebuilt when the package
    behind the name changes (a reload with a new manifest digest)."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key
        self._built: dict[tuple[str, str], tuple[str, Explainer]] = {}
        self._lock = threading.Lock()

    def get(self, model: LoadedModel) -> Explainer:
        digest = model.manifest.digest()
        with self._lock:
            entry = self._built.get((model.name, model.version))
            if entry is None or entry[0] != digest:
                entry = (digest, explainer_for(model.path, model.manifest, self._key))
                self._built[(model.name, model.version)] = entry
            return entry[1]


def _options(body: bytes, content_type: str, query: dict[str, str]) -> ExplainOptions:
    if content_type.startswith(("image/", "application/octet-stream")):
        return ExplainOptions.parse(dict(query))
    doc = orjson.loads(body)  # natural_inputs already refused a body that is not a JSON object
    return ExplainOptions.parse(doc)


def explain_routes(plane: DataPlane, settings: ServeSettings) -> list[Route]:
    """The explain routes, sharing one limiter sized by `settings.explain_concurrency` and
    `settings.explain_waiting`, with the server's body limit."""
    limiter = ExplainLimiter(settings.explain_concurrency, settings.explain_waiting)
    explainers = Explainers(settings.decrypt_key)

    def work(model: LoadedModel, natural: Any, served: list[dict[str, Any]],
             options: ExplainOptions) -> tuple[list[dict[str, Any]], float]:
        explainer = explainers.get(model)
        start = time.perf_counter()
        return explainer.explain(natural, served, options), time.perf_counter() - start

    async def explain(request: Request) -> Response:
        p = request.path_params
        body = await read_body(request.receive, request.scope["headers"], settings.max_body_bytes, settings.body_timeout_s)
        model = plane.lookup(p["model"], p.get("version"))
        content_type = request.headers.get("content-type", "")
        natural = natural_inputs(body, content_type)
        if len(natural.items) > MAX_ITEMS:
            raise InvalidInput(f"{len(natural.items)} items in one explain request; at most {MAX_ITEMS}")
        options = _options(body, content_type, dict(request.query_params))
        async with limiter.admit():
            model = plane.lookup(p["model"], p.get("version"))  # again: a reload may have landed while it waited
            with model.batcher.hold():  # the explained model is the one that served the answer
                served = await plane.predict(model.name, model.version, natural)
                explained, seconds = await limiter.run(work, model, natural, served, options)
        answers = [{"prediction": answer, **explanation, "explain_ms": round(seconds * 1000, 1)}
                   for answer, explanation in zip(served, explained)]
        payload = {"explanations": answers} if natural.batched else answers[0]
        return Response(orjson.dumps(payload), media_type="application/json")

    return [
        Route("/v1/models/{model}/explain", explain, methods=["POST"]),
        Route("/v1/models/{model}/versions/{version}/explain", explain, methods=["POST"]),
    ]
