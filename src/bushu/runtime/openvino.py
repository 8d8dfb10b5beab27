"""The OpenVINO backend: CPU inference of OpenVINO IR (`.xml` + `.bin`) or ONNX files.

OpenVINO picks bf16 by itself on CPUs with AMX or AVX-512 BF16, which changes the numbers a
variant was measured at; so the precision is always set from the variant, never left to the
plugin: `bf16` in the variant's precision runs bf16, anything else runs f32 where not int8.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from bushu.errors import BushuError
from bushu.package.manifest import Manifest
from bushu.runtime.base import FileReader, Model, disk_reader
from bushu.runtime.onnx_data import inline_external_data

INSTALL_HINT = "the OpenVINO backend needs the openvino package: pip install 'bushu[optimize]'"


def _openvino():  # -> module openvino
    try:
        import openvino
    except ImportError:
        raise BushuError(INSTALL_HINT, status=503) from None
    return openvino


def compile_config(precision: str, threads: int | None = None) -> dict[str, object]:
    """CPU plugin settings for a variant: its inference precision and thread count."""
    config: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": "bf16" if "bf16" in precision else "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    threads = threads or int(os.environ.get("BUSHU_THREADS", "0"))
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class OpenVinoModel(Model):
    def __init__(self, manifest: Manifest, variant: str, device: str, compiled, weights: object = None) -> None:
        super().__init__(manifest, variant, device)
        self._compiled = compiled
        self._weights = weights  # OpenVINO may keep using the weights' memory in place
        self._local = threading.local()  # an infer request is not thread-safe: one per thread

    def run_checked(self, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer(arrays)
        return {name: request.get_tensor(name).data.copy() for name in outputs}


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def load(
        self, package: Path, manifest: Manifest, variant: str, device: str, read: FileReader | None = None
    ) -> Model:
        if device != "cpu":
            raise BushuError(f"the OpenVINO backend runs on 'cpu' only, not {device!r}", status=503)
        ov = _openvino()
        spec = manifest.variants[variant]
        read = read or disk_reader(package)
        core = ov.Core()
        if spec.file.endswith(".xml"):  # OpenVINO IR: the graph, and its weights beside it
            weights = ov.Tensor(np.frombuffer(read(spec.file[: -len(".xml")] + ".bin"), dtype=np.uint8))
            model = core.read_model(read(spec.file).decode(), weights)
        else:  # ONNX, with any external data copied into the one buffer OpenVINO reads
            weights = inline_external_data(read(spec.file), spec.file, read)
            model = core.read_model(weights)
        compiled = core.compile_model(model, "CPU", compile_config(spec.precision, self.threads))
        return OpenVinoModel(manifest, variant, device, compiled, (weights, model))
