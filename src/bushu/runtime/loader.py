"""`bushu.load`: package directory → runnable `Model`, picking the backend the variant names."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from bushu.errors import InvalidInput, NotFound
from bushu.generate.config import GENERATION_TASKS
from bushu.package.encryption import load_key, read_file
from bushu.package.store import read_manifest, verify_package
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

    With `verify` (the default) every file is re-hashed first: a package that changed since it
    was written is refused rather than run. `threads` caps the backend's intra-op threads.
    An encrypted package needs `key` (or $BUSHU_KEY); it is decrypted in memory only.
    """
    root = Path(directory)
    manifest = verify_package(root) if verify else read_manifest(root)
    if manifest.task in GENERATION_TASKS:  # its variants run in the generation engine, not a Backend
        raise InvalidInput(f"{manifest.name} is a {manifest.task} package: run it with `bushu generate` or "
                           "`bushu serve` (bushu.generate)")
    name = variant or manifest.default_variant
    if name not in manifest.variants:
        raise NotFound(f"variant {name!r} not in package {manifest.name}; it has {sorted(manifest.variants)}")
    chosen = manifest.variants[name]
    read = None
    if manifest.encryption is not None:
        key = key if key is not None else load_key()
        read = functools.partial(read_file, root, manifest, key=key)
        read(chosen.file)  # a missing or wrong key fails here, naming the key id, before any backend runs
    return backend_for(chosen.backend, threads).load(root, manifest, name, device or chosen.device, read)
