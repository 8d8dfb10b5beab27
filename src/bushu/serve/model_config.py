"""A served model's configuration in Triton's field names (`model_config.proto`), so tools
written for Triton (tritonclient's `get_model_config`, perf_analyzer, model analyzer) can
read it: batch size, inputs, outputs, dynamic batching and instances.

Triton counts `dims` without the batch dimension when `max_batch_size` > 0: a model whose
first axis is the dynamic batch axis reports the server's batch size and the rest of its
shape; any other model reports `max_batch_size` 0 and its whole shape. A generation model is
decoupled (it answers a request with a stream): `text_input` in, `text_output` out, as
Triton's LLM backends declare them.
"""

from __future__ import annotations

from typing import Any

from bushu.package.manifest import GENERATION_TASKS, TensorSpec
from bushu.serve.settings import ServeSettings

PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "pytorch": "pytorch_torchscript"}
_TYPE = {"BYTES": "TYPE_STRING"}


def _data_type(datatype: str) -> str:
    return _TYPE.get(datatype, f"TYPE_{datatype}")


def _tensors(specs: list[TensorSpec], batched: bool) -> list[dict[str, Any]]:
    return [{"name": s.name, "data_type": _data_type(s.datatype), "dims": s.shape[1:] if batched else s.shape}
            for s in specs]


def model_config(model: Any, settings: ServeSettings) -> dict[str, Any]:
    """The configuration of `model` (a `serve.repository.LoadedModel`) as Triton's JSON."""
    manifest = model.manifest
    backend = manifest.variants[manifest.default_variant].backend
    config: dict[str, Any] = {"name": model.name, "platform": PLATFORMS.get(backend, backend), "backend": backend,
                              "version_policy": {"latest": {"num_versions": 1}}}
    if manifest.task in GENERATION_TASKS:
        return {**config, "max_batch_size": 0,
                "input": [{"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]}],
                "output": [{"name": "text_output", "data_type": "TYPE_STRING", "dims": [-1]}],
                "model_transaction_policy": {"decoupled": True},
                "instance_group": [{"name": model.name, "kind": "KIND_CPU", "count": 1}]}
    batched = bool(manifest.inputs) and manifest.inputs[0].shape[:1] == [-1]
    batcher = model.batcher
    config.update({
        "max_batch_size": batcher.max_batch_size if batched else 0,
        "input": _tensors(manifest.inputs, batched),
        "output": _tensors(manifest.outputs, batched),
        "instance_group": [{"name": model.name, "kind": "KIND_CPU", "count": settings.instances}],
    })
    if batched:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": int(batcher.max_queue_delay * 1e6),
            "default_queue_policy": {"timeout_action": "REJECT",
                                     "default_timeout_microseconds": int(batcher.timeout * 1e6),
                                     "max_queue_size": batcher.max_queue_size},
        }
    return config
