"""The HTTP front: Open Inference Protocol v2 routes over the dataplane (Starlette on uvicorn).

Each route only translates: path and body in, dataplane call, JSON or binary out. Errors are
`{"error": "..."}` with the status the `BushuError` carries; nothing a client sends yields 500.
The infer route, which carries the load, is served in raw ASGI ahead of the router
(`fast_infer.py`); its Starlette twin below stays for `fast_infer=False`, the measured baseline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bushu.errors import BushuError
from bushu.serve.access_log import AccessLog
from bushu.serve.asgi import ClientGone, read_body
from bushu.serve.auth import AccessControl, Gate
from bushu.serve.codec import HEADER_LENGTH
from bushu.serve.compression import encode_response
from bushu.serve.dataplane import DataPlane
from bushu.serve.explain_routes import explain_routes
from bushu.serve.extension_routes import extension_routes
from bushu.serve.fast_infer import FastInfer
from bushu.serve.http_v2 import error_headers, infer_v2
from bushu.serve.media import render_png, video_response
from bushu.serve.generate_predict import generates, generation_predict
from bushu.serve.generate_routes import generate_routes
from bushu.serve.metrics import ServerMetrics
from bushu.serve.openapi import model_doc, openapi_document
from bushu.serve.playground_routes import playground_routes
from bushu.serve.predict import natural_inputs, search_request
from bushu.serve.repository import ModelRepository
from bushu.serve.settings import GrpcListen, ServeSettings

log = logging.getLogger("bushu.serve")


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _status_only(ok: bool) -> Response:
    return Response(status_code=200 if ok else 400)


async def _read_body(request: Request, settings: ServeSettings) -> bytes:
    return await read_body(request.receive, request.scope["headers"], settings.max_body_bytes, settings.body_timeout_s)


PlaneFactory = Callable[[list[Path], ServeSettings, ServerMetrics], DataPlane]


def local_plane(paths: list[Path], settings: ServeSettings, metrics: ServerMetrics) -> DataPlane:
    return DataPlane(ModelRepository(paths, settings, metrics), metrics)


def create_app(paths: list[Path], settings: ServeSettings | None = None, *, fast_infer: bool = True,
               grpc: GrpcListen | None = None, dataplane: PlaneFactory = local_plane) -> Starlette:
    """The ASGI app serving every package and model repository in `paths`; `fast_infer=False`
    serves the infer route through Starlette's router too (for measuring the fast path);
    `grpc` also serves V2 over gRPC (`serve.grpc_front`), from startup to shutdown, its port in
    `app.state.grpc.port`. `dataplane` builds the plane the routes call: the models in this
    process by default, a repository shared by worker processes (`serve.workers`), or Ray Serve
    deployments (`serve.rayserve`)."""
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    plane = dataplane(paths, settings, metrics)
    repository = plane.repository

    async def live(request: Request) -> Response:
        return _status_only(plane.live())

    async def ready(request: Request) -> Response:
        return _status_only(plane.ready())

    async def server_metadata(request: Request) -> Response:
        return _json(plane.server_metadata())

    async def model_metadata(request: Request) -> Response:
        p = request.path_params
        return _json(plane.model_metadata(p["model"], p.get("version")))

    async def model_ready(request: Request) -> Response:
        p = request.path_params
        return _status_only(plane.model_ready(p["model"], p.get("version")))

    async def infer(request: Request) -> Response:  # the fast path's twin, for fast_infer=False
        p = request.path_params
        body = await _read_body(request, settings)
        payload, header_length = await infer_v2(plane, p["model"], p.get("version"), body,
                                                request.headers.get(HEADER_LENGTH))
        payload, encoded = encode_response(payload, request.headers.get("accept-encoding"))
        headers = {k.decode(): v.decode() for k, v in encoded}
        if header_length is None:
            return Response(payload, media_type="application/json", headers=headers)
        return Response(payload, media_type="application/octet-stream",
                        headers={**headers, "Inference-Header-Content-Length": str(header_length)})

    async def predict_route(request: Request) -> Response:
        p = request.path_params
        body = await _read_body(request, settings)
        if generates(model := plane.lookup(p["model"], p.get("version"))):  # serve/generate_predict.py
            return await generation_predict(request, model, body)
        content_type = request.headers.get("content-type", "")
        if video := await video_response(plane, p["model"], p.get("version"), body, content_type,
                                         request.query_params, settings):
            return video
        natural = natural_inputs(body, content_type)
        results = await plane.predict(p["model"], p.get("version"), natural)
        if request.query_params.get("render") == "png":
            return render_png(natural.items[0], results[0])
        return _json({"predictions": results} if natural.batched else results[0])

    async def search_route(request: Request) -> Response:
        p = request.path_params
        body = await _read_body(request, settings)
        return _json(await plane.search(p["model"], p.get("version"), search_request(body)))

    async def repository_index(request: Request) -> Response:
        return _json(plane.repository_index())

    async def repository_load(request: Request) -> Response:
        await plane.load(request.path_params["model"], getattr(request.state, "token", "anonymous"))
        return Response(status_code=200)

    async def repository_unload(request: Request) -> Response:
        await plane.unload(request.path_params["model"], getattr(request.state, "token", "anonymous"))
        return Response(status_code=200)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi(request: Request) -> Response:
        return _json(openapi_document(tuple(model_doc(m) for m in repository.loaded())))

    async def bushu_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BushuError)
        headers = {k.decode(): v.decode() for k, v in error_headers(exc)}
        return _json({"error": str(exc)}, exc.status, headers)

    async def client_gone(request: Request, exc: Exception) -> Response:
        # Nobody is left to read it, but no answer of bushu's goes without a body.
        return _json({"error": "the client disconnected before its request body was complete"}, 400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json({"error": exc.detail}, exc.status_code, exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await repository.load_all()
        try:
            async with contextlib.AsyncExitStack() as fronts:  # they stop before the batchers close
                if grpc is not None:
                    from bushu.serve.grpc_front import GrpcFront

                    app.state.grpc = await fronts.enter_async_context(GrpcFront(plane, gate, settings, grpc))
                plane.started = True
                try:
                    yield
                finally:
                    plane.started = False
        finally:
            await repository.close()

    models = "/v2/models/{model}"
    versioned = "/v2/models/{model}/versions/{version}"
    routes = [
        *extension_routes(plane),  # ahead of model metadata: /v2/models/stats is not a model
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route(models, model_metadata),
        Route(versioned, model_metadata),
        Route(models + "/ready", model_ready),
        Route(versioned + "/ready", model_ready),
        Route(models + "/infer", infer, methods=["POST"]),
        Route(versioned + "/infer", infer, methods=["POST"]),
        Route("/v1/models/{model}/predict", predict_route, methods=["POST"]),
        Route("/v1/models/{model}/versions/{version}/predict", predict_route, methods=["POST"]),
        Route("/v1/models/{model}/search", search_route, methods=["POST"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{model}/load", repository_load, methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", repository_unload, methods=["POST"]),
        Route("/metrics", prometheus),
        Route("/v2/openapi.json", openapi),
        *explain_routes(plane, settings), *playground_routes(plane, metrics),
        *generate_routes(plane, settings.max_body_bytes),
    ]
    guarded = bool(settings.tokens) or settings.anonymous_rate_per_s is not None
    gate = Gate(list(settings.tokens), settings.anonymous_rate_per_s) if guarded else None
    middleware = [Middleware(AccessLog)]  # outermost: it sees every answer, refusals included
    if guarded:
        middleware.append(Middleware(AccessControl, gate=gate))
    if fast_infer:  # inside access control, ahead of the router
        middleware.append(Middleware(FastInfer, plane=plane, max_body_bytes=settings.max_body_bytes,
                                     body_timeout=settings.body_timeout_s))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={BushuError: bushu_error, ClientGone: client_gone, HTTPException: http_error,
                            Exception: unexpected},
    )
    app.state.dataplane = plane
    return app
