"""The PyTorch backend: the package's own module class and safetensors weights, on CPU or CUDA,
in fp32/bf16/fp16, optionally under `torch.compile`.

It is bushu's GPU path (onnxruntime on the GPU machines we test on is CPU-only). Never a
pickle: the module is rebuilt from its class (`provenance.source`, `module:Class`) and the
weights read with safetensors. With `compile`, batches are padded up to a fixed bucket size
so compiled graphs (CUDA graphs under mode "reduce-overhead") are reused rather than rebuilt
for every batch size; every bucket is run once at load so the first request is not slow.
CUDA graphs captured by torch.compile must be replayed by the thread that captured them
(pytorch/pytorch#123177: compiled graphs assert when called from several threads), while the
server runs batches on a pool of threads; so a compiled model owns one thread and runs warm-up
and every batch there — on the CPU too, where it costs one hand-off per batch, so that the
tests here exercise the path the GPU takes.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bushu.errors import BushuError, PackageError
from bushu.package.manifest import Manifest
from bushu.runtime.base import FileReader, Model, disk_reader

T = TypeVar("T")
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _torch_dtype(precision: str):
    import torch

    try:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    except KeyError:
        raise PackageError(f"precision {precision!r} is not one of {PRECISIONS}") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BushuError("device 'cuda' asked for, but torch sees no CUDA device", status=503)
    return device


class PyTorchModel(Model):
    def __init__(self, manifest: Manifest, variant: str, device: str, module: Any, precision: str,
                 buckets: tuple[int, ...] | None, compiled: bool = False) -> None:
        import torch

        super().__init__(manifest, variant, device)
        self._torch = torch
        self._module = module
        self._dtype = _torch_dtype(precision)
        self._buckets = buckets
        self._pin = device == "cuda"
        self._owner = ThreadPoolExecutor(1, thread_name_prefix="bushu-compiled") if compiled else None

    def on_owner(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn` on the thread that owns this model's compiled graphs (here, if none does)."""
        if self._owner is None:
            return fn(*args)
        return self._owner.submit(fn, *args).result()

    def _to_device(self, array: np.ndarray):
        tensor = self._torch.from_numpy(np.ascontiguousarray(array))
        if tensor.is_floating_point():
            tensor = tensor.to(self._dtype)
        if self._pin:
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _bucket(self, rows: int) -> int:
        if not self._buckets:
            return rows
        return self._buckets[bisect.bisect_left(self._buckets, rows)]

    def run_checked(self, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """A batch larger than the largest bucket runs in chunks of it: a new batch size would
        mean a new compile (and, past torch's recompile limit, a silent fall back to eager)."""
        rows = next(iter(arrays.values())).shape[0]
        largest = self._buckets[-1] if self._buckets else rows
        if rows <= largest:
            return self.on_owner(self._run, arrays, outputs)
        parts = [self.on_owner(self._run, {k: v[i : i + largest] for k, v in arrays.items()}, outputs)
                 for i in range(0, rows, largest)]
        return {name: np.concatenate([part[name] for part in parts]) for name in outputs}

    def _run(self, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        rows = next(iter(arrays.values())).shape[0]
        padded = self._bucket(rows)
        if padded != rows:  # repeat the last row: padding values never reach a real output
            arrays = {k: np.concatenate([v, np.repeat(v[-1:], padded - rows, axis=0)]) for k, v in arrays.items()}
        with self._torch.inference_mode():
            result = self._module(*(self._to_device(arrays[s.name]) for s in self.manifest.inputs))
        flat = list(result.values()) if isinstance(result, dict) else list(result) if isinstance(
            result, (tuple, list)) else [result]
        named = dict(zip(self._output_names, flat))
        out = {}
        for name in outputs:
            tensor = named[name][:rows]
            if tensor.is_floating_point():
                tensor = tensor.float()
            out[name] = tensor.cpu().numpy()
        return out

    def close(self) -> None:
        if self._owner is not None:
            self._owner.shutdown(wait=True)

    def warm_up(self) -> None:
        """Run every bucket once (all of them compile now, not on a user's request)."""
        from bushu.export.specs import random_inputs

        sizes = self._buckets or (1,)
        rng = np.random.default_rng(0)
        dims = {d: 8 for s in self.manifest.inputs for d in s.dim_names() if d is not None}
        for rows in sizes:
            dims["batch"] = rows
            self.run_checked(random_inputs(self.manifest.inputs, dims, rng), self._output_names)


class PyTorchBackend:
    name = "pytorch"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def load(
        self, package: Path, manifest: Manifest, variant: str, device: str, read: FileReader | None = None
    ) -> Model:
        import torch
        from safetensors.torch import load as load_bytes

        from bushu.export.source import instantiate, module_class

        chosen = manifest.variants[variant]
        source = manifest.provenance.source
        cls = module_class(source)  # checked before anything a manifest names is called
        if self.threads:
            torch.set_num_threads(self.threads)
        device = resolve_device(device)
        kwargs = {**manifest.provenance.source_kwargs, **chosen.options.get("kwargs", {})}
        module = instantiate(cls, source, kwargs)
        state = load_bytes((read or disk_reader(package))(chosen.file))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise PackageError(f"{manifest.name}: weights do not fit {manifest.provenance.source}: {exc}") from None
        module = module.eval().to(device=device, dtype=_torch_dtype(chosen.precision))
        buckets = chosen.options.get("buckets")
        if chosen.options.get("compile"):
            mode = chosen.options.get("mode", "reduce-overhead" if device == "cuda" else "default")
            module = torch.compile(module, mode=mode, dynamic=False)
            buckets = buckets or DEFAULT_BUCKETS
        buckets = tuple(sorted(buckets)) if buckets else None
        model = PyTorchModel(manifest, variant, device, module, chosen.precision, buckets,
                             compiled=bool(chosen.options.get("compile")))
        model.warm_up()
        return model
