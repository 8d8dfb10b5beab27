"""The ONNX Runtime backend: CPU everywhere; the CUDA or TensorRT provider where onnxruntime-gpu is installed.

A variant may name its GPU provider in `options["provider"]` (with `options["provider_options"]`,
e.g. TensorRT's fp16 switch). These GPU providers are selectable but not verified by bushu's
tests: the GPU machine we test on has a CPU-only onnxruntime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import BushuError, InvalidInput, PackageError
from bushu.package.manifest import Manifest
from bushu.runtime.base import FileReader, Model, disk_reader
from bushu.runtime.onnx_data import add_external_data


def session_options(threads: int | None = None):  # -> onnxruntime.SessionOptions
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = threads or int(os.environ.get("BUSHU_THREADS", "0"))
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle ORT threads spin by default, taking the cores from every other model on the machine:
    # interleaved with a spinning ORT session, OpenVINO int8 measured 3.7× slower here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def providers_for(device: str, provider: str = "CUDAExecutionProvider",
                  provider_options: dict[str, Any] | None = None) -> list[Any]:
    """ORT's provider list for `device`: on cuda, `provider` first, the CPU for ops it lacks."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if provider not in available:
        raise BushuError(
            f"device {device!r} needs onnxruntime's {provider}, which this install lacks "
            f"(available: {available}); install onnxruntime-gpu or use device 'cpu'",
            status=503,
        )
    return [(provider, provider_options or {}), "CPUExecutionProvider"]


class OnnxRuntimeModel(Model):
    def __init__(self, manifest: Manifest, variant: str, device: str, session,
                 external: list[np.ndarray] | None = None) -> None:
        super().__init__(manifest, variant, device)
        self._session = session
        self._external = external  # the session may use these buffers in place

    def run_checked(self, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        try:
            return dict(zip(outputs, self._session.run(outputs, arrays)))
        except InvalidArgument as exc:  # e.g. an id past an embedding's end: the input's fault, not the server's
            raise InvalidInput(f"the model refused the input: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        """Drop the session now (its weights, arena and per-shape plans), not whenever the last
        reference to this object goes: a server that reloads a model frees the old one's memory
        at once, and can hand it back to the system (`serve.memory.release_freed`)."""
        self._session = self._external = None


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def load(
        self, package: Path, manifest: Manifest, variant: str, device: str, read: FileReader | None = None
    ) -> Model:
        import onnxruntime as ort

        chosen = manifest.variants[variant]
        read = read or disk_reader(package)
        model_bytes = read(chosen.file)
        options = session_options(self.threads)
        external = add_external_data(options, model_bytes, chosen.file, read)
        providers = providers_for(device, chosen.options.get("provider", "CUDAExecutionProvider"),
                                  chosen.options.get("provider_options"))
        try:
            session = ort.InferenceSession(model_bytes, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime's own error types; a file it cannot load is the package's fault
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise PackageError(f"{manifest.name}: onnxruntime cannot load {chosen.file}: {first}") from None
        return OnnxRuntimeModel(manifest, variant, device, session, external)
