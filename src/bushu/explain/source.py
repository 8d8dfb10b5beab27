"""The package's PyTorch source module, rebuilt for explaining: class + kwargs + safetensors weights.

The class comes from `provenance.source` through the project's one builder
(`export.source.build_module`, which refuses anything that is not a `torch.nn.Module`); the
weights are the package's own `provenance.weights_file`, re-hashed (and decrypted in memory
when the package is encrypted), so the module explained is the module that was packaged.
A Hugging Face encoder package names a directory, not a class: its architecture is rebuilt
from the transformers config the package carries (`source/config.json`), or, in a package
packed before bushu kept it, from its source directory's `config.json` while that exists
(`export.hf.encoder_config`, as distillation does); the package's weights must fit it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bushu.errors import NotFound, PackageError
from bushu.package.files import PackageFiles
from bushu.package.manifest import Manifest
from bushu.runtime import hf_text

INSTALL_HINT = "explanations need captum and torch: pip install 'bushu[explain]'"


def _load_weights(module: Any, data: bytes, what: str) -> Any:
    from safetensors.torch import load

    try:
        module.load_state_dict(load(data), strict=True)
    except RuntimeError as exc:
        raise PackageError(f"the package's weights do not fit {what}: {str(exc).splitlines()[0]}") from None
    return module.eval()


def _hf_encoder(files: PackageFiles, manifest: Manifest, data: bytes) -> Any:
    from bushu.export.hf import CONFIG_FILE, encoder_config, encoder_from_config

    config = encoder_config(manifest, files.read)
    if config is None:
        raise NotFound(f"{manifest.name} has no {CONFIG_FILE} (packed by an earlier bushu) and its source directory "
                       f"{manifest.provenance.source} is gone: pack it again to explain it")
    try:
        return _load_weights(encoder_from_config(config), data, f"the encoder's config ({CONFIG_FILE})")
    except ImportError:
        raise NotFound("explaining an encoder package needs transformers: pip install 'bushu[hf,explain]'") from None


def source_module(root: Path, manifest: Manifest, key: bytes | None = None) -> Any:
    """The package's source `torch.nn.Module` in eval mode, on the CPU, in fp32."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise NotFound(INSTALL_HINT) from None
    weights = manifest.provenance.weights_file
    if not weights:
        raise NotFound(f"{manifest.name} carries no PyTorch source weights, so there is no module to explain")
    files = PackageFiles(root, manifest, key)
    data = files.read(weights)
    if any(step.kind == hf_text.STEP_KIND for step in manifest.preprocessing):
        return _hf_encoder(files, manifest, data)
    ref = manifest.provenance.source
    if not ref or ":" not in ref:
        raise NotFound(f"{manifest.name} names no module class (provenance.source is {json.dumps(ref)}); "
                       "nothing to explain")
    from bushu.export.source import build_module

    return _load_weights(build_module(ref, None, manifest.provenance.source_kwargs), data, ref)
