"""Source models: `module:Class` plus a weights file, loaded safely.

Weights are never unpickled: a `.safetensors` file is read with safetensors, anything else with
`torch.load(weights_only=True)`, which refuses pickles that would construct arbitrary objects.
A class is checked to be a `torch.nn.Module` subclass before it is called. What the user types
on `bushu pack` may be a file (`path/model.py:Net`) or a module in the working directory; what
a manifest names is data from elsewhere, so `module_class` imports it from the installed
packages only — no file paths, no working directory, nothing from Python's standard library.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bushu.errors import BushuError, InvalidInput, NotFound, PackageError
from bushu.package.manifest import module_ref_problem


def _require_module_class(ref: str, value: Any, error: type[BushuError]) -> type:
    import torch

    if not (inspect.isclass(value) and issubclass(value, torch.nn.Module)):
        raise error(f"{ref!r} is not a torch.nn.Module subclass (it is {type(value).__name__} "
                    f"{getattr(value, '__qualname__', value)!r}); refusing to call it")
    return value


@contextlib.contextmanager
def _working_directory_first() -> Iterator[None]:
    """The user's own modules beside them, for the import that `bushu pack` does, and only then."""
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)


def import_class(ref: str) -> type:
    """For `bushu pack`: `package.module:Class` (the working directory first) or `path/file.py:Class`."""
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
        try:
            with _working_directory_first():
                module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise NotFound(f"{ref!r}: cannot import {module_name!r} ({exc})") from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise NotFound(f"{ref!r}: module {module_name!r} has no attribute {attr!r}") from None
    return _require_module_class(ref, value, InvalidInput)


def module_class(ref: str) -> type:
    """The `torch.nn.Module` subclass a manifest's `provenance.source` names, imported from the
    installed packages and checked before anything is called."""
    if problem := module_ref_problem(ref):
        raise PackageError(f"provenance.source {ref!r}: {problem}")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PackageError(f"provenance.source {ref!r}: cannot import {module_name!r} ({exc}); "
                           "install the package that defines the model's class") from None
    return _require_module_class(ref, getattr(module, attr, None), PackageError)


def instantiate(cls: type, ref: str, kwargs: dict[str, Any], error: type[BushuError] = PackageError) -> Any:
    """`cls(**kwargs)`, a constructor that refuses the arguments being the package's fault."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise error(f"{ref}: cannot be built with the arguments {kwargs}: {exc}") from None


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


def build_module(ref: str, weights: Path | None = None, kwargs: dict[str, Any] | None = None, *,
                 from_manifest: bool = False) -> Any:
    """Instantiate `ref` with `kwargs` and load `weights` strictly (every key must match).

    With `from_manifest`, `ref` came from a package and is resolved by `module_class`.
    """
    cls = module_class(ref) if from_manifest else import_class(ref)
    module = instantiate(cls, ref, kwargs or {}, PackageError if from_manifest else InvalidInput)
    if weights is not None:
        try:
            module.load_state_dict(load_state_dict(weights), strict=True)
        except RuntimeError as exc:
            raise InvalidInput(f"{weights}: does not fit {ref}: {exc}") from None
    return module.eval()
