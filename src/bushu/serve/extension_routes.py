"""Triton's statistics and model-configuration extensions over HTTP (the gRPC front answers the
same from the same dataplane calls):

- `GET /v2/models/stats`, `/v2/models/{m}/stats`, `/v2/models/{m}/versions/{v}/stats`
- `GET /v2/models/{m}/config`, `/v2/models/{m}/versions/{v}/config`

`/v2/models/stats` reads like model metadata for a model named "stats", so these routes go
ahead of the metadata routes in the app's list.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def extension_routes(plane: Any) -> list[Route]:
    """The routes over `plane` (a `DataPlane`); `create_app` adds them with one line."""

    async def statistics(request: Request) -> Response:
        p = request.path_params
        return _json(plane.statistics(p.get("model"), p.get("version")))

    async def config(request: Request) -> Response:
        p = request.path_params
        return _json(plane.model_config(p["model"], p.get("version")))

    models, versioned = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    return [
        Route("/v2/models/stats", statistics),
        Route(models + "/stats", statistics),
        Route(versioned + "/stats", statistics),
        Route(models + "/config", config),
        Route(versioned + "/config", config),
    ]
