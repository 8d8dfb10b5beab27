"""The web playground: `GET /` is a page to try every loaded model, served by bushu itself.

The page is static (HTML, CSS and a little JS under `serve/playground/`, no CDN, nothing
loaded from elsewhere: its Content-Security-Policy allows only this server), so it holds no
model data and needs no token; what it shows comes from the routes it calls with the token
the user enters — `/v1/catalog` (what is loaded, and how to try it; `/v1/models` is OpenAI's list), `/predict`, `/search`,
`/explain`, and `/v1/stats` (the request-latency histogram the live panel charts).
"""

from __future__ import annotations

import importlib.util
import math
import time
from functools import cache
from importlib.resources import files
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import bushu
from bushu.errors import NotFound
from bushu.explain import KINDS, input_kind
from bushu.package.manifest import GENERATION_TASKS
from bushu.serve.dataplane import DataPlane
from bushu.serve.metrics import ServerMetrics
from bushu.serve.repository import LoadedModel

ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> bytes:
    return (files("bushu.serve") / "playground" / name).read_bytes()


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def describe(model: LoadedModel, versions: list[str]) -> dict[str, Any]:
    """What the page needs to offer a model: its kind of input, labels, and whether it explains."""
    manifest = model.manifest
    kind = input_kind(model.predictor)
    if manifest.task in GENERATION_TASKS:
        kind = "generation"
    explains = (kind in KINDS and bool(manifest.provenance.weights_file)
                and importlib.util.find_spec("captum") is not None)
    users = model.predictor.users
    return {
        "name": model.name, "version": model.version, "versions": versions, "task": manifest.task,
        "kind": kind or "tensors", "variant": manifest.default_variant, "labels": manifest.labels,
        "explain": KINDS[kind] if explains and kind else None,
        **({"users": users["n_users"]} if users else {}),
    }


def latency_histogram(metrics: ServerMetrics) -> dict[str, Any]:
    """Every model's request-latency histogram summed: cumulative counts per upper bound."""
    buckets: dict[float, float] = {}
    count = 0.0
    for family in metrics.request_seconds.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    ordered = [[bound if math.isfinite(bound) else None, value] for bound, value in sorted(buckets.items())]
    return {"time": time.time(), "count": count, "buckets": ordered}


def playground_routes(plane: DataPlane, metrics: ServerMetrics) -> list[Route]:
    async def page(request: Request) -> Response:
        return Response(asset("index.html"), media_type=ASSETS["index.html"], headers=HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS or name == "index.html":
            raise NotFound(f"no playground file {name!r}")
        return Response(asset(name), media_type=ASSETS[name], headers=HEADERS)

    async def models(request: Request) -> Response:
        repository = plane.repository
        latest = {m.name: repository.get(m.name) for m in repository.loaded()}
        return _json({"server": f"bushu {bushu.__version__}",
                      "models": [describe(m, repository.versions(n)) for n, m in sorted(latest.items())]})

    async def stats(request: Request) -> Response:
        return _json(latency_histogram(metrics))

    return [
        Route("/", page),
        Route("/playground/{name}", static),
        Route("/v1/catalog", models),
        Route("/v1/stats", stats),
    ]
