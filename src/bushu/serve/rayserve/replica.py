"""One Ray Serve replica: every version of one model, answered by an ordinary `DataPlane`.

A replica is a small bushu server without a wire: its own `ModelRepository` (the package is
checked and hashed where it runs), its own dynamic batcher, and the dataplane methods the HTTP
routes call — `infer(model, InferRequest)`, `predict` and `search` with decoded requests. The
front sends it decoded requests only (numpy arrays, `NaturalRequest`, `SearchRequest`), never
HTTP bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bushu.serve.codec import InferRequest
from bushu.serve.dataplane import DataPlane
from bushu.serve.metrics import ServerMetrics
from bushu.serve.predict import NaturalRequest, SearchRequest
from bushu.serve.repository import ModelRepository
from bushu.serve.settings import ServeSettings


class ModelReplica:
    async def __init__(self, name: str, roots: list[str], settings: ServeSettings) -> None:  # type: ignore[misc]
        metrics = ServerMetrics()
        self.name = name
        self.repository = ModelRepository([Path(r) for r in roots], settings, metrics)
        self.plane = DataPlane(self.repository, metrics)
        await self.repository.load(name, actor="ray")
        self.plane.started = True

    async def infer(self, version: str, inputs: dict[str, Any], outputs: list[str] | None) -> dict[str, Any]:
        """A batch the front gathered: one request here, so it runs as one model call."""
        model = self.plane.lookup(self.name, version)
        return await self.plane.infer(model, InferRequest(inputs, outputs=outputs))

    async def predict(self, version: str, request: NaturalRequest) -> list[dict[str, Any]]:
        return await self.plane.predict(self.name, version, request)

    async def search(self, version: str, request: SearchRequest) -> dict[str, Any]:
        return await self.plane.search(self.name, version, request)
