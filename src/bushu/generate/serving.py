"""A generation package as a model the server holds: checked like any package, then an engine
in place of the dynamic batcher (the repository calls `open_engine` for generation tasks)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bushu.generate.config import EngineSettings
from bushu.generate.engine import GenerationEngine


async def open_engine(name: str, version: str, path: Path, settings: Any, metrics: Any) -> Any:
    from bushu.generate.package import open_core
    from bushu.serve.predict import Predictor
    from bushu.serve.repository import LoadedModel, check_package

    engine_settings = EngineSettings(max_tokens_in_flight=settings.max_tokens_in_flight,
                                     max_sequences=settings.max_sequences, max_waiting=settings.max_queue_size,
                                     threads=settings.threads)

    def build() -> tuple[Any, Any]:
        manifest = check_package(path, settings.require_signature)
        return manifest, open_core(path, manifest, engine_settings, metrics.generation.observer(name, version))

    manifest, core = await asyncio.to_thread(build)
    engine = GenerationEngine(core, name=name)
    # The engine stands where a batcher would: the repository drains and closes it the same way.
    return LoadedModel(name, version, path, manifest, engine, Predictor(manifest, path))  # type: ignore[arg-type]
