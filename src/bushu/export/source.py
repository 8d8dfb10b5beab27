"""Source models named on the command line: `module:Class` plus a weights file, loaded safely.

Weights are never unpickled: a `.safetensors` file is read with safetensors, anything else with
`torch.load(weights_only=True)`, which refuses pickles that would construct arbitrary objects.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from bushu.errors import InvalidInput, NotFound


def import_class(ref: str) -> type:
    """`package.module:Class` (importable, the working directory first) or `path/file.py:Class`."""
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise InvalidInput(f"{ref!r}: expected module:Class or path/to/file.py:Class")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise NotFound(f"{ref!r}: no such file {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise NotFound(f"{ref!r}: cannot import {module_name!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise NotFound(f"{ref!r}: module {module_name!r} has no attribute {attr!r}") from None


def load_state_dict(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFound(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for unsafe globals, RuntimeError for non-zip files, ...
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise InvalidInput(
            f"{path}: refused to load: not a tensor state dict that loads without running code ({first}). "
            "bushu never unpickles arbitrary objects; save weights with torch.save(model.state_dict()) "
            "or safetensors"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InvalidInput(f"{path}: expected a state dict (name → tensor), got {type(state).__name__}")
    return state


def build_module(ref: str, weights: Path | None = None, kwargs: dict[str, Any] | None = None) -> Any:
    """Instantiate `ref` with `kwargs` and load `weights` strictly (every key must match)."""
    import torch

    cls = import_class(ref)
    module = cls(**(kwargs or {}))
    if not isinstance(module, torch.nn.Module):
        raise InvalidInput(f"{ref!r} is not a torch.nn.Module")
    if weights is not None:
        try:
            module.load_state_dict(load_state_dict(weights), strict=True)
        except RuntimeError as exc:
            raise InvalidInput(f"{weights}: does not fit {ref}: {exc}") from None
    return module.eval()
