"""What every peer server shares: the ONNX session with pinned threads, and the CLI arguments."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--package", type=Path, required=True, help="bushu package directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    return parser.parse_args()


def onnx_session(package: Path, threads: int):
    """The package's default variant in ONNX Runtime, as bushu itself opens it (same options)."""
    import onnxruntime as ort

    manifest = json.loads((package / "bushu.json").read_text())
    variant = manifest["variants"][manifest["default_variant"]]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(package / variant["file"]), options, providers=["CPUExecutionProvider"])
