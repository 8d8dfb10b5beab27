"""The models a server holds: loaded from its repository folders, replaced and unloaded
without losing a request.

A request looks its model up and enters the model's batcher in one step of the event loop, so
a version that is replaced or unloaded afterwards still answers every request it accepted:
the old batcher drains before it closes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import bushu
from bushu.errors import BushuError, InvalidInput, NotFound
from bushu.package.manifest import GENERATION_TASKS
from bushu.package.files import PackageFiles
from bushu.package.manifest import Manifest
from bushu.package.signing import verify_signature
from bushu.package.store import read_manifest, scan_repository, verify_package
from bushu.serve.batcher import Batcher
from bushu.serve.metrics import ServerMetrics
from bushu.serve.predict import Predictor
from bushu.serve.settings import ServeSettings

log = logging.getLogger("bushu.serve")
audit = logging.getLogger("bushu.audit")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class LoadedModel:
    name: str
    version: str
    path: Path
    manifest: Manifest
    batcher: Batcher
    predictor: Predictor


def check_package(path: Path, public_key: Path | None) -> Manifest:
    """What the server demands of a package before it runs it: the signature when one is
    required (it covers the manifest), and every file inside the package folder (no links out)
    with its hash right. What the runtime then loads is hashed again from the very bytes it
    gets (`package.files`), so a file swapped after this check is refused, not run."""
    if public_key is not None:
        verify_signature(path, public_key)
    return verify_package(path)


def _task(path: Path) -> str | None:
    """The task a package states; None if its manifest is unreadable (the check then says why)."""
    try:
        return read_manifest(path).task
    except BushuError:
        return None


def _version_key(version: str) -> tuple:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


class ModelRepository:
    def __init__(self, roots: list[Path], settings: ServeSettings, metrics: ServerMetrics) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.settings = settings
        self.metrics = metrics
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        self._lock = asyncio.Lock()

    def available(self) -> dict[tuple[str, str], Path]:
        """Packages in the repository folders; a package reached through a link out of its
        folder is not offered."""
        found: dict[tuple[str, str], Path] = {}
        for root in self.roots:
            for key, path in scan_repository(root).items():
                if path.resolve().is_relative_to(root):
                    found.setdefault(key, path)
                else:
                    log.warning("ignoring %s: it resolves outside the repository folder %s", path, root)
        return found

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        if version is not None:
            try:
                return self._loaded[(name, version)]
            except KeyError:
                raise NotFound(f"model {name!r} version {version!r} is not loaded") from None
        versions = [v for (n, v) in self._loaded if n == name]
        if not versions:
            raise NotFound(f"model {name!r} is not loaded")
        return self._loaded[(name, max(versions, key=_version_key))]

    def versions(self, name: str) -> list[str]:
        return sorted((v for (n, v) in self._loaded if n == name), key=_version_key)

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def index(self) -> list[dict[str, str]]:
        entries = []
        for (name, version), _ in sorted(self.available().items()):
            state = "READY" if (name, version) in self._loaded else "UNAVAILABLE"
            entries.append({"name": name, "version": version, "state": state})
        return entries

    @staticmethod
    def check_name(name: str) -> None:
        if not _MODEL_NAME.match(name):
            raise InvalidInput(f"{name!r} is not a model name")

    def versions_on_disk(self, name: str) -> dict[str, Path]:
        """Each version of `name` in the repository folders, by version (404 if none)."""
        paths = {v: p for (n, v), p in self.available().items() if n == name}
        if not paths:
            raise NotFound(f"no model {name!r} in the repository")
        return paths

    async def load_all(self) -> None:
        for name in sorted({n for (n, _) in self.available()}):
            await self.load(name, actor="startup")

    async def load(self, name: str, actor: str = "anonymous") -> list[LoadedModel]:
        """Load (or reload) every version of `name` found in the repository folders."""
        self.check_name(name)
        async with self._lock:
            paths = self.versions_on_disk(name)
            loaded = []
            for version, path in sorted(paths.items()):
                try:
                    fresh = await self._open(name, version, path)
                except BushuError as exc:
                    audit.warning("action=load-refused model=%s version=%s by=%s reason=%r", name, version, actor,
                                  str(exc).splitlines()[0])
                    raise
                old = self._loaded.get((name, version))
                self._loaded[(name, version)] = fresh
                audit.info("action=%s model=%s version=%s digest=%s by=%s path=%s", "reload" if old else "load",
                           name, version, fresh.manifest.digest(), actor, path)
                if old is not None:
                    await old.batcher.close()
                loaded.append(fresh)
            return loaded

    async def unload(self, name: str, actor: str = "anonymous") -> None:
        async with self._lock:
            keys = [k for k in self._loaded if k[0] == name]
            if not keys:
                raise NotFound(f"model {name!r} is not loaded")
            for key in keys:
                model = self._loaded.pop(key)
                await model.batcher.close()
                audit.info("action=unload model=%s version=%s digest=%s by=%s", *key, model.manifest.digest(), actor)

    async def close(self) -> None:
        async with self._lock:
            models, self._loaded = list(self._loaded.values()), {}
        for model in models:
            await model.batcher.close()

    async def _open(self, name: str, version: str, path: Path) -> LoadedModel:
        settings = self.settings
        if _task(path) in GENERATION_TASKS:  # a generation engine instead of a batcher (it checks the package too)
            from bushu.generate.serving import open_engine

            return await open_engine(name, version, path, settings, self.metrics)

        def load_instances() -> tuple[Manifest, Predictor, list[bushu.runtime.Model]]:
            manifest = check_package(path, settings.require_signature)
            threads = settings.threads or None
            instances = [bushu.load(path, verify=False, threads=threads, key=settings.decrypt_key)
                         for _ in range(settings.instances)]
            for instance in instances:  # ready means the first request pays no lazy start-up
                instance.warm_up()
            files = PackageFiles(path, manifest, settings.decrypt_key)  # the steps' files: hashed bytes, read once
            return manifest, Predictor(manifest, path, settings.max_image_pixels, read=files.read), instances

        manifest, predictor, instances = await asyncio.to_thread(load_instances)
        batcher = Batcher(
            instances,
            max_batch_size=settings.max_batch_size,
            max_queue_delay=settings.max_queue_delay_ms / 1000,
            max_queue_size=settings.max_queue_size,
            max_queue_bytes=settings.max_queue_bytes,
            max_request_rows=settings.max_request_rows,
            timeout=settings.timeout_s,
            observer=self.metrics.observer(name, version),
        )
        return LoadedModel(name, version, path, manifest, batcher, predictor)
