"""`bushu.load`: package directory → runnable `Model`, picking the backend the variant names."""

from __future__ import annotations

import os
from pathlib import Path

from bushu.errors import InvalidInput, NotFound
from bushu.package.manifest import GENERATION_TASKS
from bushu.package.encryption import load_key
from bushu.package.files import PackageFiles
from bushu.package.store import read_manifest
from bushu.runtime.base import Backend, Model


def backend_for(name: str, threads: int | None = None) -> Backend:
    """Backends are imported only when a variant needs them, so `import bushu` stays light.

    `threads` caps each session's threads (default: the runtime's own choice, or BUSHU_THREADS).
    """
    if name == "onnxruntime":
        from bushu.runtime.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads)
    if name == "pytorch":
        from bushu.runtime.pytorch import PyTorchBackend

        return PyTorchBackend(threads)
    if name == "openvino":
        from bushu.runtime.openvino import OpenVinoBackend

        return OpenVinoBackend(threads)
    raise NotFound(f"backend {name!r} is not available in this version of bushu")


def load(
    directory: str | os.PathLike[str],
    variant: str | None = None,
    *,
    device: str | None = None,
    verify: bool = True,
    threads: int | None = None,
    key: bytes | None = None,
) -> Model:
    """Load a package's variant (the manifest's default when none is named).

    Every file the backend loads is read once, checked against its hash and decrypted in
    memory, and those bytes are what it runs. With `verify` (the default) every other file is
    re-hashed too, before the backend starts: a package that changed since it was written is
    refused rather than run. `threads` caps the backend's intra-op threads. An encrypted
    package needs `key` (or $BUSHU_KEY).
    """
    root = Path(directory)
    manifest = read_manifest(root)
    if manifest.task in GENERATION_TASKS:  # its variants run in the generation engine, not a Backend
        raise InvalidInput(f"{manifest.name} is a {manifest.task} package: run it with `bushu generate` or "
                           "`bushu serve` (bushu.generate)")
    name = variant or manifest.default_variant
    if name not in manifest.variants:
        raise NotFound(f"variant {name!r} not in package {manifest.name}; it has {sorted(manifest.variants)}")
    chosen = manifest.variants[name]
    if manifest.encryption is not None and key is None:
        key = load_key()
    files = PackageFiles(root, manifest, key)
    files.read(chosen.file)  # a changed file or a missing or wrong key fails here, before any backend runs
    if verify:
        files.verify_unread()
    try:
        return backend_for(chosen.backend, threads).load(root, manifest, name, device or chosen.device, files.read)
    finally:
        files.release()
