"""The V2 gRPC front: KServe's `inference.GRPCInferenceService` on `grpc.aio`, with Triton's
repository, statistics and model-configuration RPCs and ModelStreamInfer for generation.

It runs on the HTTP server's event loop and calls the same `DataPlane` methods as the HTTP
routes, so a model answers the same tensors, counts the same statistics and metrics, and
drains the same way whichever protocol a request came by. The messages are the protobuf
classes tritonclient ships (`tritonclient.grpc.service_pb2`): the wire format is not written
here. The same `Gate` as HTTP checks the `authorization` metadata (`Bearer <token>`), by the
scope the matching HTTP path needs; errors carry the gRPC code `STATUS_CODES` maps bushu's
HTTP status to, and `retry-after` / `www-authenticate` travel as trailing metadata. A server
given TLS files serves gRPC with them too.

ModelStreamInfer answers a stream's requests in the order they came: a generation model's
request with one response per token (`text_output`, the last one with the parameter
`triton_final_response`), any other model's with its one inference; an error in one request is
that response's `error_message`, and the stream goes on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from bushu.errors import BushuError, InvalidInput
from bushu.package.manifest import GENERATION_TASKS
from bushu.serve.auth import AccessDenied, Gate
from bushu.serve.dataplane import DataPlane
from bushu.serve.grpc_codec import decode_infer, encode_infer
from bushu.serve.http_v2 import error_headers
from bushu.serve.settings import GrpcListen, ServeSettings

try:
    import grpc
    from google.protobuf import json_format
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"the gRPC front needs grpcio and tritonclient[grpc]: pip install 'bushu[grpc]' ({exc})") from exc

log = logging.getLogger("bushu.serve")

#: bushu's HTTP status → the gRPC status code a client sees (one table for every RPC).
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(status: int) -> grpc.StatusCode:
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


def _trailers(exc: BushuError) -> tuple[tuple[str, str], ...]:
    headers = exc.headers if isinstance(exc, AccessDenied) else error_headers(exc)
    return tuple((k.decode(), v.decode()) for k, v in headers if k != b"connection")


def _rpc(scope: str | None) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Admit the call by `scope` (as the HTTP path would need), run it, and turn a `BushuError`
    into its gRPC status; anything else is a bug: logged, and answered INTERNAL."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def call(self: InferenceService, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                actor = self.admit(scope, context)
                return await method(self, request, context, actor)
            except BushuError as exc:
                error: BushuError = exc
            except Exception as exc:
                log.exception("unexpected error in gRPC %s", method.__name__)
                error = BushuError(f"internal error: {type(exc).__name__}")
            await context.abort(status_code(error.status), str(error), trailing_metadata=_trailers(error))

        return call

    return wrap


def _parameter(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return None if kind is None else getattr(value, kind)


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, gate: Gate | None) -> None:
        self.plane, self.gate = plane, gate

    def admit(self, scope: str | None, context: Any) -> str:
        if self.gate is None or scope is None:
            return "anonymous"
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        peer = context.peer() or "unknown"  # "ipv4:127.0.0.1:5555"
        client = peer.split(":", 1)[-1].rsplit(":", 1)[0]
        return self.gate.admit(scope, authorization.encode() if authorization is not None else None, client)

    # -- health and metadata ---------------------------------------------------------------------

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @_rpc("infer")
    async def ModelReady(self, request: Any, context: Any, actor: str) -> Any:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version or None))

    @_rpc("infer")
    async def ServerMetadata(self, request: Any, context: Any, actor: str) -> Any:
        meta = self.plane.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    @_rpc("infer")
    async def ModelMetadata(self, request: Any, context: Any, actor: str) -> Any:
        meta = self.plane.model_metadata(request.name, request.version or None)
        tensors = {side: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta[side]]
                   for side in ("inputs", "outputs")}
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        **tensors)

    @_rpc("infer")
    async def ModelConfig(self, request: Any, context: Any, actor: str) -> Any:
        config = self.plane.model_config(request.name, request.version or None)
        return json_format.ParseDict({"config": config}, pb.ModelConfigResponse())

    @_rpc("infer")
    async def ModelStatistics(self, request: Any, context: Any, actor: str) -> Any:
        report = self.plane.statistics(request.name or None, request.version or None)
        return json_format.ParseDict(report, pb.ModelStatisticsResponse())

    # -- repository ------------------------------------------------------------------------------

    @_rpc("admin")
    async def RepositoryIndex(self, request: Any, context: Any, actor: str) -> Any:
        entries = [e for e in self.plane.repository_index() if not request.ready or e["state"] == "READY"]
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**e) for e in entries])

    @_rpc("admin")
    async def RepositoryModelLoad(self, request: Any, context: Any, actor: str) -> Any:
        if request.parameters:
            raise InvalidInput("bushu loads a model from its repository folder; load parameters "
                               f"({', '.join(sorted(request.parameters))}) are not supported")
        await self.plane.load(request.model_name, actor)
        return pb.RepositoryModelLoadResponse()

    @_rpc("admin")
    async def RepositoryModelUnload(self, request: Any, context: Any, actor: str) -> Any:
        await self.plane.unload(request.model_name, actor)
        return pb.RepositoryModelUnloadResponse()

    # -- inference -------------------------------------------------------------------------------

    @_rpc("infer")
    async def ModelInfer(self, request: Any, context: Any, actor: str) -> Any:
        return await self._infer(request)

    async def _infer(self, request: Any) -> Any:
        model = self.plane.lookup(request.model_name, request.model_version or None)
        if model.manifest.task in GENERATION_TASKS:
            return [r async for r in self._generate(model, request, stream=False)][-1]
        decoded = self.plane.decode(model, decode_infer, request)
        outputs = await self.plane.infer(model, decoded)
        return encode_infer(pb, model.name, model.version, decoded.id, outputs)

    async def ModelStreamInfer(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        try:
            self.admit("infer", context)
        except BushuError as exc:
            await context.abort(status_code(exc.status), str(exc), trailing_metadata=_trailers(exc))
        async for request in requests:
            try:
                model = self.plane.lookup(request.model_name, request.model_version or None)
                if model.manifest.task in GENERATION_TASKS:
                    async for response in self._generate(model, request):
                        yield pb.ModelStreamInferResponse(infer_response=response)
                    continue
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request))
            except BushuError as exc:
                yield pb.ModelStreamInferResponse(error_message=str(exc))
            except Exception as exc:
                log.exception("unexpected error in gRPC ModelStreamInfer")
                yield pb.ModelStreamInferResponse(error_message=f"internal error: {type(exc).__name__}")

    async def _generate(self, model: Any, request: Any, stream: bool = True) -> AsyncIterator[Any]:
        """A generation request (`text_input` BYTES, sampling fields as request parameters or as
        one-value input tensors): one `ModelInferResponse` per event of the engine's stream, or
        (`stream=False`) one with the whole text."""
        from bushu.serve.generate_routes import engine_of, triton_request

        engine = engine_of(model)
        decoded = decode_infer(request)
        doc: dict[str, Any] = {k: _parameter(v) for k, v in request.parameters.items()}
        for name, array in decoded.inputs.items():
            if array.size != 1:
                raise InvalidInput(f"input {name!r}: a generation request's inputs hold one value each")
            value = array.reshape(-1)[0]
            doc[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value.item()
        doc.pop("stream", None)  # a stream answers per token, ModelInfer once: the RPC decides
        prompt, params = triton_request(doc, engine)
        pieces: list[str] = []
        async with contextlib.aclosing(engine.stream(prompt, params)) as events:
            async for event in events:
                pieces.append(event.text)
                if stream or event.finish_reason is not None:
                    yield self._text_response(model, decoded.id, "".join(pieces), event)
                    pieces.clear()

    @staticmethod
    def _text_response(model: Any, request_id: str | None, text: str, event: Any) -> Any:
        response = encode_infer(pb, model.name, model.version, request_id,
                                {"text_output": np.array([text.encode()], dtype=object)})
        if event.finish_reason is not None:
            response.parameters["triton_final_response"].bool_param = True
            response.parameters["finish_reason"].string_param = event.finish_reason
            response.parameters["prompt_tokens"].int64_param = event.prompt_tokens
            response.parameters["completion_tokens"].int64_param = event.completion_tokens
        return response


class GrpcFront:
    """The gRPC server over a dataplane, for the app's lifespan: it opens once the models are
    loaded, and on shutdown stops taking calls and lets running ones finish (up to `grace`
    seconds) before the batchers drain and close."""

    def __init__(self, plane: DataPlane, gate: Gate | None, settings: ServeSettings, listen: GrpcListen,
                 grace: float = 30.0) -> None:
        self.plane, self.gate, self.settings, self.listen, self.grace = plane, gate, settings, listen, grace
        self.port: int | None = None

    async def __aenter__(self) -> GrpcFront:
        limit = self.settings.max_body_bytes
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                               ("grpc.max_send_message_length", -1),
                                               ("grpc.so_reuseport", 0)])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(self.plane, self.gate), self.server)
        address, tls = self.listen.address, self.listen.certfile is not None
        try:
            if tls:
                assert self.listen.keyfile is not None
                credentials = grpc.ssl_server_credentials([(self.listen.keyfile.read_bytes(),
                                                            self.listen.certfile.read_bytes())])
                self.port = self.server.add_secure_port(address, credentials)
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise BushuError(f"cannot listen for gRPC on {address} ({exc}); choose another --grpc-port "
                             "(0: any free port)") from None
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(self.grace)

