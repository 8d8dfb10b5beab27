"""The front of `bushu serve --ray`: the same HTTP routes, a plane whose models live in Ray.

Each model is one Serve application (named after the model) with one deployment of
`ModelReplica`; repository load deploys it (again), unload deletes it. The front keeps a
`Batcher` per version whose "instances" are calls to the deployment: V2 requests are decoded
here, gathered into batches here, and each batch is ONE handle call — Ray's per-call cost
(~1-2 ms of CPU on each side) is paid per batch, not per request, which is what lets Ray reach
half of bushu's direct throughput. `instances` = twice the most replicas, so every replica has
a batch running and one waiting. App routes (`predict`, `search`) are sent whole to a replica,
so pre-processing (image decoding, tokenizing) runs where the replicas run.

What Ray guarantees, and what bushu adds: Serve routes a call only to a replica it believes
alive and retries a call a replica rejected before starting it; a call already running on a
replica that dies fails with `ActorDiedError` / `ActorUnavailableError`. Inference is a pure
function of its inputs, so the front sends such a call again (up to `_ATTEMPTS` times, to
whichever replica Serve picks): a replica killed mid-run costs latency, not requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bushu.errors import BushuError, InvalidInput
from bushu.package.files import PackageFiles
from bushu.package.manifest import GENERATION_TASKS, Manifest
from bushu.runtime.base import Model
from bushu.serve.batcher import Batcher
from bushu.serve.dataplane import DataPlane
from bushu.serve.metrics import ServerMetrics
from bushu.serve.predict import NaturalRequest, Predictor, SearchRequest
from bushu.serve.repository import LoadedModel, ModelRepository, check_package
from bushu.serve.settings import ServeSettings

log = logging.getLogger("bushu.serve")
T = TypeVar("T")
_ATTEMPTS = 4


@dataclass(frozen=True)
class Scaling:
    """Replicas per model: a fixed number, or autoscaled on queue depth between two bounds."""

    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    #: Autoscaling aims at this many requests in flight per replica (each one a front batch).
    target_ongoing_requests: float = 2.0
    replica_cpus: float = 1.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise InvalidInput("--replicas must be at least 1")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not 0 <= low <= high or high < 1:
                raise InvalidInput(f"--autoscale MIN,MAX needs 0 ≤ MIN ≤ MAX and MAX ≥ 1, not {low},{high}")

    @property
    def most(self) -> int:
        return self.autoscale[1] if self.autoscale else self.replicas

    def deployment_options(self, name: str, settings: ServeSettings) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": f"bushu-{name}",
            "max_ongoing_requests": max(8, 4 * settings.max_batch_size),
            "ray_actor_options": {"num_cpus": self.replica_cpus},
        }
        if self.autoscale:
            options["autoscaling_config"] = {"min_replicas": self.autoscale[0], "max_replicas": self.autoscale[1],
                                             "target_ongoing_requests": self.target_ongoing_requests}
        else:
            options["num_replicas"] = self.replicas
        return options


def _lost_replica_errors() -> tuple[type[BaseException], ...]:
    from ray import exceptions

    return tuple(getattr(exceptions, n) for n in ("RayActorError", "ActorUnavailableError", "ActorDiedError")
                 if hasattr(exceptions, n))


def call(method: Any, *args: Any) -> Any:
    """One call to a deployment method, waited for in this (worker) thread: sent again if the
    replica running it was lost; a `BushuError` raised in the replica is raised here as itself."""
    from ray.exceptions import RayTaskError

    lost = _lost_replica_errors()
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return method.remote(*args).result()
        except RayTaskError as exc:
            if isinstance(exc.cause, BushuError):
                raise exc.cause from None
            if isinstance(exc.cause, lost) and attempt < _ATTEMPTS:
                continue
            raise BushuError(f"the replica failed: {type(exc.cause).__name__}: {exc.cause}") from None
        except lost as exc:
            if attempt == _ATTEMPTS:
                raise BushuError(f"no replica answered in {_ATTEMPTS} attempts: {type(exc).__name__}") from None
            log.warning("a replica was lost with a request in flight (%s); sending it again", type(exc).__name__)
    raise AssertionError("unreachable")


class RemoteInstance(Model):
    """A batcher "instance" that runs each batch on a replica of the model's deployment."""

    def __init__(self, manifest: Manifest, handle: Any, version: str) -> None:
        super().__init__(manifest, "ray", "ray")
        self.handle = handle
        self.version = version

    def run_checked(self, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        return call(self.handle.infer, self.version, arrays, outputs)


@dataclass
class RemoteModel(LoadedModel):
    handle: Any = None


def _deploy(name: str, roots: list[Path], settings: ServeSettings, scaling: Scaling) -> Any:
    """(Re)deploy one model's application and wait until its replicas are running."""
    from ray import serve

    from bushu.serve.rayserve.replica import ModelReplica

    deployment = serve.deployment(ModelReplica).options(**scaling.deployment_options(name, settings))
    return serve.run(deployment.bind(name, [str(r) for r in roots], settings), name=name, route_prefix=None)


class RayRepository(ModelRepository):
    def __init__(self, roots: list[Path], settings: ServeSettings, metrics: ServerMetrics, scaling: Scaling) -> None:
        super().__init__(roots, settings, metrics)
        self.scaling = scaling

    async def load(self, name: str, actor: str = "anonymous") -> list[LoadedModel]:
        self.check_name(name)
        async with self._lock:
            paths = self.versions_on_disk(name)

            def check() -> dict[str, tuple[Manifest, Predictor]]:
                checked = {}
                for version, path in paths.items():
                    manifest = check_package(path, self.settings.require_signature)
                    if manifest.task in GENERATION_TASKS:
                        raise InvalidInput(f"{name}: generation packages are not served on Ray (yet); "
                                           "serve them without --ray")
                    files = PackageFiles(path, manifest, self.settings.decrypt_key)  # the front's steps: hashed bytes
                    checked[version] = (manifest, Predictor(manifest, path, self.settings.max_image_pixels, read=files.read))
                return checked

            checked = await asyncio.to_thread(check)
            handle = await asyncio.to_thread(_deploy, name, self.roots, self.settings, self.scaling)
            loaded = []
            for version, (manifest, predictor) in sorted(checked.items()):
                s = self.settings
                instances = [RemoteInstance(manifest, handle, version) for _ in range(2 * self.scaling.most)]
                batcher = Batcher(instances, max_batch_size=s.max_batch_size, max_queue_delay=s.max_queue_delay_ms / 1000,
                                  max_queue_size=s.max_queue_size, max_queue_bytes=s.max_queue_bytes,
                                  max_request_rows=s.max_request_rows, timeout=s.timeout_s,
                                  observer=self.metrics.observer(name, version))
                fresh = RemoteModel(name, version, paths[version], manifest, batcher, predictor, handle)
                old = self._loaded.get((name, version))
                self._loaded[(name, version)] = fresh
                if old is not None:
                    await old.batcher.close()
                loaded.append(fresh)
            log.info("model %s on Ray Serve: %s", name, self.scaling)
            return loaded

    async def unload(self, name: str, actor: str = "anonymous") -> None:
        from ray import serve

        await super().unload(name, actor)
        await asyncio.to_thread(serve.delete, name)


class RayDataPlane(DataPlane):
    """The routes' plane: `infer` goes through the front's batcher (base class) to a replica;
    `predict` and `search` are sent whole to the replica's own dataplane."""

    async def _forward(self, name: str, version: str | None, method: str, request: Any) -> Any:
        model = self.lookup(name, version)
        assert isinstance(model, RemoteModel)
        with model.batcher.hold():
            work = asyncio.to_thread(call, getattr(model.handle, method), model.version, request)
            return await self._counted(model, work)

    async def predict(self, name: str, version: str | None, request: NaturalRequest) -> list[dict[str, Any]]:
        return await self._forward(name, version, "predict", request)

    async def search(self, name: str, version: str | None, request: SearchRequest) -> dict[str, Any]:
        model = self.lookup(name, version)
        limit = self.repository.settings.max_corpus
        if len(request.corpus) > limit:
            from bushu.serve.asgi import PayloadTooLarge

            raise PayloadTooLarge(f"the corpus has {len(request.corpus)} texts; this server searches at most {limit}")
        return await self._forward(model.name, model.version, "search", request)


def ray_plane(scaling: Scaling) -> Callable[[list[Path], ServeSettings, ServerMetrics], DataPlane]:
    """The `create_app(dataplane=...)` factory for a front whose models are Serve deployments."""

    def build(paths: list[Path], settings: ServeSettings, metrics: ServerMetrics) -> DataPlane:
        return RayDataPlane(RayRepository(paths, settings, metrics, scaling), metrics)

    return build
