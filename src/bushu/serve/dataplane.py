"""The transport-independent core of the server: health, metadata, configuration, statistics,
inference, repository.

The HTTP routes and the gRPC front (`grpc_front.py`) only translate to and from these calls
(MLServer's `handlers/dataplane.py` split). Nothing here knows about requests or responses on a
wire: every method takes requests already decoded (`codec.InferRequest`, `predict.NaturalRequest`,
`predict.SearchRequest`); a front decodes with its own decoder through `decode`, so a request that
does not decode counts as a failure the same way whichever front it came by.

No request is lost on reload, unload or shutdown: a request enters its model's batcher (or
holds it, for the app routes that prepare tensors in a worker thread first) in the same step
of the event loop as it looks the model up, and a batcher that closes first answers every
request it holds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import bushu
from bushu.errors import BushuError
from bushu.serve.asgi import PayloadTooLarge
from bushu.serve.codec import InferRequest
from bushu.serve.metrics import ServerMetrics
from bushu.serve.model_config import PLATFORMS, model_config
from bushu.serve.predict import NaturalRequest, SearchRequest, predict, search
from bushu.serve.repository import LoadedModel, ModelRepository
from bushu.serve.video import frame_answers, open_video

T = TypeVar("T")


class DataPlane:
    def __init__(self, repository: ModelRepository, metrics: ServerMetrics) -> None:
        self.repository = repository
        self.metrics = metrics
        self.started = False

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.started

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": "bushu",
            "version": bushu.__version__,
            "extensions": ["binary_tensor_data", "model_repository", "statistics", "model_configuration"],
        }

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.repository.get(name, version)
        except BushuError:
            return False
        return True

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.repository.get(name, version)
        manifest = model.manifest
        variant = manifest.variants[manifest.default_variant]
        return {
            "name": name,
            "versions": self.repository.versions(name) if version is None else [version],
            "platform": PLATFORMS.get(variant.backend, variant.backend),
            "inputs": [{"name": s.name, "datatype": s.datatype, "shape": s.shape} for s in manifest.inputs],
            "outputs": [{"name": s.name, "datatype": s.datatype, "shape": s.shape} for s in manifest.outputs],
            "parameters": {"task": manifest.task, "variant": manifest.default_variant,
                           **({"labels": manifest.labels} if manifest.labels else {})},
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration (`serve.model_config`)."""
        return model_config(self.repository.get(name, version), self.repository.settings)

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Triton's statistics of every loaded model, every version of `name`, or one version (404
        if not loaded): counts and cumulative durations since the server started."""
        if name is None:
            versions = sorted((m.name, m.version) for m in self.repository.loaded())
        elif version is None:
            self.repository.get(name)
            versions = [(name, v) for v in self.repository.versions(name)]
        else:
            versions = [(name, self.repository.get(name, version).version)]
        return self.metrics.statistics.report(versions)

    def lookup(self, name: str, version: str | None = None) -> LoadedModel:
        return self.repository.get(name, version)

    async def _counted(self, model: LoadedModel, work: Awaitable[T]) -> T:
        """Await `work`, counting its outcome and latency in the metrics."""
        start = time.perf_counter()
        try:
            result = await work
        except BushuError as exc:
            self.metrics.outcome(model.name, model.version, exc.status)
            raise
        self.metrics.outcome(model.name, model.version, 200, time.perf_counter() - start)
        return result

    def decode(self, model: LoadedModel, decoder: Callable[..., InferRequest], *wire: Any) -> InferRequest:
        """A front's request for `model` decoded by the front's `decoder`: one that does not
        decode still counts as the model's failed request, whichever front it came by."""
        try:
            return decoder(*wire)
        except BushuError as exc:
            self.metrics.outcome(model.name, model.version, exc.status)
            raise

    async def infer(self, model: LoadedModel, request: InferRequest) -> dict[str, Any]:
        """Run one decoded V2 request through the model's batcher (`model` from `lookup`, in
        the same step of the event loop: see the module docstring)."""
        return await self._counted(model, model.batcher.infer(request.inputs, request.outputs))

    async def predict(self, name: str, version: str | None, request: NaturalRequest) -> list[dict[str, Any]]:
        """Natural inputs through the package's pre- and post-processing (see `serve.predict`)."""
        model = self.lookup(name, version)
        with model.batcher.hold():
            return await self._counted(model, predict(model, request))

    async def search(self, name: str, version: str | None, request: SearchRequest) -> dict[str, Any]:
        """Top-k of a posted corpus by cosine to a query (see `serve.predict.search`)."""
        model = self.lookup(name, version)
        limit = self.repository.settings.max_corpus
        if len(request.corpus) > limit:
            error = PayloadTooLarge(f"the corpus has {len(request.corpus)} texts; this server searches at most {limit}")
            self.metrics.outcome(model.name, model.version, error.status)
            raise error
        with model.batcher.hold():
            return await self._counted(model, search(model, request))

    async def video(self, name: str, version: str | None, data: bytes, fps: float | None,
                    max_seconds: float) -> AsyncIterator[dict[str, Any]]:
        """Open a video (404/400/413 now, before any answer) and return its per-frame answers
        (`serve.video`). Each chunk of frames is a `predict` of its own, by name, so a video that
        spans a reload goes on with the new version and loses no frame."""
        model = self.lookup(name, version)
        frames, first = await open_video(data, fps, max_seconds)

        async def chunk(model: LoadedModel, request: NaturalRequest) -> list[dict[str, Any]]:
            return await self.predict(model.name, model.version, request)

        return frame_answers(model, frames, first, chunk)

    def repository_index(self) -> list[dict[str, str]]:
        return self.repository.index()

    async def load(self, name: str, actor: str) -> None:
        await self.repository.load(name, actor)

    async def unload(self, name: str, actor: str) -> None:
        await self.repository.unload(name, actor)
